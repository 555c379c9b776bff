"""Hybrid recordings: ground-truth spikes added to realistic noise, with the clean signal kept for scoring.

The spikes come from SpikeInterface's ground-truth generator (noise-free); the noise is either
synthetic with the temporal and spatial correlation of real Neuropixels 1.0 noise
(``../shared/data``) or a real recording's traces (the real Neuropixels snippet there). Knowing
the clean signal lets a denoiser be scored by its error to it, which no real recording allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlsort.errors import DlsortInputError
from dlsort.training.noise import SpatialNoise, TemporalNoise, shared_data_dir

SNIPPET_FILE = "np1_cortexlab_10ch_30khz.int16.bin"
SNIPPET_LOCATIONS_FILE = "np1_cortexlab_10ch_locations_um.npy"
SNIPPET_UV_PER_UNIT = 2.34  # Neuropixels 1.0 AP band at gain 500 (../shared/data/README.md)


@dataclass(frozen=True)
class HybridRecording:
    """A recording whose clean part is known.

    Attributes
    ----------
    recording : BaseRecording
        Clean spikes plus noise, float32 uV, with its probe.
    clean : np.ndarray
        (num_samples, num_channels) float32, the spikes alone.
    sorting : BaseSorting
        Ground-truth spike trains.
    noise_source : str
        What the noise is, for tables and model cards.
    """

    recording: object
    clean: np.ndarray
    sorting: object
    noise_source: str


def neuropixels_noise(rng: np.random.Generator, num_samples: int, locations: np.ndarray, noise_uv: float,
                      folder: Path | None = None) -> np.ndarray:
    """Noise with the temporal and spatial correlation of real Neuropixels 1.0 noise.

    Parameters
    ----------
    rng : np.random.Generator
    num_samples : int
        At 30 kHz, the rate of the noise statistics.
    locations : np.ndarray
        (num_channels, 2) contact positions in um; the correlation between two channels follows
        their distance.
    noise_uv : float
        Standard deviation of every channel.
    folder : Path or None
        The shared data folder (``DLSORT_SHARED_DATA`` or ``../shared/data`` by default).

    Returns
    -------
    np.ndarray
        float32 (num_samples, num_channels).
    """
    temporal, spatial = TemporalNoise.from_shared_data(folder), SpatialNoise.from_shared_data(folder)
    noise = temporal.stream(rng, num_samples, len(locations)) @ spatial.sqrtcov(np.asarray(locations)).T
    return (noise * (noise_uv / noise.std(axis=0, keepdims=True))).astype("float32")


def neuropixels_snippet(folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The real 10-channel Neuropixels 1.0 snippet of the shared data, in uV, and its contact positions.

    Returns
    -------
    traces : np.ndarray
        float32 (10 000, 10), mean removed per channel.
    locations : np.ndarray
        (10, 2) in um.
    """
    folder = folder or shared_data_dir()
    path = folder / SNIPPET_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: set DLSORT_SHARED_DATA to the folder holding the shared data")
    locations = np.load(folder / SNIPPET_LOCATIONS_FILE)
    traces = np.fromfile(path, dtype="int16").reshape(-1, len(locations)).astype("float32") * SNIPPET_UV_PER_UNIT
    return traces - traces.mean(axis=0), locations


def hybrid_recording(probe, num_units: int, duration_s: float, noise: np.ndarray | float, seed: int = 0,
                     spike_scale: float = 1.0, noise_source: str | None = None) -> HybridRecording:
    """Ground-truth spikes from SpikeInterface's generator on ``probe``, added to ``noise``.

    Parameters
    ----------
    probe : probeinterface.Probe
        With device channel indices.
    num_units : int
    duration_s : float
        At 30 kHz.
    noise : np.ndarray or float
        (num_samples, num_channels) noise traces in uV (a real recording's), or the standard
        deviation in uV of synthetic Neuropixels noise (``neuropixels_noise``).
    seed : int, default: 0
    spike_scale : float, default: 1.0
        Multiplies the generator's spikes (whose amplitudes suit ~5 uV noise).
    noise_source : str or None
        Description of array noise; synthetic noise describes itself.

    Returns
    -------
    HybridRecording
    """
    from spikeinterface.core import NumpyRecording

    from dlsort.groundtruth import generate_static

    fs = 30_000.0
    num_samples = int(round(duration_s * fs))
    locations = probe.contact_positions
    if np.ndim(noise) == 0:
        noise_source = f"Neuropixels 1.0 noise (IBL statistics), {float(noise):g} uV rms"
        noise = neuropixels_noise(np.random.default_rng(seed), num_samples, locations, float(noise))
    elif noise.shape != (num_samples, len(locations)):
        raise DlsortInputError(f"the noise is {noise.shape}, the hybrid needs ({num_samples}, {len(locations)}) "
                               "(samples, channels)")
    generated, sorting = generate_static(probe, num_units, duration_s, fs, 0.0, seed)
    clean = generated.get_traces().astype("float32") * np.float32(spike_scale)
    # the generator's channel ids, which its sorting's "main_channel_id" property names
    recording = NumpyRecording(clean + noise.astype("float32"), sampling_frequency=fs,
                               channel_ids=generated.channel_ids)
    recording.set_probe(probe)
    return HybridRecording(recording, clean, sorting, noise_source or "given noise traces")

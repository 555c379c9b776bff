"""Noise models for training-data synthesis: temporal and spatial correlation of real noise.

``TemporalNoise`` is the covariance of a channel's noise over a short window; ``SpatialNoise``
the correlation between channels as a function of their distance. Both come either from the
real Neuropixels 1.0 statistics in ``../shared/data`` (the shipped networks) or from a
recording's own spike-free traces (``recording_noise``, for fine-tuning), in noise-standard-
deviation units.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def shared_data_dir() -> Path:
    """``DLSORT_SHARED_DATA``, else ``shared/data`` beside the source checkout or beside the working directory.

    The second candidate serves a source tree, the third an installed package run from the
    repository's root; when neither exists the first is returned (for the error message).
    """
    configured = os.environ.get("DLSORT_SHARED_DATA")
    if configured:
        return Path(configured)
    candidates = [Path(__file__).resolve().parents[3] / "shared" / "data",
                  Path.cwd().resolve().parent / "shared" / "data"]
    return next((candidate for candidate in candidates if candidate.is_dir()), candidates[0])


@dataclass(frozen=True)
class TemporalNoise:
    """Stationary noise with a given temporal covariance, in noise-standard-deviation units.

    Attributes
    ----------
    sqrtcov : np.ndarray
        (L, L) matrix square root of the temporal covariance over L samples.
    source : str
        Where the covariance was measured (recorded in model cards).
    """

    sqrtcov: np.ndarray
    source: str

    def sample(self, rng: np.random.Generator, num: int, num_samples: int) -> np.ndarray:
        """``num`` noise waveforms of ``num_samples`` (at most L) samples, unit variance on average."""
        length = self.sqrtcov.shape[0]
        if num_samples > length:
            raise ValueError(f"the noise model covers {length} samples, {num_samples} were asked")
        start = (length - num_samples) // 2
        noise = rng.standard_normal((num, length)).astype("float32") @ self.sqrtcov.T.astype("float32")
        return noise[:, start : start + num_samples]

    def stream(self, rng: np.random.Generator, num_samples: int, num_channels: int) -> np.ndarray:
        """(num_samples, num_channels) independent channels of noise of any length with this temporal covariance.

        White noise filtered by the middle row of ``sqrtcov`` (the filter whose autocorrelation is
        the covariance, for stationary noise).
        """
        from scipy.signal import fftconvolve

        kernel = self.sqrtcov[len(self.sqrtcov) // 2]
        white = rng.standard_normal((num_samples + len(kernel) - 1, num_channels))
        return fftconvolve(white, kernel[:, None], mode="valid", axes=0)

    @classmethod
    def from_shared_data(cls, folder: Path | None = None) -> TemporalNoise:
        """The temporal covariance of a real Neuropixels 1.0 recording (IBL, 121 samples at 30 kHz)."""
        path = (folder or shared_data_dir()) / "ibl_np1_noise_temporal_sqrtcov_121.npy"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: set DLSORT_SHARED_DATA to the folder holding the shared noise statistics, "
                "or fit the noise to a recording with TemporalNoise.from_traces"
            )
        sqrtcov = np.load(path)
        scale = np.sqrt(np.mean(np.sum(sqrtcov**2, axis=1)))  # unit variance on average
        return cls(sqrtcov / scale, f"IBL Neuropixels 1.0 noise ({path.name})")

    @classmethod
    def from_traces(cls, chunks: list[np.ndarray], length: int = 121, source: str = "recording",
                    max_windows: int = 200_000) -> TemporalNoise:
        """Fit the temporal covariance to chunks of a recording's standardized traces.

        Windows holding a value beyond 4 noise levels, or within 45 samples (1.5 ms at 30 kHz) of one,
        are left out (spikes); windows never straddle two chunks.

        Parameters
        ----------
        chunks : list of np.ndarray
            (num_samples, num_channels) arrays, already divided by each channel's noise level.
        length : int, default: 121
        source : str
        max_windows : int, default: 200000
            At most about this many windows are used, spread evenly over every channel of every
            chunk (the covariance of 121 lags is then known to a few tenths of a percent; all the
            windows of 256 channels took a minute and gigabytes).

        Returns
        -------
        TemporalNoise
        """
        columns = sum(np.shape(chunk)[1] for chunk in chunks)
        per_column = max(1, -(-max_windows // max(1, columns)))
        windows = [_spike_free_windows(channel, length, per_column) for chunk in chunks
                   for channel in np.asarray(chunk).T]
        windows = np.concatenate(windows) if windows else np.zeros((0, length))
        if len(windows) < 4 * length:
            raise ValueError(f"only {len(windows)} spike-free windows of {length} samples; give more data")
        covariance = np.cov(windows, rowvar=False)
        values, vectors = np.linalg.eigh(covariance)
        sqrtcov = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        scale = np.sqrt(np.mean(np.diag(covariance)))
        return cls(sqrtcov / scale, source)


def neuropixels_1_locations(num_channels: int) -> np.ndarray:
    """Contact positions (um) of the first ``num_channels`` channels of a Neuropixels 1.0 probe."""
    index = np.arange(num_channels)
    return np.column_stack([np.array([43.0, 11.0, 59.0, 27.0])[index % 4], (index // 2) * 20.0])


@dataclass(frozen=True)
class SpatialNoise:
    """Noise correlation between channels as a function of their distance.

    Attributes
    ----------
    distances_um : np.ndarray
        Increasing distances at which ``correlation`` is given (linear interpolation between them,
        zero beyond the last).
    correlation : np.ndarray
    source : str
    """

    distances_um: np.ndarray
    correlation: np.ndarray
    source: str

    @classmethod
    def from_shared_data(cls, folder: Path | None = None) -> SpatialNoise:
        """The profile of real Neuropixels 1.0 noise (IBL, 384 channels)."""
        path = (folder or shared_data_dir()) / "ibl_np1_noise_spatial_sqrtcov_384.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: set DLSORT_SHARED_DATA to the folder holding the shared "
                                    "noise statistics")
        sqrtcov = np.load(path)
        return cls.from_covariance(sqrtcov @ sqrtcov.T, neuropixels_1_locations(len(sqrtcov)),
                                   f"IBL Neuropixels 1.0 noise ({path.name})")

    @classmethod
    def from_traces(cls, chunks: list[np.ndarray], locations: np.ndarray, source: str = "recording") -> SpatialNoise:
        """Fit the profile to chunks of standardized traces, leaving out samples near any spike.

        Parameters
        ----------
        chunks : list of np.ndarray
            (num_samples, num_channels) arrays divided by each channel's noise level.
        locations : np.ndarray
            (num_channels, 2) in um.
        source : str
        """
        quiet = [chunk[~_spike_mask(chunk).any(axis=1)] for chunk in chunks]
        samples = np.concatenate(quiet) if quiet else np.zeros((0, len(locations)))
        if len(samples) < 1000:
            raise ValueError(f"only {len(samples)} spike-free samples across all channels; give more data")
        return cls.from_covariance(np.cov(samples, rowvar=False).reshape(len(locations), len(locations)),
                                   locations, source)

    @classmethod
    def from_covariance(cls, covariance: np.ndarray, locations: np.ndarray, source: str, bin_um: float = 10.0,
                        max_um: float = 200.0) -> SpatialNoise:
        """Average the correlations of a covariance matrix in ``bin_um`` distance bins up to ``max_um``."""
        scale = np.sqrt(np.diag(covariance))
        correlation = covariance / scale[:, None] / scale[None, :]
        distance = np.linalg.norm(locations[:, None] - locations[None], axis=-1)
        edges = np.arange(0.0, max_um + bin_um, bin_um)
        centres, means = [0.0], [1.0]
        for low, high in zip(edges[:-1], edges[1:]):
            inside = (distance > max(low, 0.5)) & (distance <= high)
            if inside.any():
                centres.append(float(distance[inside].mean()))
                means.append(float(correlation[inside].mean()))
        centres.append(max_um + bin_um)
        means.append(0.0)
        return cls(np.array(centres), np.array(means), source)

    def sqrtcov(self, locations: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """Matrix square root of the spatial covariance (unit diagonal) for contacts at ``locations``.

        ``strength`` scales the off-diagonal correlation (0 = independent channels).
        """
        distance = np.linalg.norm(locations[:, None] - locations[None], axis=-1)
        correlation = strength * np.interp(distance, self.distances_um, self.correlation, right=0.0)
        np.fill_diagonal(correlation, 1.0)
        values, vectors = np.linalg.eigh(correlation)
        root = (vectors * np.sqrt(np.clip(values, 1e-6, None))) @ vectors.T
        return root / np.linalg.norm(root, axis=1, keepdims=True)  # unit variance per channel


@dataclass(frozen=True)
class RecordingNoise:
    """The noise models of one recording (``recording_noise``)."""

    temporal: TemporalNoise
    spatial: SpatialNoise
    locations: np.ndarray


def recording_noise(recording, minutes: float, num_chunks: int = 30, seed: int = 0) -> RecordingNoise:
    """The noise of a recording, filtered, referenced and standardized like the sorter does.

    Parameters
    ----------
    recording : BaseRecording
    minutes : float
        The 1-s chunks are drawn at random from the first ``minutes`` of each segment.
    num_chunks : int, default: 30
        Chunks read (memory stays bounded whatever the recording's length and channel count).
    seed : int

    Returns
    -------
    RecordingNoise
        Temporal and spatial noise models, and the channel locations (um).
    """
    from spikeinterface.core import get_noise_levels

    from dlsort.preprocessing import preprocess

    rec = preprocess(recording)
    fs = rec.sampling_frequency
    levels = get_noise_levels(rec, return_in_uV=False, random_slices_kwargs=dict(seed=seed), progress_bar=False)
    rng = np.random.default_rng(seed)
    chunks = []
    for segment in range(rec.get_num_segments()):
        span = min(rec.get_num_samples(segment), int(minutes * 60 * fs))
        size = min(int(fs), span)
        for start in np.sort(rng.integers(0, span - size + 1, size=num_chunks)):
            traces = rec.get_traces(start_frame=int(start), end_frame=int(start) + size, segment_index=segment)
            chunks.append(traces / levels[None, :])
    locations = rec.get_channel_locations()[:, :2]
    source = "the recording being sorted"
    return RecordingNoise(TemporalNoise.from_traces(chunks, source=source),
                          SpatialNoise.from_traces(chunks, locations, source=source), locations)


def _spike_mask(traces: np.ndarray, margin: int = 45) -> np.ndarray:
    """bool, same shape: samples with |x| > 4 noise levels, or within ``margin`` samples of one, per column."""
    from scipy.ndimage import maximum_filter1d

    return maximum_filter1d(np.abs(traces) > 4.0, size=2 * margin + 1, axis=0) > 0


def _spike_free_windows(channel: np.ndarray, length: int, max_count: int | None = None) -> np.ndarray:
    """Windows of one channel (half-overlapping) outside ``_spike_mask``; at most ``max_count``, evenly spread."""
    if len(channel) < length:
        return np.zeros((0, length))
    bad = _spike_mask(channel)
    cumulative = np.concatenate([[0], np.cumsum(bad)])
    starts = np.arange(0, len(channel) - length + 1, max(1, length // 2))
    starts = starts[cumulative[starts + length] == cumulative[starts]]
    if max_count is not None and len(starts) > max_count:
        starts = starts[np.linspace(0, len(starts) - 1, max_count).round().astype(int)]
    return channel[starts[:, None] + np.arange(length)]

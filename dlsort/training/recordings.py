"""Short synthetic multi-channel recordings for the detector: probe patches, spikes, correlated noise.

A patch is a piece of a probe (a Neuropixels-1.0-like staggered segment, a linear shank of 20 to
100 um pitch, or a 3-column polytrode) with units around it whose templates come from
SpikeInterface's template generator (wide parameter ranges, sub-sample jitter) or, when
fine-tuning, from the recording's own units (``dlsort.training.bootstrap``). Noise is
spatially and temporally correlated: temporally like the given noise model (real Neuropixels noise,
or the recording's when fine-tuning) or like band-passed white noise, spatially with the given
correlation-versus-distance profile scaled by a random factor, so that one detector sees many
noise types. Noise, spikes and
therefore the whole patch are band-passed as the sorter's preprocessing does, and expressed in
noise standard deviations. Every spike is labelled with its main channel (largest trough), the
sample of that trough and its depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlsort.training.noise import SpatialNoise, TemporalNoise, neuropixels_1_locations
from dlsort.training.synthesis import TRAINING_SAMPLING_FREQUENCY, WAVEFORM_PARAMS_RANGE

TRAINING_FAMILIES = ("neuropixels-1.0", "linear", "polytrode")
JITTER_STEPS = 8  # sub-sample positions of each template


def random_patch_locations(rng: np.random.Generator, family: str) -> np.ndarray:
    """Contact positions (um) of a random patch of a probe of one of ``TRAINING_FAMILIES``."""
    if family == "neuropixels-1.0":
        return neuropixels_1_locations(int(rng.choice([24, 32, 48])))
    if family == "linear":
        pitch = float(rng.choice([20.0, 25.0, 40.0, 50.0, 100.0]))
        return np.column_stack([np.zeros(16), np.arange(16) * pitch])
    if family == "polytrode":
        pitch = float(rng.uniform(18.0, 30.0))
        rows = np.arange(10) * pitch
        return np.array([[column * pitch, row + (column % 2) * pitch / 2] for row in rows for column in range(3)])
    raise ValueError(f"unknown training family {family!r}; choose from {TRAINING_FAMILIES}")


def patch_contacts(rng: np.random.Generator, locations: np.ndarray | None,
                   band_um: float = 250.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Contact positions of one training patch.

    Parameters
    ----------
    rng : np.random.Generator
    locations : np.ndarray or None
        (num_channels, 2) contacts of a recording's probe; None draws a patch of a random
        ``TRAINING_FAMILIES`` probe.
    band_um : float, default: 250.0
        With ``locations``, the patch holds the contacts within a random stretch of this length
        along the probe, so that long probes stay cheap to simulate.

    Returns
    -------
    contacts : np.ndarray
        (num_contacts, 2) in um.
    band : np.ndarray or None
        Indices of ``contacts`` in ``locations`` (None without ``locations``).
    """
    if locations is None:
        return random_patch_locations(rng, TRAINING_FAMILIES[rng.integers(len(TRAINING_FAMILIES))]), None
    low = locations[rng.integers(len(locations)), 1] - band_um / 2
    band = np.flatnonzero((locations[:, 1] >= low) & (locations[:, 1] <= low + band_um))
    return locations[band], band


@dataclass(frozen=True)
class SyntheticPatch:
    """A short synthetic recording with labelled spikes.

    Attributes
    ----------
    traces : np.ndarray
        float32 (num_samples, num_channels), band-passed, in noise standard deviations.
    locations : np.ndarray
        (num_channels, 2) contact positions in um.
    spike_samples, spike_channels : np.ndarray
        Trough sample and main channel of every spike.
    spike_amplitudes : np.ndarray
        Trough depth on the main channel, in noise standard deviations.
    trough_ratio : np.ndarray
        (num_spikes, num_channels) each channel's trough depth over the main channel's.
    """

    traces: np.ndarray
    locations: np.ndarray
    spike_samples: np.ndarray
    spike_channels: np.ndarray
    spike_amplitudes: np.ndarray
    trough_ratio: np.ndarray


def _bandpass(signal: np.ndarray, axis: int) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(5, [300.0, 6000.0], btype="bandpass", fs=TRAINING_SAMPLING_FREQUENCY, output="sos")
    return sosfiltfilt(sos, signal, axis=axis)


def generated_templates(rng: np.random.Generator, locations: np.ndarray, num_units: int) -> np.ndarray:
    """Templates of ``num_units`` units placed at random around ``locations``, as ``synthesize_patch`` takes them.

    Units lie up to 40 um beyond the contacts and 5-60 um from their plane, with shapes drawn
    from SpikeInterface's generator over ``WAVEFORM_PARAMS_RANGE``.

    Returns
    -------
    np.ndarray
        float (num_units, num_samples, num_channels, JITTER_STEPS), band-passed, trough depth 1.
    """
    units, seed = _random_units(rng, locations, num_units)
    templates = _unit_templates(locations, units, seed)
    return templates / _trough_depth(templates)


def displaced_templates(rng: np.random.Generator, locations: np.ndarray, num_units: int,
                        displacement_um: float) -> tuple[np.ndarray, np.ndarray]:
    """``generated_templates``, and the templates of the same units moved along the probe, as drift moves them.

    Parameters
    ----------
    rng : np.random.Generator
    locations : np.ndarray
        (num_channels, 2) contact positions (um).
    num_units : int
    displacement_um : float
        Each unit moves along the probe (y) by a random distance of up to this many um each way.

    Returns
    -------
    templates, displaced : np.ndarray
        float (num_units, num_samples, num_channels, JITTER_STEPS) each, band-passed; the units'
        shapes are the same, and both are divided by ``templates``' trough depth (a unit that
        moves away from the contacts shrinks).
    """
    units, seed = _random_units(rng, locations, num_units)
    templates = _unit_templates(locations, units, seed)
    moved = units + np.column_stack([np.zeros(num_units), rng.uniform(-displacement_um, displacement_um, num_units),
                                     np.zeros(num_units)])
    depth = _trough_depth(templates)
    return templates / depth, _unit_templates(locations, moved, seed) / depth


def _random_units(rng: np.random.Generator, locations: np.ndarray, num_units: int) -> tuple[np.ndarray, int]:
    """(num_units, 3) random unit positions around ``locations`` and the seed of their shapes."""
    low, high = locations.min(axis=0) - 40.0, locations.max(axis=0) + 40.0
    units = np.column_stack([rng.uniform(low[0], high[0], num_units), rng.uniform(low[1], high[1], num_units),
                             rng.uniform(5.0, 60.0, num_units)])
    return units, int(rng.integers(2**31))


def _unit_templates(locations: np.ndarray, units: np.ndarray, seed: int) -> np.ndarray:
    """Band-passed templates of the units at ``units`` (n, 3); their shapes depend on ``seed`` only."""
    from spikeinterface.core.generate import generate_templates

    templates = generate_templates(locations, units, TRAINING_SAMPLING_FREQUENCY, 1.5, 3.5, seed=seed,
                                   upsample_factor=JITTER_STEPS, unit_params=dict(WAVEFORM_PARAMS_RANGE))
    return _bandpass(templates, axis=1)


def _trough_depth(templates: np.ndarray) -> np.ndarray:
    """(units, 1, 1, shifts) deepest trough over samples and channels of each template."""
    return (-templates.min(axis=1)).max(axis=1)[:, None, None, :]


def synthesize_patch(
    rng: np.random.Generator,
    locations: np.ndarray,
    temporal: TemporalNoise,
    spatial: SpatialNoise,
    duration_s: float = 1.0,
    snr_median: float = 5.0,
    snr_sigma: float = 0.6,
    large_fraction: float = 0.15,
    large_snr: tuple[float, float] = (10.0, 60.0),
    templates: np.ndarray | None = None,
) -> SyntheticPatch:
    """Simulate ``duration_s`` of a probe patch.

    Parameters
    ----------
    rng : np.random.Generator
    locations : np.ndarray
        (num_channels, 2) contact positions in um.
    temporal : TemporalNoise
        Used for half of the patches; the other half get white noise. Either is then band-passed at
        300-6000 Hz, as the sorter's preprocessing filters.
    spatial : SpatialNoise
        Correlation profile, scaled by a random strength in [0, 1].
    duration_s : float, default: 1.0
    snr_median, snr_sigma : float, default: 5.0, 0.6
        Log-normal distribution of each unit's trough depth (noise standard deviations); each
        spike varies by a further 10 % (log-normal).
    large_fraction : float, default: 0.15
        Fraction of units whose trough depth is instead log-uniform in ``large_snr``: large units
        show on contacts far from their main channel, where the detector must stay silent.
    large_snr : tuple of float, default: (10.0, 60.0)
    templates : np.ndarray or None
        (num_templates, num_samples, num_channels, JITTER_STEPS) templates on ``locations``
        (band-passed, trough depth 1, shifted by fractions of a sample), for example a
        recording's own units; the patch's units are drawn from them. None generates units with
        SpikeInterface's template generator.

    Returns
    -------
    SyntheticPatch
    """
    fs = TRAINING_SAMPLING_FREQUENCY
    num_samples, num_channels = int(duration_s * fs), len(locations)
    num_units = max(2, int(num_channels * rng.uniform(0.5, 1.2)))
    if templates is None:
        templates = generated_templates(rng, locations, num_units)
    else:
        templates = templates[rng.integers(len(templates), size=num_units)]
    snr = np.exp(rng.normal(np.log(snr_median), snr_sigma, num_units))
    large = rng.random(num_units) < large_fraction
    snr[large] = np.exp(rng.uniform(*np.log(large_snr), large.sum()))

    if rng.random() < 0.5:
        noise = temporal.stream(rng, num_samples, num_channels)
    else:
        noise = rng.standard_normal((num_samples, num_channels))
    # Band-passed as the sorter's preprocessing does: real Neuropixels noise changes character when
    # filtered (the detector trained on it unfiltered passed 20 times more noise troughs once filtered).
    noise = _bandpass(noise, axis=0) @ spatial.sqrtcov(locations, strength=rng.uniform(0.0, 1.0)).T
    traces = (noise / noise.std(axis=0, keepdims=True)).astype("float32")

    num_template_samples = templates.shape[1]
    samples, channels, amplitudes, ratios = [], [], [], []
    for unit in range(num_units):
        rate = rng.uniform(2.0, 25.0)
        count = rng.poisson(rate * duration_s)
        starts = np.sort(rng.integers(0, num_samples - num_template_samples, count))
        starts = starts[np.diff(starts, prepend=-num_samples) > int(0.002 * fs)]  # 2-ms refractory period
        for start in starts:
            shape = templates[unit, :, :, rng.integers(JITTER_STEPS)] * snr[unit] * np.exp(rng.normal(0.0, 0.1))
            traces[start : start + num_template_samples] += shape.astype("float32")
            troughs = -shape.min(axis=0)
            main = int(np.argmax(troughs))
            samples.append(start + int(np.argmin(shape[:, main])))
            channels.append(main)
            amplitudes.append(troughs[main])
            ratios.append(troughs / troughs[main])
    order = np.argsort(samples, kind="stable")
    return SyntheticPatch(
        traces=traces,
        locations=np.asarray(locations, dtype="float64"),
        spike_samples=np.asarray(samples, dtype="int64")[order],
        spike_channels=np.asarray(channels, dtype="int64")[order],
        spike_amplitudes=np.asarray(amplitudes, dtype="float32")[order],
        trough_ratio=np.asarray(ratios, dtype="float32").reshape(-1, num_channels)[order],
    )

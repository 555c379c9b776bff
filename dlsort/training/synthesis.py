"""Training examples for the waveform networks: synthetic spikes in realistic noise.

Spike shapes come from SpikeInterface's template generator over many random unit positions,
spatial decays and waveform parameters (wider ranges than its defaults, so the networks do not
learn one generator setting), with sub-sample jitter. Noise is temporally correlated like real
Neuropixels noise (the measured covariance in ``../shared/data``) or like a user's own
recording (fine-tuning). Amplitudes are log-normal in noise-standard-deviation units, down to
well below the detection threshold; a second, shifted spike collides with some examples. The
noise models live in ``dlsort.training.noise``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlsort.training.noise import TemporalNoise

TRAINING_SAMPLING_FREQUENCY = 30_000.0
# Broader than spikeinterface.core.generate.default_unit_params_range (which the benchmark cases use).
WAVEFORM_PARAMS_RANGE = dict(
    depolarization_ms=(0.06, 0.25),
    repolarization_ms=(0.3, 1.2),
    recovery_ms=(0.6, 2.0),
    positive_amplitude=(0.0, 0.6),
    smooth_ms=(0.02, 0.1),
    spatial_decay=(10.0, 60.0),
    propagation_speed=(150.0, 400.0),
)


def waveform_library(
    num_units: int, ms_before: float, ms_after: float, seed: int, upsample_factor: int = 8
) -> np.ndarray:
    """Single-channel spike waveforms with sub-sample jitter, normalised to a trough of -1.

    Units are placed at random 3-D positions around a two-column probe segment; every channel
    on which a unit's peak-to-peak amplitude exceeds 5 % of its largest gives one waveform, so the
    library holds the shapes a neighbourhood sees, near and far from the soma.

    Parameters
    ----------
    num_units : int
    ms_before, ms_after : float
        Window around the trough, at ``TRAINING_SAMPLING_FREQUENCY``.
    seed : int
    upsample_factor : int, default: 8
        Sub-sample positions per sample.

    Returns
    -------
    np.ndarray
        float32 (num_waveforms, upsample_factor, num_samples).
    """
    from spikeinterface.core.generate import generate_templates

    rng = np.random.default_rng(seed)
    rows = np.arange(12) * 20.0
    channels = np.array([[x, y] for y in rows for x in (0.0, 32.0)])
    units = np.column_stack(
        [rng.uniform(-30, 62, num_units), rng.uniform(40, 180, num_units), rng.uniform(5, 60, num_units)]
    )
    # generated on a window long enough for the slowest waveforms, then cut around the trough
    long_before, long_after = max(ms_before, 1.0), max(ms_after, 3.5)
    templates = generate_templates(
        channels, units, TRAINING_SAMPLING_FREQUENCY, long_before, long_after, seed=seed,
        upsample_factor=upsample_factor, unit_params=dict(WAVEFORM_PARAMS_RANGE),
    )  # (units, samples, channels, upsample)
    trough = int(long_before * TRAINING_SAMPLING_FREQUENCY / 1000.0)
    nbefore = int(ms_before * TRAINING_SAMPLING_FREQUENCY / 1000.0)
    nafter = int(ms_after * TRAINING_SAMPLING_FREQUENCY / 1000.0)
    templates = templates[:, trough - nbefore : trough + nafter]
    ptp = np.ptp(templates[..., 0], axis=1)  # (units, channels)
    keep = ptp >= 0.05 * ptp.max(axis=1, keepdims=True)
    waveforms = np.transpose(templates, (0, 2, 3, 1))[keep]  # (n, upsample, samples)
    scale = -waveforms.min(axis=(1, 2), keepdims=True)
    return (waveforms / np.maximum(scale, 1e-12)).astype("float32")


@dataclass(frozen=True)
class DenoisingExamples:
    """Noisy inputs, clean targets and the amplitude (in noise levels) of each target.

    Attributes
    ----------
    noisy, clean : np.ndarray
        float32 (num, num_samples).
    amplitude : np.ndarray
        float32 (num,) trough depth of the clean spike in noise standard deviations (its SNR).
    """

    noisy: np.ndarray
    clean: np.ndarray
    amplitude: np.ndarray

    def __len__(self) -> int:
        return len(self.noisy)


def denoising_examples(
    library: np.ndarray,
    noise: TemporalNoise,
    num: int,
    seed: int,
    amplitude_median: float = 3.0,
    amplitude_sigma: float = 1.0,
    collision_probability: float = 0.3,
    max_shift: int = 2,
) -> DenoisingExamples:
    """Draw denoising examples: a jittered spike (the target) plus an optional collision plus noise.

    Parameters
    ----------
    library : np.ndarray
        (num_waveforms, upsample_factor, num_samples) from ``waveform_library``.
    noise : TemporalNoise
    num : int
        Examples to draw.
    seed : int
    amplitude_median, amplitude_sigma : float, default: 3.0, 1.0
        Log-normal trough depth of the spikes in noise levels (median 3; 2 sigma spans 0.4 to 22),
        so channels far from the soma, where the spike is below the noise, are common.
    collision_probability : float, default: 0.3
        Probability that a second spike, shifted by 5 samples to half the window, is added (not
        part of the target).
    max_shift : int, default: 2
        The target is shifted by up to this many whole samples (imprecise peak alignment).

    Returns
    -------
    DenoisingExamples
    """
    rng = np.random.default_rng(seed)
    num_waveforms, upsample, num_samples = library.shape

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        shapes = library[rng.integers(num_waveforms, size=count), rng.integers(upsample, size=count)]
        amplitudes = np.exp(rng.normal(np.log(amplitude_median), amplitude_sigma, count)).astype("float32")
        return shapes * amplitudes[:, None], amplitudes

    clean, amplitude = draw(num)
    clean = _shift(clean, rng.integers(-max_shift, max_shift + 1, size=num))
    partner, _ = draw(num)
    offsets = rng.integers(5, max(6, num_samples // 2), size=num) * rng.choice([-1, 1], size=num)
    collided = rng.random(num) < collision_probability
    noisy = clean + _shift(partner, offsets) * collided[:, None] + noise.sample(rng, num, num_samples)
    return DenoisingExamples(noisy.astype("float32"), clean.astype("float32"), amplitude)


def _shift(waveforms: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each row by an integer number of samples, filling with zeros."""
    num_samples = waveforms.shape[1]
    source = np.arange(num_samples)[None, :] - shifts[:, None]
    inside = (source >= 0) & (source < num_samples)
    return np.where(inside, np.take_along_axis(waveforms, np.clip(source, 0, num_samples - 1), axis=1), 0.0)

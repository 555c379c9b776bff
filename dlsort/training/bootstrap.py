"""Templates of a recording's own units, from a quick sort, to synthesize fine-tuning data.

The first minutes of the recording are sorted with dlsort's defaults but without template
matching (the templates come straight from the clusters, which is all fine-tuning needs) and
without motion correction (a few minutes drift little). The templates keep the units' real
shapes and spatial footprints on the recording's own probe; ``synthesize_patch`` places them at
random amplitudes, with sub-sample jitter, in synthetic noise, so that the labels stay exact
(the detector), and ``bootstrap_waveforms`` cuts them into the single-channel shapes the
denoiser learns from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlsort.errors import DlsortInputError
from dlsort.training.recordings import JITTER_STEPS
from dlsort.training.synthesis import TRAINING_SAMPLING_FREQUENCY


@dataclass(frozen=True)
class BootstrapTemplates:
    """Unit templates of a recording at the training rate.

    Attributes
    ----------
    templates : np.ndarray
        float32 (num_units, num_samples, num_channels, JITTER_STEPS): each unit's template shifted
        by 0, 1/JITTER_STEPS, ... of a sample, scaled to a trough depth of 1 on its main channel.
    main_channels : np.ndarray
        Each unit's channel of deepest trough.
    """

    templates: np.ndarray
    main_channels: np.ndarray

    def restricted_to(self, channels: np.ndarray) -> np.ndarray:
        """Templates (as ``templates``) of the units whose main channel is among ``channels``, on those channels."""
        units = np.flatnonzero(np.isin(self.main_channels, channels))
        return self.templates[np.ix_(units, np.arange(self.templates.shape[1]), channels)]


def bootstrap_templates(recording, minutes: float, job_kwargs: dict | None = None, seed: int = 0) -> BootstrapTemplates:
    """Sort the first ``minutes`` of ``recording`` and return its units' templates, ready for synthesis.

    Parameters
    ----------
    recording : BaseRecording
        With channel locations.
    minutes : float
        Length sorted (of the first segment).
    job_kwargs : dict or None
        SpikeInterface job kwargs for the sort (default: 2 workers, no progress bar).
    seed : int, default: 0

    Returns
    -------
    BootstrapTemplates

    Raises
    ------
    DlsortInputError
        When the sort finds no unit.
    """
    from scipy.ndimage import shift
    from scipy.signal import resample_poly

    from dlsort.params import validate_params
    from dlsort.pipeline import run_pipeline

    num_samples = min(recording.get_num_samples(0), int(minutes * 60 * recording.sampling_frequency))
    part = recording.select_segments([0]).frame_slice(0, num_samples)
    params = validate_params({"matching_method": "none", "motion_correction": None, "seed": seed})
    jobs = job_kwargs or {"n_jobs": 2, "chunk_duration": "1s", "progress_bar": False}
    templates = run_pipeline(part, params, jobs).templates.get_dense_templates()
    if len(templates) == 0:
        raise DlsortInputError(f"the bootstrap sort of the first {minutes:g} min found no unit: sort a longer stretch "
                               "(--bootstrap-minutes) or fine-tune without the recording's templates "
                               "(--bootstrap-minutes 0)")
    rate, training_rate = int(round(recording.sampling_frequency)), int(TRAINING_SAMPLING_FREQUENCY)
    if rate != training_rate:
        templates = resample_poly(templates, training_rate, rate, axis=1)
    depth = -templates.min(axis=1)  # (units, channels)
    main = np.argmax(depth, axis=1)
    templates = templates / depth.max(axis=1)[:, None, None]
    shifted = np.stack([shift(templates, (0.0, step / JITTER_STEPS, 0.0), order=3, mode="nearest")
                        for step in range(JITTER_STEPS)], axis=-1)
    return BootstrapTemplates(shifted.astype("float32"), main)


def bootstrap_waveforms(templates: BootstrapTemplates, ms_before: float, ms_after: float,
                        min_fraction: float = 0.05) -> np.ndarray:
    """Single-channel waveforms of a recording's units, drawn as ``waveform_library`` draws generated ones.

    Every channel whose peak-to-peak amplitude reaches ``min_fraction`` of its unit's largest
    gives one waveform per sub-sample shift, cut around the unit's trough on its main channel
    (zero beyond the template) and normalised to a trough of -1.

    Parameters
    ----------
    templates : BootstrapTemplates
    ms_before, ms_after : float
        Window around the trough, at ``TRAINING_SAMPLING_FREQUENCY``.
    min_fraction : float, default: 0.05

    Returns
    -------
    np.ndarray
        float32 (num_waveforms, JITTER_STEPS, num_samples), as ``waveform_library``.
    """
    nbefore, nafter = (int(ms * TRAINING_SAMPLING_FREQUENCY / 1000.0) for ms in (ms_before, ms_after))
    units = np.arange(len(templates.templates))
    troughs = templates.templates[units, :, templates.main_channels, 0].argmin(axis=1)
    padded = np.pad(templates.templates, ((0, 0), (nbefore, nafter), (0, 0), (0, 0)))
    windows = np.stack([padded[unit, trough:trough + nbefore + nafter] for unit, trough in zip(units, troughs)])
    ptp = np.ptp(windows[..., 0], axis=1)  # (units, channels)
    keep = ptp >= min_fraction * ptp.max(axis=1, keepdims=True)
    waveforms = np.transpose(windows, (0, 2, 3, 1))[keep]  # (n, shifts, samples)
    scale = -waveforms.min(axis=(1, 2), keepdims=True)
    return (waveforms / np.maximum(scale, 1e-12)).astype("float32")

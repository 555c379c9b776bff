"""Spike detection stage.

``detect_peaks(recording, method=...)`` returns SpikeInterface's peak array
(``sample_index``, ``channel_index``, ``amplitude``, ``segment_index``). The ``"threshold"``
method is SpikeInterface's locally exclusive threshold detector; neural methods plug in
beside it in ``DETECTION_METHODS``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlsort.errors import check_choice


def _detect_threshold(
    recording,
    *,
    detect_threshold: float,
    peak_sign: str,
    exclude_sweep_ms: float,
    radius_um: float,
    noise_levels: np.ndarray | None,
    job_kwargs: dict,
) -> np.ndarray:
    from spikeinterface.sortingcomponents.peak_detection import detect_peaks as si_detect_peaks

    method_kwargs = dict(
        peak_sign=peak_sign,
        detect_threshold=detect_threshold,
        exclude_sweep_ms=exclude_sweep_ms,
        radius_um=radius_um,
    )
    if noise_levels is not None:
        method_kwargs["noise_levels"] = noise_levels
    return si_detect_peaks(recording, method="locally_exclusive", method_kwargs=method_kwargs, job_kwargs=job_kwargs)


DETECTION_METHODS: dict[str, Callable[..., np.ndarray]] = {"threshold": _detect_threshold}


def detect_peaks(
    recording,
    method: str = "threshold",
    detect_threshold: float = 5.0,
    peak_sign: str = "neg",
    exclude_sweep_ms: float = 0.5,
    radius_um: float = 50.0,
    noise_levels: np.ndarray | None = None,
    job_kwargs: dict | None = None,
) -> np.ndarray:
    """Detect spikes in a (preprocessed) recording.

    Parameters
    ----------
    recording : BaseRecording
        Filtered, referenced recording with channel locations.
    method : str, default: "threshold"
        One of ``DETECTION_METHODS``: ``"threshold"`` = a sample is a peak when it crosses
        ``detect_threshold`` times the channel's noise level and is the extremum within
        ``radius_um`` and ``exclude_sweep_ms``.
    detect_threshold : float, default: 5.0
        Threshold in multiples of the noise level (MAD).
    peak_sign : {"neg", "pos", "both"}, default: "neg"
    exclude_sweep_ms : float, default: 0.5
        Half-width of the temporal exclusion zone around a peak.
    radius_um : float, default: 50.0
        Spatial exclusion radius.
    noise_levels : np.ndarray or None
        Per-channel noise levels; estimated from random chunks when None.
    job_kwargs : dict or None
        SpikeInterface job kwargs (``n_jobs``, ``chunk_duration``, ``progress_bar``).

    Returns
    -------
    np.ndarray
        Structured peak array sorted by segment then sample.
    """
    check_choice("method", method, DETECTION_METHODS)
    check_choice("peak_sign", peak_sign, ("neg", "pos", "both"))
    return DETECTION_METHODS[method](
        recording,
        detect_threshold=detect_threshold,
        peak_sign=peak_sign,
        exclude_sweep_ms=exclude_sweep_ms,
        radius_um=radius_um,
        noise_levels=noise_levels,
        job_kwargs=dict(job_kwargs or {}),
    )

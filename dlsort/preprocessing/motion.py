"""Motion correction: the preset for a probe, its estimate on the filtered traces, lazy interpolation."""

from __future__ import annotations

import numpy as np

from dlsort.errors import check_choice

MOTION_PRESETS = ("dredge_fast", "nonrigid_fast_and_accurate", "rigid_fast", "kilosort_like")
AUTO_MOTION_PRESET = "dredge_fast"
# DREDge's default "full" batching cross-correlates every pair of time bins of the whole recording, so its
# memory grows with the square of the recording length (dlsort's main process reached 1.2 GiB on 20 min of
# 64 channels). "online" batching registers consecutive chunks of ``chunk_len_s`` time bins (1 s bins for
# dredge_fast, 5 s for rigid_fast: 120 s and 600 s chunks), each against the previous one.
BOUNDED_MOTION_ESTIMATION = {
    "dredge_fast": {"batching_mode": "online", "chunk_len_s": 120},
    "rigid_fast": {"batching_mode": "online", "chunk_len_s": 120},
}


def resolve_motion_correction(recording, motion_correction: str | None) -> str | None:
    """The motion-correction preset to apply: ``"auto"`` becomes ``"dredge_fast"`` on shank-like probes.

    Motion is estimated along depth, which needs a probe that is long and narrow: ``"auto"``
    applies ``AUTO_MOTION_PRESET`` when the probe has more than 32 channels spanning at most
    60 um across, and nothing otherwise.

    Parameters
    ----------
    recording : BaseRecording
    motion_correction : str or None
        ``"auto"``, one of ``MOTION_PRESETS``, or None.

    Returns
    -------
    str or None
    """
    if motion_correction != "auto":
        if motion_correction is not None:
            check_choice("motion_correction", motion_correction, ("auto", *MOTION_PRESETS))
        return motion_correction
    x = recording.get_channel_locations()[:, 0]
    shank_like = recording.get_num_channels() > 32 and np.ptp(x) <= 60.0
    return AUTO_MOTION_PRESET if shank_like else None


def motion_corrected(recording, preset: str | None, job_kwargs: dict | None = None,
                     seed: int | None = 0) -> tuple:
    """Estimate the motion of a filtered recording and interpolate it away, lazily (SpikeInterface).

    The steps of SpikeInterface's ``correct_motion`` with the preset's parameters: detect peaks,
    localize them, estimate the motion, interpolate. Peaks are detected by
    ``dlsort.peak_picking.ThresholdPeakDetector`` (the peaks of the preset's numba
    ``locally_exclusive`` detector, without its compilation); localization, estimation and
    interpolation are SpikeInterface's. An estimate of no displacement at all leaves the traces
    as they are: interpolating channels to where they already are is the identity (to float
    rounding), and every later pass would pay for it.

    Parameters
    ----------
    recording : BaseRecording
        Filtered (and referenced) recording with a probe: the motion is estimated on it now (one
        pass), and each later read interpolates its channels to where the tissue was (a spatial
        mix of neighbouring channels at every sample).
    preset : str or None
        One of ``MOTION_PRESETS`` (already resolved, not ``"auto"``); None returns ``recording``.
        The DREDge presets run in the online batching mode of ``BOUNDED_MOTION_ESTIMATION``.
    job_kwargs : dict or None
        Job kwargs for the peak detection and localization pass.
    seed : int or None, default: 0
        Seed of the random chunks the detection's noise levels are estimated on.

    Returns
    -------
    recording : BaseRecording
        SpikeInterface's ``InterpolateMotionRecording``, or ``recording`` itself (no preset, or no
        displacement estimated).
    motion : Motion or None
        The estimate (None without a preset); see :func:`estimated_drift_um`.
    """
    from spikeinterface.core import get_noise_levels
    from spikeinterface.core.node_pipeline import ExtractDenseWaveforms, run_node_pipeline
    from spikeinterface.preprocessing.motion import motion_options_preset
    from spikeinterface.sortingcomponents.motion import estimate_motion, interpolate_motion
    from spikeinterface.sortingcomponents.peak_localization import peak_localization_methods

    from dlsort.peak_picking import ThresholdPeakDetector

    if preset is None:
        return recording, None
    check_choice("motion_correction", preset, MOTION_PRESETS)
    steps = motion_options_preset[preset]
    job_kwargs = dict(job_kwargs or {})
    detect = {key: value for key, value in steps["detect_kwargs"].items() if key != "method"}
    if steps["detect_kwargs"]["method"] != "locally_exclusive" or steps["select_kwargs"]:
        raise RuntimeError(f"SpikeInterface's motion preset {preset!r} no longer detects peaks with locally_exclusive "
                           "and no selection, as dlsort runs it: install the SpikeInterface version dlsort requires")
    noise_levels = get_noise_levels(recording, return_in_uV=False, random_slices_kwargs=dict(seed=seed),
                                    n_jobs=job_kwargs.get("n_jobs", 1))
    detector = ThresholdPeakDetector(recording, noise_levels, **detect)
    # the preset's localization sees 0.1 ms before and 0.3 ms after each peak, as in correct_motion
    snippets = ExtractDenseWaveforms(recording, parents=[detector], ms_before=0.1, ms_after=0.3)
    localize = dict(steps["localize_peaks_kwargs"])
    localizer = peak_localization_methods[localize.pop("method")](recording, parents=[detector, snippets],
                                                                   return_output=True, **localize)
    peaks, locations = run_node_pipeline(recording, [detector, snippets, localizer], job_kwargs,
                                         job_name="motion: detect and localize", gather_mode="memory",
                                         squeeze_output=False)
    motion = estimate_motion(recording, peaks, locations, progress_bar=job_kwargs.get("progress_bar", False),
                             **{**steps["estimate_motion_kwargs"], **BOUNDED_MOTION_ESTIMATION.get(preset, {})})
    if not any(np.any(displacement) for displacement in motion.displacement):
        return recording, motion
    return interpolate_motion(recording, motion, **steps["interpolate_motion_kwargs"]), motion


def estimated_drift_um(motion) -> float | None:
    """Peak-to-peak of an estimated drift over time, at the depth where it is largest.

    Parameters
    ----------
    motion : Motion or None
        From :func:`motion_corrected`.

    Returns
    -------
    float or None
        In um; None for no estimate (no motion correction).
    """
    if motion is None:
        return None
    displacement = np.concatenate(motion.displacement, axis=0)  # time bins x depth bins
    return float(np.ptp(displacement, axis=0).max()) if displacement.size else 0.0

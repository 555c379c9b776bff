"""Classical preprocessing with SpikeInterface: band-pass, common reference (motion correction: ``.motion``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlsort.errors import check_choice
from dlsort.preprocessing.motion import motion_corrected, resolve_motion_correction

# Contacts within this distance of a spike's main contact still carry a large part of its amplitude.
SPIKE_REACH_UM = 50.0


def resolve_common_reference(recording, common_reference: bool | str) -> bool:
    """Whether to subtract the common median: ``"auto"`` does so unless one spike reaches most channels.

    The median across channels stands for the shared noise only while most channels carry no spike
    at that moment. On a tetrode, or any probe so compact that a spike reaches most contacts, the
    median is the spike itself and subtracting it erases it. ``"auto"`` references when the median
    contact has fewer than half of the probe's channels within ``SPIKE_REACH_UM`` (itself included),
    and never with fewer than 3 channels.

    Parameters
    ----------
    recording : BaseRecording
        With channel locations.
    common_reference : bool or "auto"

    Returns
    -------
    bool
    """
    from scipy.spatial import cKDTree

    check_choice("common_reference", common_reference, (True, False, "auto"))
    if not common_reference or recording.get_num_channels() < 3:
        return False
    if common_reference != "auto":
        return True
    locations = recording.get_channel_locations()
    reached = cKDTree(locations).query_ball_point(locations, SPIKE_REACH_UM, return_length=True)
    return bool(np.median(reached) < len(locations) / 2)


def preprocess(
    recording,
    freq_min: float = 300.0,
    freq_max: float = 6000.0,
    common_reference: bool | str = True,
    motion_correction: str | None = None,
    job_kwargs: dict | None = None,
    deepinterpolation_model: str | Path | None = None,
    device: str = "cpu",
    scratch_folder: Path | None = None,
):
    """Band-pass filter, common-median reference, optionally DeepInterpolate and motion-correct a recording.

    Parameters
    ----------
    recording : BaseRecording
        Raw (or already filtered) recording with a probe.
    freq_min, freq_max : float, default: 300, 6000
        Band-pass corners in Hz; ``freq_max`` is clipped below Nyquist.
    common_reference : bool or "auto", default: True
        Subtract the median across channels at every sample (needs >= 3 channels to act); ``"auto"``:
        only where a spike reaches fewer than half of the channels (``resolve_common_reference``).
    motion_correction : str or None, default: None
        A SpikeInterface ``correct_motion`` preset (one of ``MOTION_PRESETS``), ``"auto"``
        (see ``resolve_motion_correction``) or None, applied last by :func:`motion_corrected`.
    job_kwargs : dict or None
        Job kwargs for the motion estimation.
    deepinterpolation_model : str, Path or None, default: None
        A ``"deepinterpolation"`` model applied after referencing and before motion correction
        (``dlsort.preprocessing.deepinterpolation``); None skips it.
    device : str, default: "cpu"
        Where DeepInterpolation runs.
    scratch_folder : Path or None, default: None
        Where to write the DeepInterpolated traces once (``<folder>/deepinterpolated``, float32, as
        large as the recording), so that the sorter's later passes read them instead of running
        the network again; None keeps DeepInterpolation lazy (recomputed by every pass).

    Returns
    -------
    BaseRecording
        Lazy float32 preprocessed recording.
    """
    import spikeinterface.preprocessing as spre

    nyquist = recording.sampling_frequency / 2.0
    if not 0 < freq_min < nyquist:
        raise ValueError(f"freq_min={freq_min} Hz must be in (0, {nyquist}) for this sampling rate")
    freq_max = min(freq_max, 0.95 * nyquist)
    if freq_max <= freq_min:
        raise ValueError(f"freq_max={freq_max} Hz must exceed freq_min={freq_min} Hz")
    out = spre.bandpass_filter(recording, freq_min=freq_min, freq_max=freq_max, dtype="float32")
    if resolve_common_reference(recording, common_reference):
        out = spre.common_reference(out, reference="global", operator="median")
    if deepinterpolation_model is not None:
        from dlsort.preprocessing.deepinterpolation import deepinterpolate

        out = deepinterpolate(out, deepinterpolation_model, device=device)
        if scratch_folder is not None:
            out = out.save(folder=Path(scratch_folder) / "deepinterpolated", overwrite=True, **dict(job_kwargs or {}))
    return motion_corrected(out, resolve_motion_correction(recording, motion_correction), job_kwargs)[0]

"""Checks on the recording and the device, run before any work so bad input fails fast and clearly."""

from __future__ import annotations

import numpy as np

from dlsort.errors import DlsortInputError


def check_recording(recording) -> None:
    """Raise :class:`DlsortInputError` when ``recording`` cannot be sorted, whatever the parameters.

    Checks: it is a SpikeInterface recording with at least one channel, channel locations
    (a probe), distinct locations, and finite samples (ten chunks spread over each segment are
    read: NaN or inf there is reported).

    Parameters
    ----------
    recording : BaseRecording
    """
    from spikeinterface.core import BaseRecording

    if not isinstance(recording, BaseRecording):
        raise DlsortInputError(f"expected a SpikeInterface recording, got {type(recording).__name__}")
    if recording.get_num_channels() == 0:
        raise DlsortInputError("the recording has zero channels; select channels with recording.select_channels(...)")
    if not recording.has_probe() and "location" not in recording.get_property_keys():
        raise DlsortInputError(
            "the recording has no probe / channel locations; attach one with recording.set_probe(probe) "
            "(see probeinterface) or recording.set_dummy_probe_from_locations(locations)"
        )
    locations = recording.get_channel_locations()
    if len(np.unique(locations, axis=0)) != len(locations):
        raise DlsortInputError("several channels share the same location; fix the probe's contact positions")
    _check_finite(recording, chunk_size=int(recording.sampling_frequency))


def check_duration(recording, chunk_duration_s: float, ms_before: float, ms_after: float) -> None:
    """Raise :class:`DlsortInputError` when a segment is shorter than one chunk or one snippet window.

    Parameters
    ----------
    recording : BaseRecording
    chunk_duration_s : float
        Chunk duration the pipeline processes the recording in.
    ms_before, ms_after : float
        Snippet window.
    """
    fs = recording.sampling_frequency
    minimum = max(int(round(chunk_duration_s * fs)), int((ms_before + ms_after) * fs / 1000.0) + 1)
    for segment in range(recording.get_num_segments()):
        num_samples = recording.get_num_samples(segment)
        if num_samples < minimum:
            raise DlsortInputError(
                f"segment {segment} has {num_samples} samples ({num_samples / fs:.3f} s), shorter than one chunk "
                f"({minimum} samples = {minimum / fs:.3f} s); use a longer recording or a smaller chunk_duration"
            )


def _check_finite(recording, chunk_size: int, num_chunks: int = 10) -> None:
    for segment in range(recording.get_num_segments()):
        num_samples = recording.get_num_samples(segment)
        starts = np.unique(np.linspace(0, max(num_samples - chunk_size, 0), num_chunks).astype(int))
        for start in starts:
            traces = recording.get_traces(
                segment_index=segment, start_frame=start, end_frame=min(start + chunk_size, num_samples)
            )
            if not np.all(np.isfinite(traces)):
                bad = np.flatnonzero(~np.isfinite(traces).all(axis=0))
                raise DlsortInputError(
                    f"the recording holds NaN or inf samples (segment {segment}, from sample {start}, channel "
                    f"indices {bad[:5].tolist()}); remove or interpolate them before sorting"
                )


def resolve_device(device: str) -> str:
    """Turn ``"auto" | "cpu" | "cuda"`` into the device the neural stages will use.

    Parameters
    ----------
    device : str

    Returns
    -------
    str
        ``"cuda"`` or ``"cpu"``.

    Raises
    ------
    DlsortInputError
        For ``"cuda"`` when no CUDA device is usable, or an unknown device.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise DlsortInputError(
                "device='cuda' was requested but torch sees no CUDA device (CPU build of torch, or no GPU/driver); "
                "use device='cpu' or 'auto', or install a CUDA build of torch (see the README)"
            )
        return "cuda"
    raise DlsortInputError(f"device={device!r} is not one of ['auto', 'cpu', 'cuda']")

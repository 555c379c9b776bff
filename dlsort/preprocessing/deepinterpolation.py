"""DeepInterpolation as a lazy SpikeInterface preprocessor: every chunk is predicted from the frames around it.

``deepinterpolate(recording, model)`` returns a recording whose traces are the network's
prediction of each frame from the frames before and after it (never from the frame itself), which
keeps the signal shared across frames (spikes, fields) and drops noise independent between frames.
Channels go on the probe grid (``dlsort.geometry.probe_grid``), or on DeepInterpolation's
checkerboard when the model card says ``"grid": "checkerboard"`` (the converted Allen models);
traces are normalised by one mean and standard deviation for the whole probe (as in
DeepInterpolation) and scaled back afterwards. A model runs on the probe families its card names
(``geometry.probe_families``) unless told to apply it to another (``allow_other_probes``).
Chunks are read with margins of the network's context, so any chunking gives the same traces;
within the context of the recording's first and last frame the network sees one side only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from spikeinterface.preprocessing.basepreprocessor import BasePreprocessor, BasePreprocessorSegment

from dlsort.errors import DlsortInputError
from dlsort.geometry import ProbeGrid, checkerboard_grid, probe_family, probe_grid
from dlsort.workers import adopt_torch_in_worker

TASK = "deepinterpolation"
BLOCK_FRAMES = 4096  # frames per forward pass: bounds the network's intermediate memory (~0.2 GB for 384 channels)


def normalisation(recording, seed: int = 0) -> tuple[float, float]:
    """One mean and standard deviation over all channels, from 20 random 1-s chunks of ``recording``.

    Parameters
    ----------
    recording : BaseRecording
    seed : int, default: 0

    Returns
    -------
    mean, std : float
    """
    from spikeinterface.core import get_random_data_chunks

    chunk_size = int(min(recording.sampling_frequency, recording.get_num_samples(0)))
    samples = get_random_data_chunks(recording, num_chunks_per_segment=20, chunk_size=chunk_size, seed=seed,
                                     return_in_uV=False)
    std = float(np.std(samples))
    if not np.isfinite(std) or std == 0:
        raise DlsortInputError("the recording is constant or not finite: DeepInterpolation cannot normalise it")
    return float(np.mean(samples)), std


def model_grid(card: dict, recording) -> ProbeGrid:
    """The grid a model's card names (``"grid"``): the probe's geometry (default) or DeepInterpolation's checkerboard.

    Parameters
    ----------
    card : dict
        Model card of a ``"deepinterpolation"`` model.
    recording : BaseRecording

    Returns
    -------
    ProbeGrid

    Raises
    ------
    DlsortInputError
        A checkerboard model trained on another number of channels (its card's
        ``geometry.min_channels`` to ``max_channels``) than the recording has.
    """
    num_channels = recording.get_num_channels()
    if card.get("grid", "geometry") == "geometry":
        return probe_grid(recording.get_channel_locations())
    low, high = card["geometry"].get("min_channels", 1), card["geometry"].get("max_channels", num_channels)
    if not low <= num_channels <= high:
        trained = f"{low}" if low == high else f"{low} to {high}"
        raise DlsortInputError(
            f"model {card['id']} reads {trained} channels on a checkerboard (channel c at row c, column c % 2) but "
            f"the recording has {num_channels}; give it the channels it was trained on, in probe order (e.g. all 384 "
            "of a Neuropixels 1.0 probe), or train a geometry model on this probe (dlsort train deepinterpolation)")
    return checkerboard_grid(num_channels)


def check_probe_family(card: dict, recording) -> None:
    """Refuse a recording whose probe family (``dlsort.geometry.probe_family``) the model's card does not name.

    Parameters
    ----------
    card : dict
        Model card of a ``"deepinterpolation"`` model; ``geometry.probe_families`` lists the
        families it was trained on (``"any"`` accepts every probe).
    recording : BaseRecording
        With channel locations.

    Raises
    ------
    DlsortInputError
        Naming the families, the recording's, and the ways out.
    """
    from dlsort.models.catalog import geometry_supports

    family = probe_family(recording.get_channel_locations(), recording.get_channel_groups())
    if geometry_supports(card["geometry"], family):
        return
    raise DlsortInputError(
        f"model {card['id']}@{card['version']} was trained on {', '.join(card['geometry']['probe_families'])} "
        f"probes, but the recording's contacts are laid out as a {family} probe (dlsort.geometry.probe_family; a few "
        "channels cut from a probe can look like another family); on a layout it never saw a model can remove much "
        "less noise or distort spikes (docs/benchmarks.md, the NP2 case). Use a model trained on this family (dlsort "
        "models list), train one on the recording (dlsort train deepinterpolation --recording R), or pass "
        "allow_other_probes=True to apply this one anyway")


class DeepInterpolatedRecording(BasePreprocessor):
    """The traces of ``recording`` as a blind-spot network predicts them from the frames around each one.

    Parameters
    ----------
    recording : BaseRecording
        With channel locations; its sampling rate must be the model's.
    model : str or Path
        A catalog id or a ``.safetensors`` file with its card (task ``"deepinterpolation"``).
    mean, std : float
        Normalisation (``normalisation(recording)``); part of the recording's JSON, so a saved
        chain reproduces the same traces.
    device : str, default: "cpu"
    allow_other_probes : bool, default: False
        Apply the model to a probe family its card does not name (``check_probe_family``), e.g.
        to measure how it transfers.
    """

    def __init__(self, recording, model: str | Path, mean: float, std: float, device: str = "cpu",
                 allow_other_probes: bool = False):
        from dlsort.models import load
        from dlsort.nn import build_network

        if not recording.has_probe():
            raise DlsortInputError("DeepInterpolation needs channel locations: attach a probe to the recording")
        tensors, card, model_file = load(model, task=TASK, device=device)
        if abs(card["sampling_frequency_hz"] - recording.sampling_frequency) > 1e-3 * card["sampling_frequency_hz"]:
            raise DlsortInputError(
                f"model {model} was trained at {card['sampling_frequency_hz']:g} Hz but the recording is sampled at "
                f"{recording.sampling_frequency:g} Hz; resample the recording or train a model on it")
        grid = model_grid(card, recording)
        if not allow_other_probes:
            check_probe_family(card, recording)
        network = build_network(card["architecture"], tensors).to(device)
        needed = 2 * (network.context + network.omission) + 1  # one frame with its whole context on both sides
        shortest = min(recording.get_num_samples(index) for index in range(recording.get_num_segments()))
        if shortest < needed:
            raise DlsortInputError(
                f"model {model} predicts each frame from frames up to {network.context + network.omission} before and "
                f"after it, so it needs segments of at least {needed} frames; the recording has a segment of "
                f"{shortest}: give it a longer recording")
        BasePreprocessor.__init__(self, recording, dtype="float32")
        for parent_segment in recording.segments:
            self.add_recording_segment(DeepInterpolatedSegment(parent_segment, network, grid, mean, std, device))
        # model_file.id: "id@version", or the absolute path of a local file (the JSON loads from any folder)
        self._kwargs = dict(recording=recording, model=model_file.id, mean=float(mean), std=float(std), device=device,
                            allow_other_probes=allow_other_probes)


class DeepInterpolatedSegment(BasePreprocessorSegment):
    """One segment: reads the chunk with margins, interpolates it on the grid block by block, crops the margins."""

    def __init__(self, parent_segment, network, grid, mean: float, std: float, device: str):
        BasePreprocessorSegment.__init__(self, parent_segment)
        import torch

        self.network, self.grid, self.mean, self.std, self.device = network, grid, mean, std, device
        self.mask = torch.as_tensor(grid.mask, device=device)  # built once, not per chunk
        self.margin = network.context + network.omission + 1
        self._owner_pid = os.getpid()

    def get_traces(self, start_frame=None, end_frame=None, channel_indices=None) -> np.ndarray:
        import torch
        from spikeinterface.core.recording_tools import get_chunk_with_margin

        self._owner_pid = adopt_torch_in_worker(self._owner_pid)  # one torch thread per SpikeInterface worker
        traces, left, right = get_chunk_with_margin(self.parent_recording_segment, start_frame, end_frame, None,
                                                    self.margin)
        finite = np.isfinite(traces)
        if not finite.all():
            frame, channel = np.argwhere(~finite)[0]
            first = (0 if start_frame is None else start_frame) - left + int(frame)
            raise DlsortInputError(
                f"the traces hold NaN or infinite values (first at frame {first}, channel index {channel}); "
                "DeepInterpolation would spread them to every frame and channel around them: replace them first "
                "(e.g. spikeinterface.preprocessing.silence_periods over the frames they span)")
        grid = torch.as_tensor(self.grid.to_grid((traces.astype("float32") - self.mean) / self.std))
        predicted = np.empty(grid.shape, dtype="float32")
        with torch.no_grad():
            for start in range(0, grid.shape[0], BLOCK_FRAMES):  # each block read with its context: same result
                first, stop = max(0, start - self.margin), min(grid.shape[0], start + BLOCK_FRAMES + self.margin)
                block = self.network(grid[first:stop].to(self.device)[None], self.mask)[0].cpu().numpy()
                predicted[start: start + BLOCK_FRAMES] = block[start - first: start - first + BLOCK_FRAMES]
        restored = self.grid.from_grid(predicted) * self.std + self.mean
        restored = restored[left: restored.shape[0] - right]
        return restored if channel_indices is None else restored[:, channel_indices]


def deepinterpolate(recording, model: str | Path, device: str = "cpu", mean: float | None = None,
                    std: float | None = None, allow_other_probes: bool = False) -> DeepInterpolatedRecording:
    """DeepInterpolation of ``recording`` with ``model``, lazily, chunk by chunk.

    Parameters
    ----------
    recording : BaseRecording
        Filtered and referenced as the model's training data was.
    model : str or Path
        Catalog id or ``.safetensors`` file of a ``"deepinterpolation"`` model.
    device : str, default: "cpu"
    mean, std : float or None
        Normalisation; by default measured on 20 random 1-s chunks (``normalisation``).
    allow_other_probes : bool, default: False
        Apply the model to a probe family its card does not name; by default that is refused
        (``check_probe_family``).

    Returns
    -------
    DeepInterpolatedRecording
    """
    if mean is None or std is None:
        mean, std = normalisation(recording)
    return DeepInterpolatedRecording(recording, model, mean, std, device, allow_other_probes)

"""Self-supervised training of the blind-spot interpolator on a recording (DeepInterpolation's objective).

The network predicts every frame of a window from the frames around it and is trained to
reproduce the window itself: the only part of a frame it can predict is what the surrounding
frames share with it, so noise independent between frames is not learned. Windows are drawn from
the first minutes of the recording; the last tenth of that time is held out for early stopping.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dlsort.errors import DlsortInputError
from dlsort.geometry import probe_family, probe_grid
from dlsort.nn.interpolator import BlindSpotInterpolator
from dlsort.training.trainer import TrainingReport, fit

ARCHITECTURE = "blind-spot-interpolator"


class CroppedMSE(nn.Module):
    """Mean squared error leaving out ``margin`` frames at each end of a window.

    Frames near a window's ends see only part of their context, unlike frames inside a long chunk.
    Empty grid cells are zero in both prediction and target, so they add no error.
    """

    def __init__(self, margin: int):
        super().__init__()
        self.margin = margin

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inner = slice(self.margin, predicted.shape[1] - self.margin)
        return ((predicted[:, inner] - target[:, inner]) ** 2).mean()


def training_windows(recording, grid, mean: float, std: float, num_windows: int, window: int, minutes: float,
                     seed: int) -> np.ndarray:
    """``num_windows`` random windows of the first ``minutes`` of segment 0, normalised, on the grid.

    Returns
    -------
    np.ndarray
        float32 (num_windows, window, rows, columns).
    """
    available = min(recording.get_num_samples(0), int(minutes * 60 * recording.sampling_frequency))
    if available < 2 * window:
        raise DlsortInputError(f"the recording has {available} samples to train on; DeepInterpolation needs at least "
                               f"{2 * window} (two windows)")
    starts = np.sort(np.random.default_rng(seed).integers(0, available - window, num_windows))
    windows = np.empty((num_windows, window, *grid.shape), dtype="float32")
    for i, start in enumerate(starts):
        traces = recording.get_traces(segment_index=0, start_frame=int(start), end_frame=int(start) + window)
        windows[i] = grid.to_grid((traces.astype("float32") - mean) / std)
    return windows


def train_interpolator(
    recording,
    mean: float,
    std: float,
    start_from: BlindSpotInterpolator | None = None,
    minutes: float = 10.0,
    num_windows: int = 1000,
    window: int = 256,
    max_epochs: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    device: str = "cpu",
    max_seconds: float | None = None,
    progress_bar: bool = True,
) -> tuple[BlindSpotInterpolator, TrainingReport]:
    """Train (or fine-tune) a blind-spot interpolator on ``recording``; windows from its last tenth are held out.

    Parameters
    ----------
    recording : BaseRecording
        Preprocessed as it will be at inference, with channel locations.
    mean, std : float
        Normalisation (``dlsort.preprocessing.deepinterpolation.normalisation``).
    start_from : BlindSpotInterpolator or None
        A trained network to fine-tune; None trains from scratch.
    minutes : float, default: 10.0
        Windows come from the first ``minutes`` of the recording.
    num_windows : int, default: 1000
    window : int, default: 256
        Frames per window; must exceed twice the network's context plus blind spot.
    max_epochs, batch_size, seed, device, max_seconds, progress_bar
        As for ``dlsort.training.trainer.fit``.

    Returns
    -------
    network : BlindSpotInterpolator
    report : TrainingReport
    """
    torch.manual_seed(seed)  # before the network is built: its initial weights depend on the seed only
    network = start_from if start_from is not None else BlindSpotInterpolator()
    margin = network.context + network.omission + 1
    if window <= 2 * margin:
        raise DlsortInputError(f"window={window} leaves no frame with its full context (needs > {2 * margin})")
    grid = probe_grid(recording.get_channel_locations())
    windows = training_windows(recording, grid, mean, std, num_windows, window, minutes, seed)
    num_validation = max(1, num_windows // 10)  # windows are sorted by time: the last ones are held out
    masks = np.repeat(grid.mask[None].astype("float32"), num_windows, axis=0)
    train, held_out = slice(0, num_windows - num_validation), slice(num_windows - num_validation, num_windows)
    report = fit(network, (windows[train], masks[train]), windows[train], (windows[held_out], masks[held_out]),
                 windows[held_out], CroppedMSE(margin), max_epochs=max_epochs, batch_size=batch_size,
                 device=device, seed=seed, progress_bar=progress_bar, max_seconds=max_seconds)
    return network, report


def interpolator_card(network: BlindSpotInterpolator, recording, model_id: str, version: str, training_data: str,
                      report: TrainingReport) -> dict:
    """The model card of a trained interpolator (schema: ``dlsort/models/catalog.schema.json``)."""
    fs = recording.sampling_frequency
    context_ms = 1000.0 * (network.context + network.omission) / fs
    return {
        "id": model_id,
        "task": "deepinterpolation",
        "version": version,
        "description": "Blind-spot interpolator: each frame predicted from the frames before and after it, never "
                       "from itself or its immediate neighbours (DeepInterpolation's objective), on the probe grid; "
                       "inputs normalised by the recording's mean and standard deviation.",
        "architecture": {"name": ARCHITECTURE, "hyperparameters": {**network.hyperparameters,
                                                                   "dilations": list(network.hyperparameters[
                                                                       "dilations"])}},
        "sampling_frequency_hz": fs,
        "window_ms": {"before": round(context_ms, 4), "after": round(context_ms, 4)},
        "geometry": {"probe_families": [probe_family(recording.get_channel_locations())]},
        "training_data": training_data,
        "metrics": {"best_validation_loss": report.best_validation_loss, "epochs": report.epochs,
                    "best_epoch": report.best_epoch, "training_seconds": round(report.seconds, 1)},
        "licence": "MIT",
    }

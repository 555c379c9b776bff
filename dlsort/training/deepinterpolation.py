"""Self-supervised training of DeepInterpolation's networks on a recording (DeepInterpolation's objective).

The network (the blind-spot interpolator, or the per-frame U-Net) predicts every frame of a
window from the frames around it and is trained to reproduce the window itself: the only part of
a frame it can predict is what the surrounding frames share with it, so noise independent between
frames is not learned. Windows are drawn from the first minutes of the recording; the last tenth
of that time is held out for early stopping.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dlsort.errors import DlsortInputError
from dlsort.geometry import probe_family, probe_grid
from dlsort.nn.interpolator import BlindSpotInterpolator
from dlsort.nn.registry import ARCHITECTURES
from dlsort.nn.unet import PerFrameUNet
from dlsort.training.trainer import TrainingReport, fit

ARCHITECTURE = "blind-spot-interpolator"  # the default: trains and runs in a fraction of the U-Net's multiply-adds
# what each architecture trainable here is, for its model card
DESCRIPTIONS = {
    "blind-spot-interpolator": "Blind-spot interpolator: each frame predicted from the frames before and after it, "
                               "never from itself or its immediate neighbours (DeepInterpolation's objective), in "
                               "one pass over a chunk",
    "per-frame-unet": "DeepInterpolation's per-frame U-Net (unet_single_ephys_1024's layers, Lecoq et al. 2021): "
                      "each frame predicted from the frames before and after it, leaving out the frame and its "
                      "neighbours, one U-Net pass per frame",
}
CHECKERBOARD = "channels on DeepInterpolation's checkerboard (channel c at row c, column c % 2)"
Interpolator = BlindSpotInterpolator | PerFrameUNet


def new_interpolator(architecture: str = ARCHITECTURE, end_rows: str | None = None,
                     readout_layers: int | None = None) -> Interpolator:
    """An untrained DeepInterpolation network of the default size.

    Parameters
    ----------
    architecture : {"blind-spot-interpolator", "per-frame-unet"}, default: "blind-spot-interpolator"
    end_rows : {"reflect", "zeros"} or None
        What the blind-spot interpolator sees beyond the grid's end rows (None: "reflect").
    readout_layers : int or None
        Grid convolutions in the blind-spot interpolator's read-out (None: 1). Train one layer
        first: more are added to a trained network (``deepened``), not trained with it.
        The U-Net takes neither choice: it pads its grid with zeros and has its own layers.

    Returns
    -------
    BlindSpotInterpolator or PerFrameUNet
    """
    if architecture == "blind-spot-interpolator":
        try:
            return BlindSpotInterpolator(end_rows=end_rows or "reflect",
                                         readout_layers=1 if readout_layers is None else readout_layers)
        except ValueError as error:
            raise DlsortInputError(f"cannot build the blind-spot interpolator: {error}") from error
    if architecture == "per-frame-unet":
        for name, value in (("end_rows", end_rows), ("readout_layers", readout_layers)):
            if value is not None:
                raise DlsortInputError(f"{name}={value!r} is a choice of the blind-spot interpolator; the per-frame "
                                       f"U-Net has its own grid padding and layers: leave {name} out")
        return PerFrameUNet()
    raise DlsortInputError(f"unknown DeepInterpolation architecture {architecture!r}; choose one of "
                           f"{sorted(DESCRIPTIONS)}")


def deepened(network: Interpolator, readout_layers: int) -> BlindSpotInterpolator:
    """A trained one-layer blind-spot interpolator with a correction of ``readout_layers - 1`` further grid layers.

    The correction starts at zero (the new network predicts exactly as ``network``) and is the
    only part left trainable: every weight of ``network`` is copied and frozen, so rows near the
    grid's ends, which the correction does not reach, keep ``network``'s prediction.

    Parameters
    ----------
    network : BlindSpotInterpolator
        With a one-layer read-out.
    readout_layers : int
        At least 2.

    Returns
    -------
    BlindSpotInterpolator
    """
    if not isinstance(network, BlindSpotInterpolator) or network.correction is not None:
        raise DlsortInputError("only a blind-spot interpolator with a one-layer read-out can be deepened, not a "
                               f"{type(network).__name__} with {network.hyperparameters}: leave out readout_layers "
                               "(--readout-layers) to fine-tune it as it is")
    if readout_layers < 2:
        raise DlsortInputError(f"deepening a one-layer read-out needs readout_layers >= 2, got {readout_layers}")
    deeper = BlindSpotInterpolator(**{**network.hyperparameters, "readout_layers": readout_layers})
    missing, unexpected = deeper.load_state_dict(network.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("correction.") for name in missing)
    nn.init.zeros_(deeper.correction[-1].weight)
    nn.init.zeros_(deeper.correction[-1].bias)
    for name, parameter in deeper.named_parameters():
        parameter.requires_grad_(name.startswith("correction."))
    return deeper.to(next(network.parameters()).device)


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
    """``num_windows`` random windows of the first ``minutes`` of segment 0, normalised, on the grid, in time order.

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


def _padded(arrays: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Arrays whose last two axes are grids, zero-padded (bottom, right) to ``shape`` and concatenated."""
    return np.concatenate([np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, shape[0] - a.shape[-2]),
                                                               (0, shape[1] - a.shape[-1])]) for a in arrays])


def train_interpolator(
    recordings,
    start_from: Interpolator | None = None,
    start_card: dict | None = None,
    minutes: float = 10.0,
    num_windows: int = 1000,
    window: int = 256,
    max_epochs: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    device: str = "cpu",
    max_seconds: float | None = None,
    progress_bar: bool = True,
    architecture: str = ARCHITECTURE,
    end_rows: str | None = None,
    readout_layers: int | None = None,
) -> tuple[Interpolator, TrainingReport]:
    """Train (or fine-tune) a DeepInterpolation network on recordings; windows from each one's last tenth are held out.

    Parameters
    ----------
    recordings : BaseRecording or list of BaseRecording
        Preprocessed as they will be at inference, with channel locations. Each is normalised by
        its own mean and standard deviation (``normalisation``) and gives an equal share of the
        windows; grids of different probes are padded to a common shape, the padding masked
        like empty cells, so one network learns from several geometries.
    start_from : BlindSpotInterpolator or PerFrameUNet or None
        A trained network to fine-tune (it keeps its architecture); None trains from scratch.
    start_card : dict or None
        The model card of ``start_from``: its ``"grid"`` says where the channels go (the probe's
        geometry, or DeepInterpolation's checkerboard for converted Allen models). None: the
        probe's geometry.
    minutes : float, default: 10.0
        Windows come from the first ``minutes`` of each recording.
    num_windows : int, default: 1000
    window : int, default: 256
        Frames per window; must exceed twice the network's context plus blind spot.
    max_epochs, batch_size, seed, device, max_seconds, progress_bar
        As for ``dlsort.training.trainer.fit``.
    architecture, end_rows
        Of a network trained from scratch (``new_interpolator``); a fine-tuned network keeps its own.
    readout_layers : int or None
        With a one-layer blind-spot ``start_from``: train only a correction of this many layers
        added to it (``deepened``). From scratch only None or 1.

    Returns
    -------
    network : BlindSpotInterpolator or PerFrameUNet
    report : TrainingReport
    """
    from dlsort.preprocessing.deepinterpolation import model_grid, normalisation

    recordings = list(recordings) if isinstance(recordings, list | tuple) else [recordings]
    rates = {recording.sampling_frequency for recording in recordings}
    if len(rates) > 1:
        raise DlsortInputError(f"the recordings are sampled at {sorted(rates)} Hz; one model serves one rate: "
                               "resample them or train one model per rate")
    torch.manual_seed(seed)  # before the network is built: its initial weights depend on the seed only
    if start_from is None:
        if readout_layers not in (None, 1):
            raise DlsortInputError(
                f"readout_layers={readout_layers} from scratch: the read-out's further layers correct a trained "
                "one-layer network, which trained together with them predicts worse where they do not reach (the "
                "grid's end rows). Train one layer first, then deepen it: dlsort train deepinterpolation --from "
                f"MODEL --readout-layers {readout_layers} (train_interpolator(start_from=network, readout_layers=...))")
        network = new_interpolator(architecture, end_rows)
    else:
        network = start_from if readout_layers is None else deepened(start_from, readout_layers)
    margin = network.context + network.omission + 1
    if window <= 2 * margin:
        raise DlsortInputError(f"window={window} leaves no frame with its full context (needs > {2 * margin})")
    parts = {"train": ([], []), "held_out": ([], [])}
    for index, recording in enumerate(recordings):
        grid = model_grid(start_card, recording) if start_card else probe_grid(recording.get_channel_locations())
        count = max(2, num_windows // len(recordings))
        windows = training_windows(recording, grid, *normalisation(recording, seed=seed), count, window, minutes,
                                   seed + index)
        masks = np.repeat(grid.mask[None].astype("float32"), count, axis=0)
        num_held_out = max(1, count // 10)  # windows are in time order: the last ones are held out
        for name, part in (("train", slice(0, count - num_held_out)), ("held_out", slice(count - num_held_out, None))):
            parts[name][0].append(windows[part])
            parts[name][1].append(masks[part])
    shape = tuple(max(masks.shape[-2 + axis] for masks in parts["train"][1]) for axis in range(2))
    (train, train_masks), (held_out, held_out_masks) = ((_padded(w, shape), _padded(m, shape))
                                                        for w, m in parts.values())
    report = fit(network, (train, train_masks), train, (held_out, held_out_masks), held_out, CroppedMSE(margin),
                 max_epochs=max_epochs, batch_size=batch_size, device=device, seed=seed, progress_bar=progress_bar,
                 max_seconds=max_seconds)
    return network, report


def interpolator_card(network: Interpolator, recordings, model_id: str, version: str, training_data: str,
                      report: TrainingReport, start_card: dict | None = None) -> dict:
    """The model card of an interpolator trained on ``recordings`` (one or a list; schema: ``catalog.schema.json``).

    A network fine-tuned from a checkerboard model (``start_card``) keeps its grid and channel count.
    """
    recordings = list(recordings) if isinstance(recordings, list | tuple) else [recordings]
    fs = recordings[0].sampling_frequency
    families = sorted({probe_family(recording.get_channel_locations()) for recording in recordings})
    context_ms = 1000.0 * (network.context + network.omission) / fs
    name = next(name for name, kind in ARCHITECTURES.items() if isinstance(network, kind))
    hyperparameters = {key: list(value) if isinstance(value, tuple) else value
                       for key, value in network.hyperparameters.items()}
    checkerboard = start_card is not None and start_card.get("grid", "geometry") == "checkerboard"
    card = {
        "id": model_id,
        "task": "deepinterpolation",
        "version": version,
        "description": f"{DESCRIPTIONS[name]}; "
                       f"{CHECKERBOARD if checkerboard else 'on the probe grid'}, inputs normalised by the "
                       "recording's mean and standard deviation.",
        "architecture": {"name": name, "hyperparameters": hyperparameters},
        "sampling_frequency_hz": fs,
        "window_ms": {"before": round(context_ms, 4), "after": round(context_ms, 4)},
        "geometry": {"probe_families": families},
        "training_data": training_data,
        "metrics": {"best_validation_loss": report.best_validation_loss, "epochs": report.epochs,
                    "best_epoch": report.best_epoch, "training_seconds": round(report.seconds, 1)},
        "licence": "MIT",
    }
    if checkerboard:
        card["grid"] = "checkerboard"
        card["geometry"].update({key: start_card["geometry"][key] for key in ("min_channels", "max_channels")
                                 if key in start_card["geometry"]})
    return card

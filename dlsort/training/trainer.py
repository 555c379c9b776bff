"""A small supervised training loop (mini-batches, validation split, early stopping, progress bar) and model writing."""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass
class TrainingReport:
    """What a training run did.

    Attributes
    ----------
    epochs : int
        Epochs run (early stopping may end before ``max_epochs``).
    best_epoch : int
        Epoch whose weights were kept (1-based).
    best_validation_loss : float
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``validation_loss``, ``seconds``.
    seconds : float
        Wall time of the whole run.
    """

    epochs: int = 0
    best_epoch: int = 0
    best_validation_loss: float = math.inf
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def fit(
    network: nn.Module,
    inputs: np.ndarray | tuple[np.ndarray, ...],
    targets: np.ndarray,
    validation_inputs: np.ndarray | tuple[np.ndarray, ...],
    validation_targets: np.ndarray,
    loss: nn.Module,
    max_epochs: int = 30,
    patience: int = 4,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    device: str = "cpu",
    seed: int = 0,
    progress_bar: bool = True,
    max_seconds: float | None = None,
) -> TrainingReport:
    """Train ``network`` in place with Adam and keep the weights of the best validation epoch.

    The learning rate halves after every epoch that does not improve the validation loss.

    Parameters
    ----------
    network : torch.nn.Module
    inputs, targets : np.ndarray
        Training pairs (first axis = examples); ``inputs`` may be a tuple of arrays, passed to the
        network as separate arguments.
    validation_inputs, validation_targets : np.ndarray
        Held-out pairs for early stopping (same structure).
    loss : torch.nn.Module
        E.g. ``nn.MSELoss()``.
    max_epochs : int, default: 30
    patience : int, default: 4
        Stop after this many epochs without a better validation loss.
    batch_size : int, default: 512
    learning_rate : float, default: 1e-3
    device : str, default: "cpu"
    seed : int, default: 0
        Seeds the batch order.
    progress_bar : bool, default: True
    max_seconds : float or None
        Stop after the epoch during which this much time has passed.

    Returns
    -------
    TrainingReport
    """
    from tqdm.auto import tqdm

    x, y = _tensors(inputs, targets, device)
    vx, vy = _tensors(validation_inputs, validation_targets, device)
    if len(y) == 0 or len(vy) == 0:
        raise ValueError("training needs at least one training and one validation example")
    generator = torch.Generator().manual_seed(seed)
    network.to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=1)
    report, best_state, start = TrainingReport(), copy.deepcopy(network.state_dict()), time.perf_counter()
    num_batches = math.ceil(len(y) / batch_size)
    with tqdm(total=max_epochs * num_batches, desc="training", unit="batch", disable=not progress_bar) as bar:
        for epoch in range(1, max_epochs + 1):
            epoch_start = time.perf_counter()
            network.train()
            order = torch.randperm(len(y), generator=generator).to(device)
            total = 0.0
            for batch in order.split(batch_size):
                optimiser.zero_grad()
                value = loss(network(*(part[batch] for part in x)), y[batch])
                value.backward()
                optimiser.step()
                total += value.item() * len(batch)
                bar.update(1)
            validation = evaluate_loss(network, vx, vy, loss, batch_size * 8)
            report.history.append({"epoch": epoch, "train_loss": total / len(y), "validation_loss": validation,
                                   "seconds": time.perf_counter() - epoch_start})
            report.epochs = epoch
            scheduler.step(validation)
            bar.set_postfix(validation=f"{validation:.4f}")
            if validation < report.best_validation_loss:
                report.best_validation_loss, report.best_epoch = validation, epoch
                best_state = copy.deepcopy(network.state_dict())
            elif epoch - report.best_epoch >= patience:
                break
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
    network.load_state_dict(best_state)
    report.seconds = time.perf_counter() - start
    return report


def _tensors(inputs, targets, device: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Inputs as a tuple of tensors and targets as a tensor, checked to hold the same number of examples."""
    parts = tuple(inputs) if isinstance(inputs, tuple) else (inputs,)
    if any(len(part) != len(targets) for part in parts):
        raise ValueError("inputs and targets must have the same number of examples")
    return tuple(torch.as_tensor(part, device=device) for part in parts), torch.as_tensor(targets, device=device)


@torch.inference_mode()
def evaluate_loss(network: nn.Module, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor, loss: nn.Module,
                  batch_size: int = 4096) -> float:
    """Mean of ``loss`` over the examples in evaluation mode (``inputs``: a tuple of tensors)."""
    network.eval()
    total = 0.0
    for start in range(0, len(targets), batch_size):
        stop = start + batch_size
        batch = targets[start:stop]
        total += loss(network(*(part[start:stop] for part in inputs)), batch).item() * len(batch)
    return total / len(targets)


def write_model(folder: Path, network: nn.Module, card: dict) -> Path:
    """Write ``weights.safetensors`` and ``card.json`` into ``folder``; returns the weight path."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights.safetensors"
    save_file({key: tensor.detach().cpu().contiguous() for key, tensor in network.state_dict().items()}, str(weights))
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return weights

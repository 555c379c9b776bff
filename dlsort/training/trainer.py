"""A small supervised training loop: mini-batches, validation split, early stopping, progress bar."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

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
    inputs: np.ndarray,
    targets: np.ndarray,
    validation_inputs: np.ndarray,
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
        Training pairs (first axis = examples).
    validation_inputs, validation_targets : np.ndarray
        Held-out pairs for early stopping.
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

    if len(inputs) != len(targets) or len(validation_inputs) != len(validation_targets):
        raise ValueError("inputs and targets must have the same number of examples")
    if len(inputs) == 0 or len(validation_inputs) == 0:
        raise ValueError("training needs at least one training and one validation example")
    generator = torch.Generator().manual_seed(seed)
    network.to(device)
    x, y = torch.as_tensor(inputs, device=device), torch.as_tensor(targets, device=device)
    vx, vy = torch.as_tensor(validation_inputs, device=device), torch.as_tensor(validation_targets, device=device)
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=1)
    report, best_state, start = TrainingReport(), copy.deepcopy(network.state_dict()), time.perf_counter()
    num_batches = math.ceil(len(x) / batch_size)
    with tqdm(total=max_epochs * num_batches, desc="training", unit="batch", disable=not progress_bar) as bar:
        for epoch in range(1, max_epochs + 1):
            epoch_start = time.perf_counter()
            network.train()
            order = torch.randperm(len(x), generator=generator).to(device)
            total = 0.0
            for batch in order.split(batch_size):
                optimiser.zero_grad()
                value = loss(network(x[batch]), y[batch])
                value.backward()
                optimiser.step()
                total += value.item() * len(batch)
                bar.update(1)
            validation = evaluate_loss(network, vx, vy, loss, batch_size * 8)
            report.history.append({"epoch": epoch, "train_loss": total / len(x), "validation_loss": validation,
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


@torch.inference_mode()
def evaluate_loss(network: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: nn.Module,
                  batch_size: int = 4096) -> float:
    """Mean of ``loss`` over ``inputs`` in evaluation mode."""
    network.eval()
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        stop = start + batch_size
        total += loss(network(inputs[start:stop]), targets[start:stop]).item() * len(inputs[start:stop])
    return total / len(inputs)

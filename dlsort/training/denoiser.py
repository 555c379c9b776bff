"""Train and evaluate the single-channel waveform denoiser; write its weights and model card."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dlsort.nn import SingleChannelDenoiser
from dlsort.training.noise import TemporalNoise
from dlsort.training.synthesis import (
    TRAINING_SAMPLING_FREQUENCY,
    DenoisingExamples,
    denoising_examples,
    waveform_library,
)
from dlsort.training.trainer import TrainingReport, fit

SNR_BINS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, np.inf)
ARCHITECTURE = "single-channel-denoiser"


def pca_denoise(fit_waveforms: np.ndarray, waveforms: np.ndarray, n_components: int = 5) -> np.ndarray:
    """Temporal-PCA denoising: project on the top principal components of ``fit_waveforms`` and back."""
    mean = fit_waveforms.mean(axis=0)
    _, _, vt = np.linalg.svd(fit_waveforms - mean, full_matrices=False)
    basis = vt[:n_components]
    return mean + (waveforms - mean) @ basis.T @ basis


@torch.inference_mode()
def denoise_array(network: nn.Module, waveforms: np.ndarray, batch_size: int = 16384) -> np.ndarray:
    """Run ``network`` over (n, num_samples) waveforms in batches on its device."""
    device = next(network.parameters()).device
    network.eval()
    out = [network(torch.as_tensor(waveforms[start : start + batch_size], device=device)).cpu().numpy()
           for start in range(0, len(waveforms), batch_size)]
    return np.concatenate(out) if out else np.zeros_like(waveforms)


def evaluate_denoiser(network: nn.Module, examples: DenoisingExamples, pca_fit: np.ndarray,
                      n_components: int = 5) -> list[dict]:
    """Mean squared error to the clean waveform, by SNR bin, for raw, temporal-PCA and network outputs.

    Parameters
    ----------
    network : torch.nn.Module
    examples : DenoisingExamples
        Held-out examples.
    pca_fit : np.ndarray
        Noisy waveforms the PCA is fitted on (as the sorter fits it on the recording's spikes).
    n_components : int, default: 5

    Returns
    -------
    list of dict
        One row per SNR bin and a last row ``"all"``: ``snr``, ``count``, ``mse_raw``, ``mse_pca``,
        ``mse_network``, ``network_over_raw``, ``network_over_pca``.
    """
    outputs = {
        "raw": examples.noisy,
        "pca": pca_denoise(pca_fit, examples.noisy, n_components),
        "network": denoise_array(network, examples.noisy),
    }
    rows = error_table(outputs, examples.clean, examples.amplitude)
    for row in rows:
        row["network_over_raw"] = row["mse_network"] / row["mse_raw"]
        row["network_over_pca"] = row["mse_network"] / row["mse_pca"]
    return rows


def error_table(outputs: dict[str, np.ndarray], clean: np.ndarray, amplitude: np.ndarray) -> list[dict]:
    """Mean squared error of each output to the clean waveforms, by SNR bin and overall.

    Parameters
    ----------
    outputs : dict of np.ndarray
        (n, num_samples) waveforms per method name.
    clean : np.ndarray
        (n, num_samples) targets.
    amplitude : np.ndarray
        (n,) trough depth of each clean waveform in noise levels.

    Returns
    -------
    list of dict
        One row per non-empty bin of ``SNR_BINS`` and a last row ``"all"``: ``snr``, ``count`` and
        ``mse_<name>`` for every output.
    """
    errors = {name: np.mean((out - clean) ** 2, axis=1) for name, out in outputs.items()}
    rows = []
    bins = [(f"{low:g}-{high:g}" if np.isfinite(high) else f">={low:g}", low, high)
            for low, high in zip(SNR_BINS[:-1], SNR_BINS[1:])] + [("all", -np.inf, np.inf)]
    for label, low, high in bins:
        inside = (amplitude >= low) & (amplitude < high)
        if not inside.any():
            continue
        row = {"snr": label, "count": int(inside.sum())}
        row.update({f"mse_{name}": float(error[inside].mean()) for name, error in errors.items()})
        rows.append(row)
    return rows


def train_denoiser(
    noise: TemporalNoise,
    start_from: nn.Module | None = None,
    num_examples: int = 200_000,
    num_units: int = 2000,
    ms_before: float = 1.0,
    ms_after: float = 1.5,
    seed: int = 0,
    device: str = "cpu",
    max_epochs: int = 30,
    max_seconds: float | None = None,
    progress_bar: bool = True,
    recording_waveforms: np.ndarray | None = None,
) -> tuple[nn.Module, TrainingReport, list[dict]]:
    """Train a denoiser on synthetic spikes in ``noise``; 10 % of the examples are held out.

    Parameters
    ----------
    noise : TemporalNoise
        The noise the examples are drawn in (shared Neuropixels statistics, or a recording's own).
    start_from : torch.nn.Module or None
        A trained denoiser to fine-tune (its window must match); None trains from scratch.
    num_examples : int, default: 200000
    num_units : int, default: 2000
        Synthetic units the waveform library is drawn from (each gives several channels' shapes).
    ms_before, ms_after : float, default: 1.0, 1.5
        Window at 30 kHz.
    seed : int, default: 0
        Training units and validation units come from different seeds (held-out shapes).
    device : str, default: "cpu"
    max_epochs : int, default: 30
    max_seconds : float or None
        Time budget (fine-tuning).
    progress_bar : bool, default: True
    recording_waveforms : np.ndarray or None
        Shapes of a recording's own units (``dlsort.training.bootstrap.bootstrap_waveforms``): half
        the training examples are drawn from them, the other half from generated units. The
        held-out examples stay generated units of another seed.

    Returns
    -------
    network : torch.nn.Module
    report : TrainingReport
    metrics : list of dict
        ``evaluate_denoiser`` on the held-out examples.
    """
    num_samples = sum(int(ms * TRAINING_SAMPLING_FREQUENCY / 1000.0) for ms in (ms_before, ms_after))
    network = start_from if start_from is not None else SingleChannelDenoiser(num_samples)
    if network.num_samples != num_samples:
        raise ValueError(f"the model to fine-tune has {network.num_samples} samples, the window has {num_samples}")
    torch.manual_seed(seed)
    num_validation = max(1, num_examples // 10)
    num_train = num_examples - num_validation
    libraries = [waveform_library(num_units, ms_before, ms_after, seed=seed)]
    if recording_waveforms is not None:
        if recording_waveforms.shape[2] != num_samples:
            raise ValueError(f"the recording's waveforms have {recording_waveforms.shape[2]} samples, the window "
                             f"{num_samples}")
        libraries.append(recording_waveforms)
    counts = [num_train // len(libraries)] * len(libraries)
    counts[0] += num_train - sum(counts)
    parts = [denoising_examples(library, noise, count, seed=seed + 1 + index)
             for index, (library, count) in enumerate(zip(libraries, counts))]
    train = DenoisingExamples(*(np.concatenate([getattr(part, field) for part in parts])
                                for field in ("noisy", "clean", "amplitude")))
    held_out_library = waveform_library(max(10, num_units // 10), ms_before, ms_after, seed=seed + 1000)
    validation = denoising_examples(held_out_library, noise, num_validation, seed=seed + 1001)
    report = fit(network, train.noisy, train.clean, validation.noisy, validation.clean, nn.MSELoss(),
                 max_epochs=max_epochs, device=device, seed=seed, progress_bar=progress_bar, max_seconds=max_seconds)
    metrics = evaluate_denoiser(network, validation, train.noisy[:20_000])
    return network, report, metrics


def denoiser_card(network: SingleChannelDenoiser, model_id: str, version: str, training_data: str,
                  metrics: list[dict], report: TrainingReport, ms_before: float, ms_after: float) -> dict:
    """The model card of a trained denoiser (schema: ``dlsort/models/catalog.schema.json``)."""
    convolutions = [layer for layer in network.convolutions if isinstance(layer, nn.Conv1d)]
    return {
        "id": model_id,
        "task": "denoiser",
        "version": version,
        "description": "Single-channel spike waveform denoiser (two temporal convolutions and a linear read-out, "
                       "as in YASS); inputs and outputs in noise standard deviations.",
        "architecture": {
            "name": ARCHITECTURE,
            "hyperparameters": {
                "num_samples": network.num_samples,
                "filters": [layer.out_channels for layer in convolutions],
                "kernel_sizes": [layer.kernel_size[0] for layer in convolutions],
            },
        },
        "sampling_frequency_hz": TRAINING_SAMPLING_FREQUENCY,
        "window_ms": {"before": ms_before, "after": ms_after},
        "geometry": {"probe_families": ["any"]},
        "training_data": training_data,
        "metrics": {"validation_mse_by_snr": metrics, "epochs": report.epochs, "best_epoch": report.best_epoch,
                    "training_seconds": round(report.seconds, 1)},
        "licence": "MIT",
    }

"""Train the neighbourhood autoencoder on synthetic spikes; describe it in a model card.

Each training example is one spike's neighbourhood snippet and its clean version (the target of
the reconstruction loss, known because the data are synthetic). A scene is a synthetic probe
patch (``dlsort.training.recordings.synthesize_patch``: correlated noise and the spikes of its
units firing at 2-25 Hz) and the templates of its units; example spikes are drawn from those
templates and added at random times, so that what should not change a spike's identity varies
from example to example:

- amplitude: log-normal (median 5 noise levels, and 15 % of large units), as the patch's units;
- sub-sample position: one of the templates' eight shifts, the snippet cut at the integer trough;
- collisions: the patch's own spikes overlap the window (a quarter of the examples or so);
- noise: temporally correlated like real (or the recording's) noise or band-passed white noise,
  spatially correlated with a random strength.

The snippet is centred on the spike's main channel (its deepest trough) and laid on its
distance-ordered neighbourhood, as the sorter cuts it.

With ``invariance_weight > 0`` every example comes in two views of one unit (``paired_examples``):
another sub-sample shift, amplitude jittered by ~10 %, other noise and collisions and, with
``displacement_um > 0``, the unit moved along the probe as drift moves it. The loss adds to both
views' reconstruction errors the squared distance between the two embeddings over the embeddings'
spread in the batch (``InvariantReconstructionLoss``), so that what clustering measures - distances
between embeddings - is small within a unit and large between units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from dlsort.errors import DlsortInputError
from dlsort.nn import NeighbourhoodAutoencoder
from dlsort.spike_encoder import ARCHITECTURE, TASK
from dlsort.training.noise import SpatialNoise, TemporalNoise
from dlsort.training.recordings import (
    JITTER_STEPS,
    SyntheticPatch,
    displaced_templates,
    generated_templates,
    patch_contacts,
    synthesize_patch,
)
from dlsort.training.synthesis import TRAINING_SAMPLING_FREQUENCY
from dlsort.training.trainer import TrainingReport, fit
from dlsort.waveforms import build_neighbourhoods, cut_snippets


@dataclass(frozen=True)
class Scene:
    """A synthetic patch and the templates its units were drawn from.

    Attributes
    ----------
    patch : SyntheticPatch
    templates : np.ndarray
        (num_units, num_samples, num_channels, JITTER_STEPS), band-passed, trough depth 1.
    displaced : np.ndarray or None
        The same units' templates after each moved along the probe (same shape and scale), or None.
    """

    patch: SyntheticPatch
    templates: np.ndarray
    displaced: np.ndarray | None = None


@dataclass(frozen=True)
class AutoencoderExamples:
    """Noisy neighbourhood snippets and their clean versions.

    Attributes
    ----------
    snippets : np.ndarray
        float32 (num, slots, num_samples), noise standard deviations.
    positions : np.ndarray
        float32 (num, slots, 2) relative to the centre (um).
    mask : np.ndarray
        float32 (num, slots).
    clean : np.ndarray
        float32 (num, slots, num_samples): the example spike alone, zero on padded slots.
    amplitude : np.ndarray
        float32 (num,): the spike's trough depth on its main channel.
    """

    snippets: np.ndarray
    positions: np.ndarray
    mask: np.ndarray
    clean: np.ndarray
    amplitude: np.ndarray

    @property
    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's arguments."""
        return self.snippets, self.positions, self.mask


def window_samples(ms_before: float, ms_after: float) -> tuple[int, int]:
    """Samples before and from the trough at ``TRAINING_SAMPLING_FREQUENCY``."""
    return tuple(int(ms * TRAINING_SAMPLING_FREQUENCY / 1000.0) for ms in (ms_before, ms_after))


def training_scenes(temporal: TemporalNoise, spatial: SpatialNoise, num: int, seed: int,
                    locations: np.ndarray | None = None, duration_s: float = 1.0,
                    displacement_um: float = 0.0) -> list[Scene]:
    """``num`` scenes on random training probes, or on contacts of one probe's ``locations`` (fine-tuning).

    With ``displacement_um > 0`` each scene also holds its units moved by up to that many um along
    the probe (``Scene.displaced``).
    """
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(num):
        contacts, _ = patch_contacts(rng, locations)
        num_units = max(2, int(len(contacts) * rng.uniform(0.5, 1.2)))
        displaced = None
        if displacement_um > 0:
            templates, displaced = displaced_templates(rng, contacts, num_units, displacement_um)
        else:
            templates = generated_templates(rng, contacts, num_units)
        patch = synthesize_patch(rng, contacts, temporal, spatial, duration_s=duration_s, templates=templates)
        scenes.append(Scene(patch, templates, displaced))
    return scenes


def _aligned(templates: np.ndarray, nbefore: int, nafter: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (unit, shift) template cut around its trough on its main channel.

    Returns
    -------
    windows : np.ndarray
        (num_units, JITTER_STEPS, nbefore + nafter, num_channels).
    main : np.ndarray
        (num_units, JITTER_STEPS) main channel.
    """
    padded = np.pad(templates, ((0, 0), (nbefore, nafter), (0, 0), (0, 0)))
    main = (-templates.min(axis=1)).argmax(axis=1)  # (units, shifts)
    trough = np.take_along_axis(templates.argmin(axis=1), main[:, None, :], axis=1)[:, 0]  # (units, shifts)
    times = trough[..., None] + np.arange(nbefore + nafter)  # in the padded templates: trough - nbefore + nbefore
    units, shifts = np.indices(main.shape)
    windows = padded[units[..., None], times, :, shifts[..., None]]  # (units, shifts, samples, channels)
    return windows, main


def autoencoder_examples(scenes: list[Scene], num: int, radius_um: float, seed: int, ms_before: float = 1.0,
                         ms_after: float = 1.5, snr_median: float = 5.0, snr_sigma: float = 0.6,
                         large_fraction: float = 0.15,
                         large_snr: tuple[float, float] = (10.0, 60.0)) -> AutoencoderExamples:
    """Draw ``num`` examples from ``scenes`` (see the module docstring).

    Parameters
    ----------
    scenes : list of Scene
    num : int
    radius_um : float
        Neighbourhood radius; slots are padded to the widest neighbourhood of all scenes.
    seed : int
    ms_before, ms_after : float, default: 1.0, 1.5
        Window around the trough, at 30 kHz.
    snr_median, snr_sigma, large_fraction, large_snr
        Amplitude distribution, as for ``synthesize_patch``.

    Returns
    -------
    AutoencoderExamples
    """
    return _examples(scenes, num, radius_um, seed, ms_before, ms_after,
                     dict(snr_median=snr_median, snr_sigma=snr_sigma, large_fraction=large_fraction,
                          large_snr=large_snr), views=1)[0]


def paired_examples(scenes: list[Scene], num: int, radius_um: float, seed: int, ms_before: float = 1.0,
                    ms_after: float = 1.5,
                    amplitude_jitter: float = 0.1) -> tuple[AutoencoderExamples, AutoencoderExamples]:
    """``num`` examples drawn as ``autoencoder_examples`` draws them, and a second view of each.

    The second view is the same unit at the same amplitude times a log-normal factor of spread
    ``amplitude_jitter``, with its own sub-sample shift, noise and collisions, taken from the
    scene's ``displaced`` templates when it has them.

    Returns
    -------
    first, second : AutoencoderExamples
        Row ``i`` of each is a view of the same spike.
    """
    return _examples(scenes, num, radius_um, seed, ms_before, ms_after, {}, views=2, amplitude_jitter=amplitude_jitter)


def _examples(scenes: list[Scene], num: int, radius_um: float, seed: int, ms_before: float, ms_after: float,
              amplitude_params: dict, views: int, amplitude_jitter: float = 0.0) -> list[AutoencoderExamples]:
    """``views`` views of ``num`` example spikes, padded to one neighbourhood width."""
    rng = np.random.default_rng(seed)
    nbefore, nafter = window_samples(ms_before, ms_after)
    per_scene = np.bincount(rng.integers(len(scenes), size=num), minlength=len(scenes))
    parts = [[] for _ in range(views)]
    for scene, count in zip(scenes, per_scene):
        if count == 0:
            continue
        neighbourhoods = build_neighbourhoods(scene.patch.locations, radius_um)
        unit = rng.integers(len(scene.templates), size=count)
        shift = rng.integers(JITTER_STEPS, size=count)
        amplitude = _amplitudes(rng, count, **amplitude_params)
        aligned = _aligned(scene.templates, nbefore, nafter)
        parts[0].append(_render(scene, aligned, unit, shift, amplitude, neighbourhoods, rng, nbefore, nafter))
        if views == 2:
            if scene.displaced is not None:
                aligned = _aligned(scene.displaced, nbefore, nafter)
            shift = rng.integers(JITTER_STEPS, size=count)
            jittered = amplitude * np.exp(rng.normal(0.0, amplitude_jitter, count))
            parts[1].append(_render(scene, aligned, unit, shift, jittered, neighbourhoods, rng, nbefore, nafter))
    width = max(part[2].shape[1] for view in parts for part in view)
    return [AutoencoderExamples(*(np.concatenate([_pad_slots(part[index], width) for part in view])
                                  for index in range(4)),
                                amplitude=np.concatenate([part[4] for part in view]).astype("float32"))
            for view in parts]


def _amplitudes(rng: np.random.Generator, count: int, snr_median: float = 5.0, snr_sigma: float = 0.6,
                large_fraction: float = 0.15, large_snr: tuple[float, float] = (10.0, 60.0)) -> np.ndarray:
    """Trough depths of ``count`` example spikes (``synthesize_patch``'s distribution)."""
    amplitude = np.exp(rng.normal(np.log(snr_median), snr_sigma, count))
    large = rng.random(count) < large_fraction
    amplitude[large] = np.exp(rng.uniform(*np.log(large_snr), large.sum()))
    return amplitude


def _render(scene: Scene, aligned: tuple[np.ndarray, np.ndarray], unit: np.ndarray, shift: np.ndarray,
            amplitude: np.ndarray, neighbourhoods, rng: np.random.Generator, nbefore: int,
            nafter: int) -> tuple[np.ndarray, ...]:
    """Noisy snippets, relative positions, mask, clean snippets and amplitudes of spikes added to ``scene``'s patch.

    ``aligned`` is ``_aligned`` of the templates the spikes are drawn from.
    """
    patch, count = scene.patch, len(unit)
    windows, mains = aligned
    main = mains[unit, shift]
    clean = windows[unit, shift] * amplitude[:, None, None]  # (count, samples, channels)
    # each example's window laid end to end, so that one cut lays them all on their neighbourhoods
    clean = cut_snippets(clean.reshape(-1, clean.shape[2]), np.arange(count) * (nbefore + nafter) + nbefore,
                         main, neighbourhoods, nbefore, nafter)
    times = rng.integers(nbefore, len(patch.traces) - nafter, size=count)
    noisy = cut_snippets(patch.traces, times, main, neighbourhoods, nbefore, nafter) + clean
    return (np.transpose(noisy, (0, 2, 1)), neighbourhoods.relative_positions(patch.locations)[main],
            neighbourhoods.mask[main].astype("float32"), np.transpose(clean, (0, 2, 1)), amplitude)


def _pad_slots(array: np.ndarray, width: int) -> np.ndarray:
    """float32 ``array`` with its slot axis (1) zero-padded to ``width``."""
    pad = [(0, 0), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad).astype("float32", copy=False)


class PairedViews(nn.Module):
    """An autoencoder run on two views of the same spikes: both reconstructions and both embeddings (training only).

    Parameters
    ----------
    network : NeighbourhoodAutoencoder
    """

    def __init__(self, network: NeighbourhoodAutoencoder):
        super().__init__()
        self.network = network

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``views``: snippets, positions and mask of the first view, then of the second.

        Returns
        -------
        tuple of torch.Tensor
            The first and the second view's reconstructions, then their embeddings.
        """
        first = self.network.encode(*views[:3])
        second = self.network.encode(*views[3:])
        return (self.network.decode(first, *views[1:3]), self.network.decode(second, *views[4:6]), first, second)


class InvariantReconstructionLoss(nn.Module):
    """Reconstruction error of two views plus ``weight`` x how far apart their embeddings lie.

    The distance term is the mean squared distance between the two views' embeddings over twice
    the embeddings' total variance in the batch: about 1 for unrelated pairs, 0 when both views
    embed alike, and blind to the embedding's scale.

    Parameters
    ----------
    weight : float
    """

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def forward(self, outputs: tuple[torch.Tensor, ...], clean: torch.Tensor) -> torch.Tensor:
        """``outputs`` of ``PairedViews``; ``clean`` (batch, 2, slots, samples): both views' clean snippets."""
        first, second, embedded_first, embedded_second = outputs
        error = (functional.mse_loss(first, clean[:, 0]) + functional.mse_loss(second, clean[:, 1])) / 2
        spread = torch.cat([embedded_first, embedded_second]).var(dim=0).sum()
        distance = (embedded_first - embedded_second).pow(2).sum(dim=1).mean()
        return error + self.weight * distance / (2 * spread + 1e-8)


def train_autoencoder(
    temporal: TemporalNoise,
    spatial: SpatialNoise,
    start_from: NeighbourhoodAutoencoder | None = None,
    embedding_dim: int = 8,
    radius_um: float = 75.0,
    locations: np.ndarray | None = None,
    num_scenes: int = 300,
    num_examples: int = 200_000,
    ms_before: float = 1.0,
    ms_after: float = 1.5,
    seed: int = 0,
    device: str = "cpu",
    max_epochs: int = 20,
    max_seconds: float | None = None,
    progress_bar: bool = True,
    invariance_weight: float = 0.0,
    displacement_um: float = 0.0,
) -> tuple[NeighbourhoodAutoencoder, TrainingReport]:
    """Train an autoencoder on examples of synthetic scenes; 10 % of the scenes are held out.

    Parameters
    ----------
    temporal, spatial : TemporalNoise, SpatialNoise
        Noise models of the scenes.
    start_from : NeighbourhoodAutoencoder or None
        A trained autoencoder to fine-tune (its window must match); None trains from scratch.
    embedding_dim : int, default: 8
        Embedding dimension of a new network.
    radius_um : float, default: 75.0
        Neighbourhood radius of the snippets (the sorter's ``neighbourhood_radius_um``).
    locations : np.ndarray or None
        Channel locations of a recording's probe (fine-tuning); None draws random training probes.
    num_scenes : int, default: 300
        1-s scenes simulated.
    num_examples : int, default: 200000
    ms_before, ms_after : float, default: 1.0, 1.5
    seed : int, default: 0
    device : str, default: "cpu"
    max_epochs : int, default: 20
    max_seconds : float or None
    progress_bar : bool, default: True
    invariance_weight : float, default: 0.0
        Weight of the two-view distance term (``InvariantReconstructionLoss``); 0 trains on the
        reconstruction error of single views. With a weight, ``num_examples`` counts pairs.
    displacement_um : float, default: 0.0
        With ``invariance_weight > 0``: the second view's unit is moved along the probe by up to
        this many um each way (drift).

    Returns
    -------
    network : NeighbourhoodAutoencoder
    report : TrainingReport
    """
    num_samples = sum(window_samples(ms_before, ms_after))
    torch.manual_seed(seed)  # before the network is built: its initial weights depend on the seed only
    network = start_from if start_from is not None else NeighbourhoodAutoencoder(num_samples, embedding_dim)
    if network.num_samples != num_samples:
        raise DlsortInputError(f"the autoencoder to fine-tune reads {network.num_samples} samples, the window "
                               f"{ms_before:g} + {ms_after:g} ms at 30 kHz has {num_samples}")
    if invariance_weight < 0 or displacement_um < 0:
        raise DlsortInputError(f"invariance_weight and displacement_um must be >= 0, got {invariance_weight} and "
                               f"{displacement_um}")
    scenes = training_scenes(temporal, spatial, max(2, num_scenes), seed, locations,
                             displacement_um=displacement_um if invariance_weight > 0 else 0.0)
    num_held_out = max(1, len(scenes) // 10)
    window = dict(ms_before=ms_before, ms_after=ms_after)
    draws = ((scenes[num_held_out:], num_examples, seed + 1), (scenes[:num_held_out], max(1, num_examples // 10),
                                                                 seed + 2))
    if invariance_weight > 0:
        trained, loss = PairedViews(network), InvariantReconstructionLoss(invariance_weight)
        train, validation = (_network_data(*paired_examples(part, count, radius_um, draw_seed, **window))
                             for part, count, draw_seed in draws)
    else:
        trained, loss = network, nn.MSELoss()
        train, validation = (_network_data(autoencoder_examples(part, count, radius_um, draw_seed, **window))
                             for part, count, draw_seed in draws)
    report = fit(trained, *train, *validation, loss,
                 max_epochs=max_epochs, device=device, seed=seed, progress_bar=progress_bar, max_seconds=max_seconds)
    return network.cpu(), report


def _network_data(*views: AutoencoderExamples) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The inputs (each view's in turn) and the targets (the clean snippets, stacked on axis 1 for two views)."""
    if len(views) == 1:
        return views[0].inputs, views[0].clean
    return tuple(part for view in views for part in view.inputs), np.stack([view.clean for view in views], axis=1)


def autoencoder_card(network: NeighbourhoodAutoencoder, model_id: str, version: str, training_data: str,
                     radius_um: float, ms_before: float, ms_after: float, report: TrainingReport,
                     invariance_weight: float = 0.0, displacement_um: float = 0.0) -> dict:
    """The model card of a trained autoencoder (schema: ``dlsort/models/catalog.schema.json``).

    ``invariance_weight`` and ``displacement_um`` are ``train_autoencoder``'s: the card's
    ``metrics.objective`` says what the held-out loss measured.
    """
    if invariance_weight > 0:
        objective = {"loss": "mean reconstruction MSE of two views + invariance_weight x their embeddings' squared "
                             "distance over twice the batch's embedding variance",
                     "invariance_weight": invariance_weight, "displacement_um": displacement_um}
    else:
        objective = {"loss": "reconstruction MSE"}
    return {
        "id": model_id,
        "task": TASK,
        "version": version,
        "description": "Neighbourhood autoencoder: each channel's waveform and relative position encoded with shared "
                       "weights, padding masked, summed into an embedding that a per-position decoder reconstructs "
                       "the clean snippet from; inputs in noise standard deviations, any probe geometry.",
        "architecture": {"name": ARCHITECTURE, "hyperparameters": dict(network.hyperparameters)},
        "sampling_frequency_hz": TRAINING_SAMPLING_FREQUENCY,
        "window_ms": {"before": ms_before, "after": ms_after},
        "geometry": {"probe_families": ["any"], "neighbourhood_radius_um": radius_um},
        "training_data": training_data,
        "metrics": {"objective": objective, "best_validation_loss": report.best_validation_loss,
                    "epochs": report.epochs, "best_epoch": report.best_epoch,
                    "training_seconds": round(report.seconds, 1)},
        "licence": "MIT",
    }

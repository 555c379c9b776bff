"""Train and evaluate the neighbourhood spike detector; describe it in a model card.

Examples are windows cut from synthetic probe patches (``dlsort.training.recordings``): the
traces of a centre channel's neighbourhood and, per sample, whether a spike whose main channel
is the centre has its trough there (1), nothing does (0), or the sample is left out of the loss
(-1: spikes below ``min_amplitude``, channels whose trough is nearly as deep as the main
channel's, the edges of the window). Windows are drawn centred on spikes, on their neighbouring
channels, on channels far from large spikes (where the network must stay silent), on the troughs
the sorter's candidates mode would score (most of them noise on a sparsely firing recording), and
at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlsort.detection_scores import match_spikes
from dlsort.neural_detection import SORTER_CANDIDATE_THRESHOLD, detection_logits
from dlsort.nn import NeighbourhoodDetector
from dlsort.peak_picking import candidate_troughs, pick_peaks
from dlsort.training.bootstrap import BootstrapTemplates
from dlsort.training.noise import SpatialNoise, TemporalNoise
from dlsort.training.recordings import SyntheticPatch, patch_contacts, synthesize_patch
from dlsort.training.synthesis import TRAINING_SAMPLING_FREQUENCY
from dlsort.training.trainer import TrainingReport, fit
from dlsort.waveforms import build_neighbourhoods, cut_snippets

ARCHITECTURE = "neighbourhood-detector"
MATCH_DELTA = int(round(0.4e-3 * TRAINING_SAMPLING_FREQUENCY))  # a peak matches a spike within 0.4 ms (as benchmarked)
SNR_BINS = (0.0, 3.0, 5.0, 8.0, np.inf)


@dataclass(frozen=True)
class DetectorGeometry:
    """The neighbourhood a detector reads: channels within ``radius_um``, at most ``slots`` of them."""

    radius_um: float = 50.0
    slots: int = 12


DEFAULT_GEOMETRY = DetectorGeometry()


@dataclass(frozen=True)
class DetectionExamples:
    """Windows of neighbourhood traces and per-sample targets.

    Attributes
    ----------
    traces : np.ndarray
        float32 (num, slots, window).
    positions : np.ndarray
        float32 (num, slots, 2) relative to the centre (um).
    mask : np.ndarray
        float32 (num, slots).
    target : np.ndarray
        float32 (num, window): 1 spike trough, 0 none, -1 ignored.
    """

    traces: np.ndarray
    positions: np.ndarray
    mask: np.ndarray
    target: np.ndarray

    @property
    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's arguments."""
        return self.traces, self.positions, self.mask


class MaskedBCE(nn.Module):
    """Binary cross-entropy on logits, averaged over the samples whose target is not -1."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target >= 0
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target.clamp(min=0.0), reduction="none")
        return (loss * valid).sum() / valid.sum().clamp(min=1)


def patch_labels(patch: SyntheticPatch, min_amplitude: float, tie_ratio: float = 0.9) -> np.ndarray:
    """int8 (num_channels, num_samples) per-sample targets of a patch (see the module docstring)."""
    num_samples, num_channels = patch.traces.shape
    labels = np.zeros((num_channels, num_samples), dtype="int8")
    offsets = np.arange(-3, 4)
    for sample, channel, amplitude, ratio in zip(patch.spike_samples, patch.spike_channels, patch.spike_amplitudes,
                                                 patch.trough_ratio):
        times = np.clip(sample + offsets, 0, num_samples - 1)
        ambiguous = np.flatnonzero(ratio >= tie_ratio) if amplitude >= min_amplitude else np.array([channel])
        labels[np.ix_(ambiguous, times)] = -1
    for sample, channel, amplitude in zip(patch.spike_samples, patch.spike_channels, patch.spike_amplitudes):
        if amplitude >= min_amplitude:
            labels[channel, np.clip(sample + np.arange(-1, 2), 0, num_samples - 1)] = 1
    return labels


EXAMPLE_KINDS = {"spike": 0.4, "neighbour": 0.2, "far": 0.15, "candidate": 0.15, "anywhere": 0.1}


def detection_examples(patches: list[SyntheticPatch], num: int, geometry: DetectorGeometry, seed: int,
                       window: int = 64, margin: int = 12, min_amplitude: float = 2.5,
                       far_um: float = 250.0, far_min_amplitude: float = 8.0) -> DetectionExamples:
    """Cut ``num`` training windows from ``patches`` in the proportions of ``EXAMPLE_KINDS``.

    ``spike`` windows are centred on a spike's main channel, ``neighbour`` ones on a channel of its
    neighbourhood, ``far`` ones on a channel beyond the neighbourhood (up to ``far_um``) of a spike
    at least ``far_min_amplitude`` deep, where the spike still shows but the network must stay
    silent, ``candidate`` ones on a trough below the candidate threshold (``candidate_troughs``),
    which is what the candidates mode scores: spikes, their far field and noise troughs alike, so the
    network learns to reject noise troughs, rare in random windows; and ``anywhere`` ones at random.

    Parameters
    ----------
    patches : list of SyntheticPatch
    num : int
    geometry : DetectorGeometry
    seed : int
    window : int, default: 64
        Samples scored per example.
    margin : int, default: 12
        Extra samples on each side (context for the receptive field, left out of the loss).
    min_amplitude : float, default: 2.5
        Spikes shallower than this (noise standard deviations) are neither positives nor negatives.
    far_um, far_min_amplitude : float, default: 250.0, 8.0

    Returns
    -------
    DetectionExamples
    """
    rng = np.random.default_rng(seed)
    length = window + 2 * margin
    per_patch = np.bincount(rng.integers(len(patches), size=num), minlength=len(patches))
    parts = []
    for patch, count in zip(patches, per_patch):
        if count == 0:
            continue
        neighbourhoods = build_neighbourhoods(patch.locations, geometry.radius_um, max_width=geometry.slots)
        relative = neighbourhoods.relative_positions(patch.locations)
        labels = patch_labels(patch, min_amplitude)
        num_samples, num_channels = patch.traces.shape
        kinds = rng.choice(list(EXAMPLE_KINDS), size=count, p=list(EXAMPLE_KINDS.values()))
        channel = rng.integers(num_channels, size=count)
        start = rng.integers(0, num_samples - length, size=count)
        spike = np.full(count, -1)
        distance = np.linalg.norm(patch.locations[:, None] - patch.locations[None], axis=2)
        for kind, eligible in (("spike", patch.spike_amplitudes >= min_amplitude),
                               ("neighbour", patch.spike_amplitudes >= min_amplitude),
                               ("far", patch.spike_amplitudes >= far_min_amplitude)):
            rows, pool = np.flatnonzero(kinds == kind), np.flatnonzero(eligible)
            if pool.size:
                spike[rows] = pool[rng.integers(pool.size, size=rows.size)]
        rows = np.flatnonzero(kinds == "candidate")
        trough_channels, trough_samples = candidate_troughs(patch.traces, SORTER_CANDIDATE_THRESHOLD)
        if rows.size and trough_samples.size:
            chosen = rng.integers(trough_samples.size, size=rows.size)
            channel[rows] = trough_channels[chosen]
            start[rows] = np.clip(trough_samples[chosen] - margin - rng.integers(window, size=rows.size),
                                  0, num_samples - length)
        for row in np.flatnonzero(spike >= 0):
            main = patch.spike_channels[spike[row]]
            if kinds[row] == "spike":
                channel[row] = main
            elif kinds[row] == "neighbour":
                slots = neighbourhoods.indices[main, 1:][neighbourhoods.mask[main, 1:]]
                channel[row] = rng.choice(slots) if slots.size else main
            else:
                far = np.flatnonzero((distance[main] > geometry.radius_um) & (distance[main] <= far_um))
                channel[row] = rng.choice(far) if far.size else main
            start[row] = np.clip(patch.spike_samples[spike[row]] - margin - rng.integers(window),
                                 0, num_samples - length)
        traces = np.transpose(cut_snippets(patch.traces, start, channel, neighbourhoods, 0, length), (0, 2, 1))
        target = labels[channel[:, None], start[:, None] + np.arange(length)].astype("float32")
        target[:, :margin] = target[:, -margin:] = -1
        parts.append((traces, relative[channel], neighbourhoods.mask[channel].astype("float32"), target))
    return DetectionExamples(*(np.ascontiguousarray(np.concatenate([part[i] for part in parts])) for i in range(4)))


def training_patches(temporal: TemporalNoise, spatial: SpatialNoise, num: int, seed: int,
                     locations: np.ndarray | None = None, duration_s: float = 1.0,
                     band_um: float = 250.0, templates: BootstrapTemplates | None = None,
                     templates_fraction: float = 0.5) -> list[SyntheticPatch]:
    """``num`` synthetic patches of random ``TRAINING_FAMILIES`` probes, or of one probe's ``locations``.

    With ``locations`` (fine-tuning on a recording's probe), each patch holds the contacts within a
    random ``band_um`` stretch along the probe, so that long probes stay cheap to simulate, and
    ``templates_fraction`` of the patches take their units from ``templates`` (the recording's
    own, on ``locations``) when some have their main channel in the band.
    """
    rng = np.random.default_rng(seed)
    patches = []
    for _ in range(num):
        own = None
        where, band = patch_contacts(rng, locations, band_um)
        if band is not None and templates is not None and rng.random() < templates_fraction:
            own = templates.restricted_to(band)
        patches.append(synthesize_patch(rng, where, temporal, spatial, duration_s=duration_s,
                                        templates=own if own is not None and len(own) else None))
    return patches


def patch_peaks(network: NeighbourhoodDetector | None, patch: SyntheticPatch, geometry: DetectorGeometry,
                floor: float, exclusion_radius_um: float = 50.0,
                exclude_ms: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Locally exclusive peaks of a patch whose score is at least ``floor``, with their scores.

    The score is the network's logit, or the trough depth in noise levels when ``network`` is None
    (the locally exclusive threshold detector). A higher threshold keeps the peaks scoring above
    it: the local maxima do not depend on the threshold.

    Returns
    -------
    samples, channels : np.ndarray
    scores : np.ndarray
    """
    exclusion = build_neighbourhoods(patch.locations, exclusion_radius_um)
    exclude = int(exclude_ms * TRAINING_SAMPLING_FREQUENCY / 1000.0)
    if network is None:
        scores = -patch.traces.T
    else:
        neighbourhoods = build_neighbourhoods(patch.locations, geometry.radius_um, max_width=geometry.slots)
        scores = detection_logits(network, patch.traces, neighbourhoods,
                                  neighbourhoods.relative_positions(patch.locations))
    samples, channels = pick_peaks(scores, floor, exclude, exclusion)
    return samples, channels, scores[channels, samples]


def score_patches(patches: list[SyntheticPatch], peaks: list[tuple], threshold: float) -> dict:
    """Recall (spikes >= 2.5 noise levels, and by spike-SNR bin) and precision of the peaks scoring >= ``threshold``.

    A peak matches a spike within 0.4 ms and 50 um of its main channel (as the benchmark scores).
    """
    found, amplitudes, matched = [], [], []
    for patch, (samples, channels, scores) in zip(patches, peaks):
        keep = scores >= threshold
        spike_found, peak_matched = match_spikes(samples[keep], patch.locations[channels[keep]], patch.spike_samples,
                                                 patch.locations[patch.spike_channels], MATCH_DELTA, 50.0)
        found.append(spike_found)
        amplitudes.append(patch.spike_amplitudes)
        matched.append(peak_matched)
    found, amplitudes, matched = map(np.concatenate, (found, amplitudes, matched))
    by_snr = {}
    for low, high in zip(SNR_BINS[:-1], SNR_BINS[1:]):
        inside = (amplitudes >= low) & (amplitudes < high)
        label = f"{low:g}-{high:g}" if np.isfinite(high) else f">={low:g}"
        by_snr[label] = float(found[inside].mean()) if inside.any() else float("nan")
    return {"precision": float(matched.mean()) if matched.size else float("nan"),
            "recall": float(found[amplitudes >= 2.5].mean()), "recall_by_snr": by_snr}


def evaluate_detector(network: NeighbourhoodDetector, patches: list[SyntheticPatch], geometry: DetectorGeometry,
                      threshold: float | None = None, baseline: float = 5.0,
                      others: tuple[float, ...] = (4.0,)) -> tuple[float, list[dict]]:
    """Compare the network with threshold detection on held-out patches, calibrating its operating point.

    Parameters
    ----------
    network : NeighbourhoodDetector
    patches : list of SyntheticPatch
    geometry : DetectorGeometry
    threshold : float or None
        The network's logit threshold; None calibrates it: the lowest logit (in steps of 0.1)
        at which the network's precision reaches that of threshold detection at ``baseline``, or
        the most precise one when none does.
    baseline : float, default: 5.0
    others : tuple of float, default: (4.0,)
        More thresholds reported for comparison.

    Returns
    -------
    threshold : float
        The logit threshold used.
    rows : list of dict
        One per detector (network first): ``detector`` and ``score_patches``'s fields.
    """
    crossings = [patch_peaks(None, patch, geometry, min(baseline, *others)) for patch in patches]
    reference = score_patches(patches, crossings, baseline)
    logits = [patch_peaks(network, patch, geometry, -5.0) for patch in patches]
    if threshold is None:
        # whether a peak matches a spike does not depend on the other peaks: match once, then sweep
        matched = np.concatenate([
            match_spikes(samples, patch.locations[channels], patch.spike_samples,
                         patch.locations[patch.spike_channels], MATCH_DELTA, 50.0)[1]
            for patch, (samples, channels, _) in zip(patches, logits)])
        scores = np.concatenate([peaks[2] for peaks in logits])
        curve = [(float(value), matched[scores >= value].mean())
                 for value in np.round(np.arange(-5.0, 10.0, 0.1), 1) if (scores >= value).any()]
        if not curve:
            raise ValueError("the network finds no peak in the held-out patches: train it longer or on more data")
        reaching = [value for value, precision in curve if precision >= reference["precision"]]
        # out of reach (e.g. too few held-out spikes): the most precise threshold, the lowest among ties
        threshold = reaching[0] if reaching else max(curve, key=lambda point: (point[1], -point[0]))[0]
    rows = [{"detector": f"network (logit >= {threshold:g})", **score_patches(patches, logits, threshold)},
            {"detector": f"threshold {baseline:g}", **reference}]
    rows += [{"detector": f"threshold {value:g}", **score_patches(patches, crossings, value)} for value in others]
    return threshold, rows


def train_detector(
    temporal: TemporalNoise,
    spatial: SpatialNoise,
    start_from: NeighbourhoodDetector | None = None,
    geometry: DetectorGeometry = DEFAULT_GEOMETRY,
    locations: np.ndarray | None = None,
    templates: BootstrapTemplates | None = None,
    num_patches: int = 300,
    num_examples: int = 150_000,
    seed: int = 0,
    device: str = "cpu",
    max_epochs: int = 20,
    max_seconds: float | None = None,
    progress_bar: bool = True,
) -> tuple[NeighbourhoodDetector, TrainingReport, list[SyntheticPatch]]:
    """Train a detector on windows of synthetic patches; 10 % of the patches are held out.

    Parameters
    ----------
    temporal, spatial : TemporalNoise, SpatialNoise
        Noise models of the patches.
    start_from : NeighbourhoodDetector or None
        A trained detector to fine-tune; None trains from scratch.
    geometry : DetectorGeometry
    locations : np.ndarray or None
        Channel locations of every patch (fine-tuning on a recording's probe); None draws random
        patches of ``TRAINING_FAMILIES``.
    templates : BootstrapTemplates or None
        The recording's own units (with ``locations``), used by half of the patches.
    num_patches : int, default: 300
        1-s patches simulated.
    num_examples : int, default: 150000
    seed : int, default: 0
    device : str, default: "cpu"
    max_epochs : int, default: 20
    max_seconds : float or None
    progress_bar : bool, default: True

    Returns
    -------
    network : NeighbourhoodDetector
    report : TrainingReport
    held_out : list of SyntheticPatch
        The validation patches (for ``evaluate_detector``).
    """
    network = start_from if start_from is not None else NeighbourhoodDetector()
    torch.manual_seed(seed)
    patches = training_patches(temporal, spatial, num_patches, seed, locations, templates=templates)
    num_held_out = max(1, num_patches // 10)
    held_out, training = patches[:num_held_out], patches[num_held_out:]
    train = detection_examples(training, num_examples, geometry, seed=seed + 1)
    validation = detection_examples(held_out, max(1, num_examples // 10), geometry, seed=seed + 2)
    report = fit(network, train.inputs, train.target, validation.inputs, validation.target, MaskedBCE(),
                 max_epochs=max_epochs, device=device, seed=seed, progress_bar=progress_bar, max_seconds=max_seconds)
    return network.cpu(), report, held_out


def detector_card(network: NeighbourhoodDetector, model_id: str, version: str, training_data: str,
                  geometry: DetectorGeometry, metrics: list[dict], report: TrainingReport,
                  threshold: float, calibrated: bool) -> dict:
    """The model card of a trained detector (schema: ``dlsort/models/catalog.schema.json``).

    ``threshold`` is the logit of the operating point, ``calibrated`` whether ``evaluate_detector``
    chose it (else the trainer gave it).
    """
    half_ms = (network.receptive_field // 2) / TRAINING_SAMPLING_FREQUENCY * 1000.0
    return {
        "id": model_id,
        "task": "detector",
        "version": version,
        "description": "Neighbourhood spike detector: per-channel temporal convolutions pooled by relative channel "
                       "position, then a temporal read-out to the logit of a spike trough centred on the channel; "
                       "inputs in noise standard deviations, any probe geometry.",
        "architecture": {"name": ARCHITECTURE, "hyperparameters": dict(network.hyperparameters)},
        "sampling_frequency_hz": TRAINING_SAMPLING_FREQUENCY,
        "window_ms": {"before": round(half_ms, 4), "after": round(half_ms, 4)},
        "geometry": {"probe_families": ["any"], "neighbourhood_radius_um": geometry.radius_um,
                     "neighbourhood_slots": geometry.slots},
        "training_data": training_data,
        "operating_point": {
            "probability": round(float(1.0 / (1.0 + np.exp(-threshold))), 4),
            "rule": "lowest probability (logit step 0.1) whose precision on the held-out patches reaches that of "
                    "threshold detection at 5 noise levels" if calibrated else "given at training",
        },
        "metrics": {"held_out_detection": metrics, "epochs": report.epochs, "best_epoch": report.best_epoch,
                    "training_seconds": round(report.seconds, 1)},
        "licence": "MIT",
    }

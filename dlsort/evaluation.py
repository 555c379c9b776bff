"""Accuracy of a sorting against ground truth, as reported by the demo and the benchmark.

Conventions (``../shared/DESIGN.md``): SpikeInterface's ``compare_sorter_to_ground_truth`` with
delta 0.4 ms; a unit is well detected when its accuracy is >= 0.8; units are binned by the
signal-to-noise ratio of their ground-truth template (peak amplitude on the best channel over
that channel's noise level, measured on the recording the sorter was given).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

WELL_DETECTED = 0.8
# A sorted unit "holds" a true unit when it has at least this share of the true unit's spikes.
HOLDS_SHARE = 0.2
SNR_BINS = (0.0, 3.0, 5.0, 8.0, 12.0, 20.0, np.inf)


def snr_bin_labels() -> list[str]:
    """Labels of ``SNR_BINS``: "<3", "3-5", ..., ">=20"."""
    edges = SNR_BINS
    labels = [f"<{edges[1]:g}"]
    labels += [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[1:-2], edges[2:-1])]
    labels.append(f">={edges[-2]:g}")
    return labels


@dataclass
class Evaluation:
    """Summary of one sorting against ground truth.

    Attributes
    ----------
    num_gt_units, num_units : int
        Units in the ground truth and in the sorting.
    well_detected : int
        Ground-truth units matched with accuracy >= 0.8.
    false_positive_units : int
        Sorted units that match no ground-truth unit.
    accuracy, precision, recall : float
        Means over ground-truth units (missed units count as 0).
    well_detected_by_snr : dict
        SNR-bin label -> [well detected, units in the bin].
    per_unit : dict
        Ground-truth unit id -> {"snr", "accuracy", "precision", "recall", "miss"}; "miss" is None for a
        well-detected unit, else why it was missed (``diagnose_misses``).
    """

    num_gt_units: int
    num_units: int
    well_detected: int
    false_positive_units: int
    accuracy: float
    precision: float
    recall: float
    well_detected_by_snr: dict = field(default_factory=dict)
    per_unit: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"ground-truth units: {self.num_gt_units}   sorted units: {self.num_units}",
            f"well-detected units (accuracy >= {WELL_DETECTED}): {self.well_detected} / {self.num_gt_units}",
            f"false-positive units: {self.false_positive_units}",
            f"mean accuracy {self.accuracy:.3f}   precision {self.precision:.3f}   recall {self.recall:.3f}",
            "well detected by SNR: "
            + "  ".join(f"{label}: {good}/{total}" for label, (good, total) in self.well_detected_by_snr.items()),
        ]
        return "\n".join(lines)


def ground_truth_analyzer(recording, gt_sorting, seed: int = 0):
    """In-memory analyzer of the ground truth: dense templates (200 spikes per unit) and noise levels."""
    from spikeinterface.core import create_sorting_analyzer

    analyzer = create_sorting_analyzer(gt_sorting, recording, sparse=False, format="memory")
    analyzer.compute("random_spikes", max_spikes_per_unit=200, seed=seed)
    analyzer.compute(["templates", "noise_levels"], n_jobs=1, progress_bar=False)
    return analyzer


def ground_truth_snrs(recording, gt_sorting, seed: int = 0) -> np.ndarray:
    """Peak SNR of each ground-truth unit on ``recording`` (SpikeInterface's ``snr`` metric), in unit-id order."""
    from spikeinterface.metrics import compute_snrs

    snrs = compute_snrs(ground_truth_analyzer(recording, gt_sorting, seed))
    return np.array([snrs[unit] for unit in gt_sorting.unit_ids], dtype="float64")


def evaluate(gt_sorting, sorting, recording=None, snrs: np.ndarray | None = None) -> Evaluation:
    """Compare ``sorting`` with ``gt_sorting``.

    Parameters
    ----------
    gt_sorting, sorting : BaseSorting
    recording : BaseRecording or None
        Used to measure unit SNRs when ``snrs`` is not given; without either, the SNR
        table is left empty.
    snrs : np.ndarray or None
        Precomputed ground-truth SNRs (``ground_truth_snrs``).

    Returns
    -------
    Evaluation
    """
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    comparison = compare_sorter_to_ground_truth(
        gt_sorting, sorting, delta_time=0.4, well_detected_score=WELL_DETECTED, exhaustive_gt=True
    )
    perf = comparison.get_performance(method="by_unit", output="pandas").astype(float)
    misses = diagnose_misses(comparison, perf)
    if snrs is None and recording is not None:
        snrs = ground_truth_snrs(recording, gt_sorting)
    per_unit = {
        str(unit): {
            "snr": None if snrs is None else float(snrs[i]),
            "accuracy": float(perf.loc[unit, "accuracy"]),
            "precision": float(perf.loc[unit, "precision"]),
            "recall": float(perf.loc[unit, "recall"]),
            "miss": misses.get(unit),
        }
        for i, unit in enumerate(gt_sorting.unit_ids)
    }
    by_snr = {}
    if snrs is not None:
        accuracies = perf.loc[gt_sorting.unit_ids, "accuracy"].to_numpy()
        bins = np.digitize(snrs, SNR_BINS[1:-1])
        for index, label in enumerate(snr_bin_labels()):
            in_bin = bins == index
            by_snr[label] = [int(np.sum(accuracies[in_bin] >= WELL_DETECTED)), int(np.sum(in_bin))]
    return Evaluation(
        num_gt_units=len(gt_sorting.unit_ids),
        num_units=len(sorting.unit_ids),
        well_detected=int(comparison.count_well_detected_units(WELL_DETECTED)),
        false_positive_units=int(comparison.count_false_positive_units()),
        accuracy=float(perf["accuracy"].mean()),
        precision=float(perf["precision"].mean()),
        recall=float(perf["recall"].mean()),
        well_detected_by_snr=by_snr,
        per_unit=per_unit,
    )


def diagnose_misses(comparison, performance) -> dict:
    """Why each ground-truth unit below ``WELL_DETECTED`` accuracy was missed.

    From the matched spike counts of a ground-truth comparison, the first that applies:

    - "not detected": under half of the unit's spikes are in any sorted unit;
    - "split": two or more sorted units each hold >= ``HOLDS_SHARE`` of its spikes;
    - "merged": the sorted unit holding most of its spikes also holds >= ``HOLDS_SHARE`` of another
      true unit's spikes;
    - "contaminated": that sorted unit's other spikes (noise or bits of many units) bring the
      precision below ``WELL_DETECTED``;
    - "partly detected": a single, clean unit that lacks too many of its spikes.

    Parameters
    ----------
    comparison : GroundTruthComparison
        From ``compare_sorter_to_ground_truth``.
    performance : pandas.DataFrame
        Its ``get_performance(method="by_unit")``.

    Returns
    -------
    dict
        Ground-truth unit id -> one line starting with the reason, for the missed units only.
    """
    counts = comparison.match_event_count  # true units x sorted units: spikes matched between the two
    true_sizes = comparison.event_counts1
    sorted_sizes = comparison.event_counts2
    misses = {}
    for unit in comparison.sorting1.unit_ids:
        if performance.loc[unit, "accuracy"] >= WELL_DETECTED:
            continue
        matched = counts.loc[unit]
        share = matched / max(true_sizes[unit], 1)
        covered = min(float(share.sum()), 1.0)  # a spike matched by two sorted units counts twice: capped
        if covered < 0.5:
            misses[unit] = f"not detected ({100 * covered:.0f} % of its spikes in any unit)"
            continue
        holders = list(share.index[share >= HOLDS_SHARE])
        main = matched.idxmax()
        partners = [other for other in counts.index
                    if other != unit and counts.at[other, main] >= HOLDS_SHARE * true_sizes[other]]
        if len(holders) >= 2:
            misses[unit] = f"split into units {', '.join(map(str, holders))}"
        elif partners:
            misses[unit] = f"merged with true unit(s) {', '.join(map(str, partners))} in unit {main}"
        elif matched[main] / max(sorted_sizes[main], 1) < WELL_DETECTED:
            misses[unit] = f"contaminated (unit {main}: precision {matched[main] / sorted_sizes[main]:.2f})"
        else:
            misses[unit] = f"partly detected (unit {main} holds {100 * share[main]:.0f} % of its spikes)"
    return misses


def ground_truth_peaks(recording, gt_sorting, ms_before: float, ms_after: float) -> tuple[np.ndarray, np.ndarray]:
    """The true spikes as a SpikeInterface peak array, each on its unit's main channel.

    Feeding these peaks to the features and clustering stages measures those stages alone,
    without detection errors. The main channel is the detection benchmark's
    (``dlsort.detection_scores.ground_truth_main_channels``: the deepest template trough).

    Parameters
    ----------
    recording : BaseRecording
        The (preprocessed) recording the spikes are in.
    gt_sorting : BaseSorting
        Its ground truth.
    ms_before, ms_after : float
        Snippet window: spikes whose window would leave the recording are dropped.

    Returns
    -------
    peaks : np.ndarray
        Peak array.
    units : np.ndarray
        int64 unit index of each peak.
    """
    from spikeinterface.core.node_pipeline import base_peak_dtype

    from dlsort.detection_scores import ground_truth_main_channels

    spikes = gt_sorting.to_spike_vector()
    peaks = np.zeros(len(spikes), dtype=base_peak_dtype)
    peaks["sample_index"], peaks["segment_index"] = spikes["sample_index"], spikes["segment_index"]
    units = spikes["unit_index"].astype("int64")
    peaks["channel_index"] = ground_truth_main_channels(recording, gt_sorting)[units]
    margin = int(np.ceil(max(ms_before, ms_after) * recording.sampling_frequency / 1000.0))
    lengths = np.array([recording.get_num_samples(segment) for segment in range(recording.get_num_segments())])
    inside = (peaks["sample_index"] >= margin) & (peaks["sample_index"] < lengths[peaks["segment_index"]] - margin)
    return peaks[inside], units[inside]


def cluster_accuracies(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per true unit, the accuracy of its best cluster: matched / (unit + cluster - matched) spikes.

    Parameters
    ----------
    truth : np.ndarray
        True unit of each spike (0..n-1).
    labels : np.ndarray
        Cluster of each spike; -1 (noise) is no cluster.

    Returns
    -------
    np.ndarray
        (n,) accuracies; 0 for a unit whose spikes are all noise.
    """
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(truth, labels)[:, np.unique(labels) >= 0]
    if table.shape[1] == 0:
        return np.zeros(table.shape[0])
    union = table.sum(axis=1, keepdims=True) + table.sum(axis=0, keepdims=True) - table
    return (table / union).max(axis=1)

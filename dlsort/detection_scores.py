"""How well a peak detector finds ground-truth spikes: per-unit recall and overall precision.

A detected peak matches a ground-truth spike when it lies within ``delta_ms`` of the spike and
its channel within ``radius_um`` of the unit's main channel (the channel of its template's
largest trough). Used by ``benchmarks/detection.py`` to compare detectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetectionScores:
    """Recall of every ground-truth unit and precision of the detector.

    Attributes
    ----------
    recall : np.ndarray
        Fraction of each unit's spikes (unit-id order) matched by a detected peak.
    precision : float
        Fraction of detected peaks that match some ground-truth spike.
    num_peaks : int
    """

    recall: np.ndarray
    precision: float
    num_peaks: int


def ground_truth_main_channels(recording, gt_sorting) -> np.ndarray:
    """Index of the channel with the largest template trough of each ground-truth unit (unit-id order)."""
    from dlsort.evaluation import ground_truth_analyzer

    analyzer = ground_truth_analyzer(recording, gt_sorting)
    templates = analyzer.get_extension("templates").get_data()  # (units, samples, channels)
    return np.argmax(-templates.min(axis=1), axis=1)


def match_spikes(peak_samples: np.ndarray, peak_positions: np.ndarray, spike_samples: np.ndarray,
                 spike_positions: np.ndarray, delta: int, radius_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Which spikes have a peak within ``delta`` samples and ``radius_um``, and which peaks match a spike.

    Parameters
    ----------
    peak_samples : np.ndarray
        Sorted sample of every detected peak.
    peak_positions : np.ndarray
        (num_peaks, 2) position (um) of each peak's channel.
    spike_samples : np.ndarray
        Sample of every ground-truth spike.
    spike_positions : np.ndarray
        (num_spikes, 2) position of each spike's main channel (or its unit's).
    delta : int
    radius_um : float

    Returns
    -------
    found : np.ndarray
        bool per spike.
    matched : np.ndarray
        bool per peak.
    """
    starts = np.searchsorted(peak_samples, spike_samples - delta, side="left")
    stops = np.searchsorted(peak_samples, spike_samples + delta, side="right")
    found = np.zeros(len(spike_samples), dtype=bool)
    matched = np.zeros(len(peak_samples), dtype=bool)
    for index, (start, stop) in enumerate(zip(starts, stops)):
        distance = np.linalg.norm(peak_positions[start:stop] - spike_positions[index], axis=1)
        near = start + np.flatnonzero(distance <= radius_um)
        found[index] = near.size > 0
        matched[near] = True
    return found, matched


def score_detection(
    peaks: np.ndarray,
    gt_sorting,
    main_channels: np.ndarray,
    channel_locations: np.ndarray,
    delta_ms: float = 0.4,
    radius_um: float = 50.0,
) -> DetectionScores:
    """Match detected peaks to ground-truth spikes (single-segment recordings).

    Parameters
    ----------
    peaks : np.ndarray
        SpikeInterface peak array (``sample_index``, ``channel_index``).
    gt_sorting : BaseSorting
    main_channels : np.ndarray
        Main channel of each ground-truth unit (``ground_truth_main_channels``).
    channel_locations : np.ndarray
        (num_channels, 2) in um.
    delta_ms : float, default: 0.4
    radius_um : float, default: 50.0

    Returns
    -------
    DetectionScores
    """
    if gt_sorting.get_num_segments() != 1:
        raise ValueError("score_detection handles single-segment recordings")
    delta = int(round(delta_ms * gt_sorting.sampling_frequency / 1000.0))
    locations = np.asarray(channel_locations)[:, :2]
    order = np.argsort(peaks["sample_index"], kind="stable")
    peak_samples, peak_positions = peaks["sample_index"][order], locations[peaks["channel_index"][order]]
    matched_peaks = np.zeros(len(peaks), dtype=bool)
    recall = np.zeros(len(gt_sorting.unit_ids))
    for index, unit in enumerate(gt_sorting.unit_ids):
        times = gt_sorting.get_unit_spike_train(unit)
        centre = np.repeat(locations[main_channels[index]][None], len(times), axis=0)
        found, matched = match_spikes(peak_samples, peak_positions, times, centre, delta, radius_um)
        matched_peaks |= matched
        recall[index] = found.mean() if len(times) else np.nan
    precision = float(matched_peaks.mean()) if len(peaks) else float("nan")
    return DetectionScores(recall=recall, precision=precision, num_peaks=len(peaks))

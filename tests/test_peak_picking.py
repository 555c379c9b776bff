"""Locally exclusive peak picking, dense and sparse, and the numpy threshold detector node."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import JOB

from dlsort.detection import detect_peaks as dlsort_detect_peaks
from dlsort.groundtruth import make_probe
from dlsort.peak_picking import (
    ThresholdPeakDetector,
    exclusion_adjacency,
    exclusive_maxima,
    far_field_peaks,
    pick_peaks,
)
from dlsort.waveforms import build_neighbourhoods


def _sparse_peaks(logits: np.ndarray, threshold: float, exclude: int, exclusion) -> tuple[np.ndarray, np.ndarray]:
    channels, samples = np.nonzero(logits >= threshold)
    return exclusive_maxima(samples, channels, logits[channels, samples], exclude, exclusion_adjacency(exclusion))


def test_pick_peaks_is_locally_exclusive_in_time_and_space():
    locations = np.array([[0.0, 0.0], [0.0, 20.0], [0.0, 200.0]])
    exclusion = build_neighbourhoods(locations, 50.0)
    logits = np.full((3, 100), -5.0, dtype="float32")
    logits[0, 30], logits[1, 32] = 2.0, 3.0  # neighbours, 2 samples apart: only the larger survives
    logits[2, 31] = 1.0  # far away: kept
    logits[0, 80], logits[0, 82] = 2.0, 2.5  # same channel within the exclusion: the larger
    logits[1, 60:63] = 1.5  # a plateau gives one peak
    for picker in (pick_peaks, _sparse_peaks):
        samples, channels = picker(logits, 0.0, 5, exclusion)
        assert list(zip(samples, channels)) == [(31, 2), (32, 1), (60, 1), (82, 0)], picker.__name__
        assert picker(logits, 2.6, 5, exclusion)[0].tolist() == [32]


def test_far_field_peaks_are_shallow_peaks_near_a_much_deeper_one_in_time_and_in_the_ring():
    locations = np.array([[0.0, 0.0], [0.0, 30.0], [0.0, 150.0], [0.0, 300.0]])
    distances = np.linalg.norm(locations[:, None] - locations[None], axis=2)
    # a 50-deep peak at sample 100 on channel 0, then shallow peaks (sample, channel, depth)
    entries = [(100, 0, 50.0),
               (110, 2, 3.0),  # 150 um, 10 samples after: far field
               (95, 2, 3.0),  # 5 samples before the deep peak: far field
               (92, 2, 3.0),  # 8 samples before: outside the window
               (125, 2, 3.0),  # 25 samples after: outside the window
               (111, 1, 3.0),  # 30 um: inside the exclusion radius, left to the locally exclusive rule
               (112, 3, 3.0),  # 300 um: beyond the ring
               (113, 2, 4.0)]  # 50 / 4 < 14 times deeper: a spike of its own
    samples, channels, depths = (np.array(column) for column in zip(*sorted(entries)))
    far = far_field_peaks(samples, channels, depths, distances, ratio=14.0, inner_um=50.0, outer_um=250.0,
                          before=6, after=24)
    assert sorted(zip(samples[far].tolist(), channels[far].tolist())) == [(95, 2), (110, 2)]
    nothing = far_field_peaks(samples[:0], channels[:0], depths[:0], distances, 14.0, 50.0, 250.0, 6, 24)
    assert nothing.shape == (0,)


@pytest.mark.parametrize("seed", range(5))
def test_sparse_picking_finds_the_dense_peaks(seed):
    rng = np.random.default_rng(seed)
    locations = np.stack([np.tile([0.0, 32.0], 8), np.repeat(np.arange(8) * 20.0, 2)], axis=1)
    exclusion = build_neighbourhoods(locations, 50.0)
    logits = rng.normal(size=(16, 2000)).astype("float32")
    logits[:, 500:520] = 1.7  # plateaus across channels: ties within the window
    dense = pick_peaks(logits, 1.5, 7, exclusion)
    sparse = _sparse_peaks(logits, 1.5, 7, exclusion)
    assert len(dense[0]) > 100
    np.testing.assert_array_equal(dense[0], sparse[0])
    np.testing.assert_array_equal(dense[1], sparse[1])
    nothing = _sparse_peaks(logits, 99.0, 7, exclusion)  # no entry at all: no peak, no error
    assert nothing[0].size == 0 and nothing[1].size == 0


@pytest.mark.parametrize("peak_sign", ["neg", "pos", "both"])
def test_threshold_node_finds_the_peaks_of_spikeinterface_locally_exclusive(peak_sign):
    from spikeinterface.core import generate_ground_truth_recording, get_noise_levels
    from spikeinterface.core.node_pipeline import run_node_pipeline
    from spikeinterface.preprocessing import bandpass_filter
    from spikeinterface.sortingcomponents.peak_detection import detect_peaks

    recording, _ = generate_ground_truth_recording(durations=[6.0], num_units=8, seed=5,
                                                   probe=make_probe("staggered", 16))
    recording = bandpass_filter(recording, dtype="float32")
    noise = get_noise_levels(recording, return_in_uV=False, random_slices_kwargs=dict(seed=0))
    kwargs = dict(peak_sign=peak_sign, detect_threshold=4.0, exclude_sweep_ms=0.8, radius_um=60.0)
    theirs = detect_peaks(recording, method="locally_exclusive", method_kwargs=dict(noise_levels=noise, **kwargs),
                          job_kwargs=dict(JOB, chunk_duration="1s"))
    ours, models = dlsort_detect_peaks(recording, method="threshold", noise_levels=noise, **kwargs,
                                       job_kwargs=dict(n_jobs=2, chunk_duration="1s", progress_bar=False))
    assert len(theirs) > 300 and models == []
    assert np.array_equal(ours, theirs)
    # other chunks filter with other margins (amplitudes move by ~1e-4) but find the same peaks
    chunked = run_node_pipeline(recording, [ThresholdPeakDetector(recording, noise, **kwargs)],
                                dict(n_jobs=2, chunk_duration="0.7s", progress_bar=False))
    for field in ("sample_index", "channel_index"):
        np.testing.assert_array_equal(chunked[field], theirs[field])

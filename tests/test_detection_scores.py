import numpy as np
from spikeinterface.core import NumpySorting

from dlsort.detection_scores import score_detection


def _peaks(times, channels):
    peaks = np.zeros(len(times), dtype=[("sample_index", "int64"), ("channel_index", "int64"),
                                        ("amplitude", "float64"), ("segment_index", "int64")])
    peaks["sample_index"], peaks["channel_index"] = times, channels
    return peaks


def test_recall_and_precision_follow_time_and_distance_tolerances():
    locations = np.array([[0.0, 0.0], [0.0, 40.0], [0.0, 200.0]])
    gt = NumpySorting.from_samples_and_labels([np.array([1000, 2000, 3000, 4000])], [np.array([0, 0, 1, 1])],
                                              30_000.0)
    main_channels = np.array([0, 2])
    peaks = _peaks(
        [1005,  # unit 0, 5 samples late and 40 um away: a match
         2030,  # unit 0, 1 ms late: no match
         3000,  # unit 1 at time, but on channel 0, 200 um from its main channel: no match
         4000,  # unit 1, exact: a match
         9000],  # noise
        [1, 0, 0, 2, 1],
    )
    scores = score_detection(peaks, gt, main_channels, locations)
    np.testing.assert_allclose(scores.recall, [0.5, 0.5])
    assert scores.precision == 2 / 5 and scores.num_peaks == 5

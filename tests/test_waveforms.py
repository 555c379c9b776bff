import numpy as np
import pytest

from dlsort.waveforms import build_neighbourhoods, cut_snippets


def test_neighbourhoods_are_distance_ordered_and_padded():
    locations = np.array([[0.0, 0.0], [0.0, 20.0], [0.0, 40.0], [0.0, 100.0]])
    hood = build_neighbourhoods(locations, radius_um=25.0)
    assert hood.width == 3
    assert hood.indices[0].tolist() == [0, 1, -1]
    assert hood.indices[1, 0] == 1 and set(hood.indices[1, 1:]) == {0, 2}
    assert hood.indices[3].tolist() == [3, -1, -1]
    assert hood.mask.sum(axis=1).tolist() == [2, 3, 2, 1]
    distances = np.linalg.norm(locations[hood.indices[1]] - locations[1], axis=1)
    assert np.all(np.diff(distances) >= 0)


def test_neighbourhoods_reject_bad_input():
    with pytest.raises(ValueError, match="radius_um"):
        build_neighbourhoods(np.zeros((3, 2)) + np.arange(3)[:, None], radius_um=0)
    with pytest.raises(ValueError, match="num_channels"):
        build_neighbourhoods(np.zeros((0, 2)), radius_um=10)


def test_cut_snippets_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    traces = rng.normal(size=(200, 5)).astype("float32")
    locations = np.stack([np.zeros(5), 20.0 * np.arange(5)], axis=1)
    hood = build_neighbourhoods(locations, radius_um=30.0)
    samples, centres = np.array([10, 50, 150]), np.array([0, 2, 4])
    snippets = cut_snippets(traces, samples, centres, hood, nbefore=5, nafter=7)
    assert snippets.shape == (3, 12, hood.width)
    for k, (sample, centre) in enumerate(zip(samples, centres)):
        for slot, channel in enumerate(hood.indices[centre]):
            expected = traces[sample - 5 : sample + 7, channel] if channel >= 0 else np.zeros(12)
            np.testing.assert_array_equal(snippets[k, :, slot], expected)

import numpy as np

from dlsort.curation import coincidence_fractions, remove_ghosts_and_duplicates


def test_coincidences_are_counted_once_per_spike_and_segment_aware():
    samples = np.array([100, 105, 500, 900, 903, 906, 100])
    segments = np.array([0, 0, 0, 0, 0, 0, 1])
    units = np.array([0, 1, 0, 0, 1, 1, 1])
    fractions = coincidence_fractions(samples, segments, units, num_units=2, window=10)
    # unit 0: spikes at 100 (unit-1 spike at 105) and 900 (903, 906) coincide, 500 does not
    assert fractions[0, 1] == 2 / 3
    # unit 1: 105, 903, 906 coincide with unit 0; the segment-1 spike at 100 does not
    assert fractions[1, 0] == 3 / 4
    assert fractions[0, 0] == fractions[1, 1] == 0


def test_ghosts_and_weaker_duplicates_are_dropped():
    rng = np.random.default_rng(0)
    big = np.sort(rng.choice(1_000_000, 300, replace=False)) * 10
    duplicate = big[:200] + 3  # shadows the big unit
    other = np.sort(rng.choice(1_000_000, 250, replace=False)) * 10 + 5_000  # independent
    ghost = np.array([77, 1_000_003])
    samples = np.concatenate([big, duplicate, other, ghost])
    units = np.repeat([0, 1, 2, 3], [len(big), len(duplicate), len(other), len(ghost)])
    keep = remove_ghosts_and_duplicates(
        samples, np.zeros_like(samples), units, amplitudes=np.array([100.0, 30.0, 50.0, 80.0]), min_spikes=10, window=12
    )
    assert keep.tolist() == [True, False, True, False]

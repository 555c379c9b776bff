import numpy as np
from spikeinterface.core import Templates

from dlsort.templates import RefractoryCheck, clean_templates, lagged_cosine_similarity, merge_similar


def _spike(num_samples=40, centre=15, width=3.0):
    t = np.arange(num_samples)
    return -np.exp(-0.5 * ((t - centre) / width) ** 2) + 0.3 * np.exp(-0.5 * ((t - centre - 8) / 5.0) ** 2)


def _templates(array):
    return Templates(
        templates_array=np.asarray(array, "float32"),
        sampling_frequency=30000.0,
        nbefore=15,
        unit_ids=np.arange(len(array)),
    )


def test_similarity_sees_through_small_lags():
    base = np.stack([_spike(), 0.5 * _spike()], axis=1)
    shifted = np.roll(base, 2, axis=0)
    other = np.stack([0.2 * _spike(), _spike(centre=22)], axis=1)
    similarity = lagged_cosine_similarity(np.stack([base, shifted, other]), max_shift=3)
    assert similarity[0, 1] > 0.99
    assert similarity[0, 2] < 0.8
    np.testing.assert_allclose(np.diag(similarity), 1.0, atol=1e-6)


def test_merge_joins_duplicates_only():
    base = np.stack([_spike(), 0.5 * _spike()], axis=1) * 50
    other = np.stack([0.1 * _spike(), _spike(centre=22)], axis=1) * 50
    templates = _templates([base, np.roll(base, 1, axis=0), other])
    labels = np.array([0, 0, 1, 1, 2, 2, -1])
    merged = merge_similar(templates, labels, similarity_threshold=0.9)
    assert merged[0] == merged[2] != merged[4]
    assert merged[-1] == -1
    assert set(merged[merged >= 0]) == {0, 1}


def test_merge_needs_amplitudes_within_the_ratio():
    base = np.stack([_spike(), 0.5 * _spike()], axis=1) * 50
    templates = _templates([base, 0.62 * base, 0.3 * base])  # one shape at three sizes
    labels = np.array([0, 1, 2])
    assert len(set(merge_similar(templates, labels))) == 3  # the default 0.7 keeps all three apart
    assert len(set(merge_similar(templates, labels, min_amplitude_ratio=0.5))) == 2  # joins 0 and 1, not 2
    assert len(set(merge_similar(templates, labels, min_amplitude_ratio=0.25))) == 1


def test_the_masked_similarity_joins_pieces_of_a_weak_unit_that_averaging_noise_keeps_apart():
    """Two pieces of one weak unit (3 and 1.5 noise levels on two of 200 channels), each averaged from 400
    peaks: the averaging noise on the other channels deflates their dense similarity below the
    threshold, while on the channels each reaches they are alike; a unit of another shape on the same
    channels stays apart."""
    rng = np.random.default_rng(0)
    num_channels, noise = 200, 1.0
    unit = np.zeros((40, num_channels))
    unit[:, 0], unit[:, 1] = 3.0 * _spike() / 0.92, 1.5 * _spike() / 0.92  # _spike's trough: -0.92
    other = np.zeros((40, num_channels))
    other[:, 0] = 3.0 * _spike(centre=22, width=6.0)
    pieces = [shape + rng.normal(scale=noise / np.sqrt(400), size=shape.shape) for shape in (unit, unit, other)]
    templates = _templates(pieces)
    labels = np.array([0, 1, 2])
    assert lagged_cosine_similarity(templates.templates_array, 3)[0, 1] < 0.95
    assert len(set(merge_similar(templates, labels))) == 3
    merged = merge_similar(templates, labels, noise_levels=np.full(num_channels, noise),
                           masked_similarity_threshold=0.98)
    assert merged[0] == merged[1] != merged[2]


def test_similar_clusters_that_fire_independently_are_not_merged():
    rng = np.random.default_rng(0)
    duration, refractory = 30000 * 120, 60  # 2 min at 30 kHz; 2 ms
    # one neuron at 20 Hz with a 3-ms refractory period, its spikes split alternately between two clusters ...
    neuron = np.cumsum(90 + rng.exponential(30000 / 20, size=2400)).astype("int64")
    neuron = neuron[neuron < duration]
    # ... and two independent neurons at 20 Hz with the same template
    first, second = (np.sort(rng.choice(duration, size=2400, replace=False)) for _ in range(2))
    times = np.concatenate([neuron, first, second])
    labels = np.concatenate([np.arange(len(neuron)) % 2, np.full(len(first), 2), np.full(len(second), 3)])
    base = np.stack([_spike(), 0.5 * _spike()], axis=1) * 50
    templates = _templates([base] * 4)
    check = RefractoryCheck(times, refractory, duration)
    merged = merge_similar(templates, labels, refractory=check)
    assert merged[0] == merged[1]  # the split neuron is joined
    assert len({merged[labels == 0][0], merged[labels == 2][0], merged[labels == 3][0]}) == 3
    assert len(set(merge_similar(templates, labels))) == 1  # similarity alone joins all four
    sparse = RefractoryCheck(times, refractory, duration * 1000)  # too few coincidences expected to judge
    assert len(set(merge_similar(templates, labels, refractory=sparse))) == 1


def test_refractory_check_of_peaks_puts_segments_on_one_clock():
    from spikeinterface.core import NumpyRecording

    recording = NumpyRecording([np.zeros((300, 2), "float32"), np.zeros((500, 2), "float32")], 30000.0)
    peaks = np.zeros(3, dtype=[("sample_index", "i8"), ("segment_index", "i8")])
    peaks["sample_index"], peaks["segment_index"] = [10, 20, 5], [0, 0, 1]
    check = RefractoryCheck.of_peaks(peaks, recording, refractory_ms=1.0)
    assert check.times.tolist() == [10, 20, 305] and check.refractory_samples == 30 and check.duration_samples == 800
    assert RefractoryCheck.of_peaks(peaks, recording, refractory_ms=0.0) is None


def test_clean_drops_small_templates_and_sparsifies():
    big = np.stack([_spike() * 60, _spike() * 3, np.zeros(40)], axis=1)
    small = np.stack([_spike() * 2, np.zeros(40), np.zeros(40)], axis=1)
    cleaned, kept = clean_templates(
        _templates([big, small]), noise_levels=np.ones(3) * 5, min_snr=4, rates_hz=np.array([10.0, 10.0])
    )
    assert kept.tolist() == [0]
    assert cleaned.sparsity.mask.tolist() == [[True, False, False]]


def test_weak_templates_are_kept_only_for_clusters_that_keep_firing():
    from dlsort.pipeline import sampling_weights
    from dlsort.templates import cluster_rates_hz

    # channel 0: 30 peaks detected, 10 sampled (each stands for 3); channel 1: all 5 sampled; channel 2: none
    weights = sampling_weights(np.array([0] * 30 + [1] * 5), np.array([0] * 10 + [1] * 5), 3)
    assert weights.tolist() == [3.0, 1.0, 0.0]
    labels = np.array([0] * 10 + [1] * 3 + [-1] * 2)
    rates = cluster_rates_hz(np.array([0] * 10 + [1] * 5), labels, weights, num_units=3, duration_s=10.0)
    assert rates.tolist() == [3.0, 0.3, 0.0]

    strong, weak = (np.stack([_spike() * amplitude, np.zeros(40)], axis=1) for amplitude in (30, 21))
    stack = _templates([strong, weak, weak, weak])
    noise = np.ones(2) * 5  # peaks of 5.5 and 3.9 noise levels
    rates = np.array([0.5, 2.0, 1.0, 0.0])
    assert clean_templates(stack, noise, 5.0, rates)[1].tolist() == [0]
    assert clean_templates(stack, noise, 5.0, rates, weak_snr=3.75, weak_min_rate_hz=1.5)[1].tolist() == [0, 1]
    # an empty cluster is dropped whatever its template
    assert clean_templates(stack, noise, 3.0, rates)[1].tolist() == [0, 1, 2]


def test_templates_decoded_from_features_follow_the_channels():
    from spikeinterface.core import NumpyRecording

    from dlsort.features import PeakFeatures, TemporalPCA
    from dlsort.templates import templates_from_features
    from dlsort.waveforms import build_neighbourhoods

    locations = np.stack([np.zeros(4), 20.0 * np.arange(4)], axis=1)
    recording = NumpyRecording([np.zeros((100, 4), "float32")], 30000.0)
    recording.set_dummy_probe_from_locations(locations)
    hood = build_neighbourhoods(locations, 25.0)  # width 3
    shape = _spike()
    basis = TemporalPCA(
        mean=np.zeros(40, "float32"), components=(shape / np.linalg.norm(shape))[None].astype("float32")
    )
    # two peaks of unit 0 detected on channel 1 and 2, with amplitude 2 on their centre, 1 on the other slots
    peaks = np.zeros(
        2, dtype=[("sample_index", "i8"), ("channel_index", "i8"), ("amplitude", "f8"), ("segment_index", "i8")]
    )
    peaks["channel_index"] = [1, 2]
    embedding = np.where(hood.indices[[1, 2]] >= 0, 1.0, 0.0)[:, None, :].astype("float32")
    embedding[:, 0, 0] = 2.0
    features = PeakFeatures(embedding, np.zeros((2, 2), "float32"), hood, basis=basis, nbefore=15)
    templates = templates_from_features(features, peaks, np.array([0, 0]), recording, min_coverage=0.5)
    scale = np.abs(templates.templates_array[0]).max(axis=0) / np.abs(shape).max() * np.linalg.norm(shape)
    # channel 1: centre (2) for one peak, neighbour (1) for the other -> 1.5; channel 0 seen by one of two peaks
    np.testing.assert_allclose(scale, [1.0, 1.5, 1.5, 1.0], atol=1e-5)
    assert templates.nbefore == 15


def test_dense_templates_merge_pieces_of_a_unit_that_share_no_neighbourhood_channel():
    from spikeinterface.core import NumpyRecording

    from dlsort.templates import estimate_merged_templates

    rng = np.random.default_rng(0)
    traces = rng.normal(scale=2.0, size=(60_000, 2)).astype("float32")
    shape_a, shape_b = 60.0 * _spike(), 40.0 * _spike(width=8.0)[::-1]  # B: wider, its trough late
    times_a, times_b = np.arange(200, 59_000, 600), np.arange(500, 59_000, 600)
    for t in times_a:  # unit A on both channels (100 um apart): pieces detected on either are one unit
        traces[t - 15:t + 25] += np.stack([shape_a, 0.75 * shape_a], axis=1)
    for t in times_b:
        traces[t - 15:t + 25, 1] += shape_b
    recording = NumpyRecording([traces], 30000.0)
    recording.set_dummy_probe_from_locations(np.array([[0.0, 0.0], [0.0, 100.0]]))
    fields = [("sample_index", "i8"), ("channel_index", "i8"), ("amplitude", "f8"), ("segment_index", "i8")]
    peaks = np.zeros(len(times_a) + len(times_b), dtype=fields)
    peaks["sample_index"] = np.concatenate([times_a, times_b])
    peaks["channel_index"] = np.concatenate([np.arange(len(times_a)) % 2, np.ones(len(times_b), int)])
    order = np.argsort(peaks["sample_index"])
    labels = np.concatenate([np.arange(len(times_a)) % 2, np.full(len(times_b), 2)])[order]  # A cut in two by channel
    peaks = peaks[order]
    job = dict(n_jobs=1, progress_bar=False)
    _, merged, templates = estimate_merged_templates(recording, peaks, labels, ms_before=0.5, ms_after=1.0, seed=0,
                                                     job_kwargs=job)
    assert templates.num_units == 2 and merged.max() == 1
    is_a = np.isin(peaks["sample_index"], times_a)
    assert len(np.unique(merged[is_a])) == 1 and np.all(merged[~is_a] != merged[is_a][0])
    _, same, kept = estimate_merged_templates(recording, peaks, np.where(is_a, 0, 1), ms_before=0.5, ms_after=1.0,
                                              seed=0, job_kwargs=job)
    assert np.array_equal(same, np.where(is_a, 0, 1)) and kept.num_units == 2  # nothing to merge: labels kept


def test_extremum_offsets_follow_the_peak_sign():
    import pytest

    from dlsort.templates import extremum_offsets

    trace = 2.0 * _spike(centre=20) - 1.5 * _spike(centre=8)  # trough at 20, largest positive bump at 8
    array = np.stack([np.stack([trace, 0.5 * trace], axis=1), np.stack([0.2 * trace, -trace], axis=1)])
    np.testing.assert_array_equal(extremum_offsets(array, 15, "neg"), [5, -7])
    np.testing.assert_array_equal(extremum_offsets(array, 15, "pos"), [-7, 5])
    np.testing.assert_array_equal(extremum_offsets(array, 15, "both"), [5, 5])
    with pytest.raises(ValueError, match="peak_sign"):
        extremum_offsets(array, 15, "up")


def test_align_peaks_moves_each_label_and_stays_inside_the_recording():
    from spikeinterface.core import NumpyRecording

    from dlsort.templates import align_peaks

    recording = NumpyRecording([np.zeros((1000, 1), "float32"), np.zeros((500, 1), "float32")], 30000.0)
    peaks = np.zeros(4, dtype=[("sample_index", "i8"), ("segment_index", "i8")])
    peaks["sample_index"] = [100, 990, 480, 300]
    peaks["segment_index"] = [0, 0, 1, 1]
    aligned = align_peaks(recording, peaks, np.array([0, 0, 1, -1]), np.array([5, -20]), nbefore=15, nafter=25)
    np.testing.assert_array_equal(aligned["sample_index"], [105, 975, 460, 300])
    np.testing.assert_array_equal(peaks["sample_index"], [100, 990, 480, 300])  # the input is not changed


def test_pieces_of_a_unit_detected_at_different_phases_are_aligned_then_merged():
    from spikeinterface.core import NumpyRecording

    from dlsort.templates import estimate_merged_templates

    rng = np.random.default_rng(1)
    traces = rng.normal(scale=2.0, size=(60_000, 1)).astype("float32")
    times = np.arange(200, 59_000, 400)
    for t in times:
        traces[t - 15:t + 25, 0] += 60.0 * _spike()
    recording = NumpyRecording([traces], 30000.0)
    recording.set_dummy_probe_from_locations(np.array([[0.0, 0.0]]))
    peaks = np.zeros(len(times), dtype=[("sample_index", "i8"), ("channel_index", "i8"), ("segment_index", "i8")])
    early = np.arange(len(times)) % 3 == 0  # a third of the spikes detected 8 samples before the trough
    peaks["sample_index"] = times - 8 * early
    job = dict(n_jobs=1, progress_bar=False)
    aligned, merged, templates = estimate_merged_templates(recording, peaks, early.astype("int64"), ms_before=0.5,
                                                           ms_after=1.0, seed=0, job_kwargs=job)
    np.testing.assert_array_equal(aligned["sample_index"], times)
    assert templates.num_units == 1 and np.all(merged == 0)
    assert np.argmin(templates.templates_array[0, :, 0]) == templates.nbefore


def test_templates_are_the_same_in_every_run_whatever_n_jobs():
    """Several workers summing float32 chunks in a timing-dependent order made templates differ between runs."""
    from spikeinterface.core import NumpyRecording

    from dlsort.templates import estimate_templates

    rng = np.random.default_rng(3)
    traces = rng.normal(scale=7.0, size=(300_000, 16)).astype("float32")
    recording = NumpyRecording([traces], 30000.0)
    recording.set_dummy_probe_from_locations(np.stack([np.zeros(16), 20.0 * np.arange(16)], axis=1))
    peaks = np.zeros(6000, dtype=[("sample_index", "i8"), ("channel_index", "i8"), ("segment_index", "i8")])
    peaks["sample_index"] = np.sort(rng.choice(np.arange(100, 299_900), size=6000, replace=False))
    labels = rng.integers(0, 3, size=6000)
    job = dict(n_jobs=2, chunk_duration="50ms", progress_bar=False)
    runs = [estimate_templates(recording, peaks, labels, 1.0, 1.5, max_spikes_per_unit=2000, seed=0, job_kwargs=job)
            for _ in range(4)]
    for other in runs[1:]:
        assert np.array_equal(other.templates_array, runs[0].templates_array)

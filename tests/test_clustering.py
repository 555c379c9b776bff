import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from dlsort.clustering import REGION_MARGIN_UM, cluster, relay_on_neighbourhood, spatial_regions
from dlsort.features import PeakFeatures
from dlsort.waveforms import build_neighbourhoods

LOCATIONS = np.stack([np.zeros(6), 20.0 * np.arange(6)], axis=1)


def _peaks(channels):
    peaks = np.zeros(
        len(channels),
        dtype=[("sample_index", "i8"), ("channel_index", "i8"), ("amplitude", "f8"), ("segment_index", "i8")],
    )
    peaks["channel_index"] = channels
    peaks["sample_index"] = np.arange(len(channels)) * 100
    return peaks


@pytest.mark.parametrize("split_components, method", [(0, "hdbscan"), (6, "hdbscan"), (0, "sklearn-hdbscan"),
                                                       (6, "sklearn-hdbscan")])
def test_separated_units_are_recovered(split_components, method):
    rng = np.random.default_rng(0)
    hood = build_neighbourhoods(LOCATIONS, 45.0)
    n_per_unit, truth = 150, []
    embeddings, locations, channels = [], [], []
    for unit, (channel, shape) in enumerate([(1, 40.0), (1, -40.0), (4, 25.0)]):
        mean = np.zeros((3, hood.width), "float32")
        mean[0, 0], mean[1, 0] = shape, shape / 2
        embeddings.append(mean + rng.normal(scale=2.0, size=(n_per_unit, 3, hood.width)))
        locations.append(LOCATIONS[channel] + rng.normal(scale=3.0, size=(n_per_unit, 2)))
        channels.append(np.full(n_per_unit, channel))
        truth += [unit] * n_per_unit
    features = PeakFeatures(
        np.concatenate(embeddings).astype("float32"), np.concatenate(locations).astype("float32"), hood
    )
    labels = cluster(features, _peaks(np.concatenate(channels)), min_cluster_size=20, split_components=split_components,
                     method=method)
    kept = labels >= 0
    assert kept.mean() > 0.9
    assert adjusted_rand_score(np.array(truth)[kept], labels[kept]) > 0.95
    assert labels.max() + 1 == 3


def test_cluster_rejects_mismatched_input():
    hood = build_neighbourhoods(LOCATIONS, 45.0)
    features = PeakFeatures(np.zeros((5, 3, hood.width), "float32"), np.zeros((5, 2), "float32"), hood)
    with pytest.raises(ValueError, match="5 rows but there are 4 peaks"):
        cluster(features, _peaks(np.zeros(4, int)))


def test_relay_moves_channels_to_the_target_layout():
    hood = build_neighbourhoods(LOCATIONS, 25.0)  # width 3: centre, then the two 20 um neighbours
    embedding = np.zeros((1, 1, hood.width), "float32")
    embedding[0, 0, :] = [10.0, 20.0, 30.0]  # values on hood.indices[2]
    features = PeakFeatures(embedding, np.zeros((1, 2), "float32"), hood)
    relaid = relay_on_neighbourhood(features, np.array([2]), target_channel=3)
    source = dict(zip(hood.indices[2], embedding[0, 0]))
    expected = [source.get(channel, 0.0) for channel in hood.indices[3]]
    np.testing.assert_allclose(relaid[0, 0], expected)


def _line_of_units(rng, centres_um, n_per_unit=120):
    """Units along a 1-column probe: 2 embedding dimensions, location spread 4 um, one unit per centre."""
    locations = np.stack([np.zeros(46), 20.0 * np.arange(46)], axis=1)  # 900 um
    hood = build_neighbourhoods(locations, 45.0)
    embeddings, peak_locations, channels = [], [], []
    for unit, centre in enumerate(centres_um):
        mean = np.zeros((2, hood.width), "float32")
        mean[0, 0], mean[1, 0] = 30.0 * np.cos(unit), 30.0 * np.sin(unit)
        embeddings.append(mean + rng.normal(scale=2.0, size=(n_per_unit, 2, hood.width)))
        peak_locations.append(np.array([0.0, centre]) + rng.normal(scale=4.0, size=(n_per_unit, 2)))
        channels.append(np.full(n_per_unit, int(round(centre / 20.0))))
    features = PeakFeatures(np.concatenate(embeddings).astype("float32"),
                            np.concatenate(peak_locations).astype("float32"), hood)
    return features, _peaks(np.concatenate(channels)), np.repeat(np.arange(len(centres_um)), n_per_unit)


def test_regional_clustering_keeps_units_on_tile_edges_whole():
    # tiles of at most 150 um (7 of ~130 um here): units 50-75 um apart, several near tile edges
    centres = [0.0, 100.0, 150.0, 225.0, 300.0, 380.0, 450.0, 600.0, 750.0, 880.0]
    features, peaks, truth = _line_of_units(np.random.default_rng(1), centres)
    whole = cluster(features, peaks, region_um=0.0)
    tiled = cluster(features, peaks, region_um=150.0)
    for labels in (whole, tiled):
        kept = labels >= 0
        assert kept.mean() > 0.9
        assert labels.max() + 1 == len(centres)
        assert adjusted_rand_score(truth[kept], labels[kept]) > 0.95
    assert adjusted_rand_score(whole, tiled) > 0.95
    # a tile with too few peaks to cluster leaves them as noise instead of lumping them into one cluster
    far = features.subset(np.arange(10))
    far.locations[:] += [0.0, 2000.0]
    lonely = PeakFeatures(np.concatenate([features.embedding, far.embedding]),
                          np.concatenate([features.locations, far.locations]), features.neighbourhoods)
    labels = cluster(lonely, _peaks(np.zeros(len(lonely), int)), region_um=150.0)
    assert np.all(labels[-10:] == -1) and labels.max() + 1 == len(centres)


def test_spatial_regions_cover_every_point_with_bounded_tiles():
    rng = np.random.default_rng(2)
    locations = rng.uniform([0.0, 0.0], [100.0, 1000.0], size=(500, 2))
    tiling, regions = spatial_regions(locations, 200.0)
    assert tiling.shape == (1, 5) and np.all(tiling.size <= 200.0)
    tiles = tiling.tile_of(locations)
    for region in regions:
        own = np.flatnonzero(np.all(tiles == region.tile, axis=1))
        assert np.isin(own, region.members).all()  # a tile's points are clustered with it
        spread = np.ptp(locations[region.members, 1])
        assert spread <= tiling.size[1] + 2 * REGION_MARGIN_UM + 1e-6  # the tile and its margins, no more
    assert len(spatial_regions(locations, 0.0)[1]) == 1
    with pytest.raises(ValueError, match="region_um must be >= 0"):
        spatial_regions(locations, -1.0)


def test_footprints_separate_units_alike_on_their_main_channel():
    """Two units with the same waveform on the same main channel, one with a narrow and one with a wide
    spatial footprint, are one cluster on main-channel features and two with footprint scores; peaks of
    one unit detected on either of two channels get the same footprint scores (laid channel by channel)."""
    from dlsort.clustering import footprint_scores

    rng = np.random.default_rng(0)
    hood = build_neighbourhoods(LOCATIONS, 45.0)
    n_per_unit, truth, embeddings, channels = 200, [], [], []
    for unit, decay_um in enumerate([10.0, 60.0]):
        profile = np.exp(-np.abs(LOCATIONS[:, 1] - 50.0) / decay_um)  # amplitude per channel, centre at 50 um
        for channel in (2, 3):  # the peak is detected on either channel next to the centre
            slots = hood.indices[channel]
            mean = np.zeros((3, hood.width), "float32")
            mean[0, slots >= 0] = 40.0 * profile[slots[slots >= 0]] / profile[2]
            embeddings.append(mean + rng.normal(scale=1.0, size=(n_per_unit // 2, 3, hood.width)))
            channels.append(np.full(n_per_unit // 2, channel))
            truth += [unit] * (n_per_unit // 2)
    embedding = np.concatenate(embeddings).astype("float32")
    locations = (np.array([0.0, 50.0]) + rng.normal(scale=3.0, size=(len(truth), 2))).astype("float32")
    features, peaks, truth = PeakFeatures(embedding, locations, hood), _peaks(np.concatenate(channels)), np.array(truth)

    scores = footprint_scores(features, peaks["channel_index"], np.arange(len(truth)), 3)
    first = scores[:, 0]
    assert abs(first[truth == 0].mean() - first[truth == 1].mean()) > 3 * first[truth == 0].std()
    on_two = truth == 0
    by_channel = [first[on_two & (peaks["channel_index"] == channel)].mean() for channel in (2, 3)]
    assert abs(by_channel[0] - by_channel[1]) < first[on_two].std()
    def purity(labels: np.ndarray) -> float:
        """Share of the clustered peaks that belong to their cluster's majority unit."""
        kept = labels >= 0
        table = np.zeros((labels.max() + 1, 2))
        np.add.at(table, (labels[kept], truth[kept]), 1)
        return table.max(axis=1).sum() / kept.sum()

    alone = cluster(features, peaks, min_cluster_size=20)
    with_footprints = cluster(features, peaks, min_cluster_size=20, footprint_components=3)
    # apart, each unit's clusters pure (a wide unit may come in one cluster per detection channel: the channel
    # its neighbourhood lacks reads zero; the template merge rejoins such pieces)
    assert purity(with_footprints) > 0.95 and np.mean(with_footprints >= 0) > 0.9
    assert purity(alone) < 0.8


def test_discriminant_split_cuts_a_cluster_of_two_units_and_leaves_one_unit_whole():
    from dlsort.clustering import _discriminant_split, discriminant_bimodality

    rng = np.random.default_rng(1)
    one = rng.normal(size=(400, 4)) * [3.0, 1.0, 1.0, 1.0]  # one unit, stretched along its first axis
    two = np.concatenate([rng.normal(size=(300, 4)), rng.normal(size=(200, 4)) + [0.0, 6.0, 0.0, 0.0]])
    assert discriminant_bimodality(one)[0] < 0.5 < 0.9 < discriminant_bimodality(two)[0]
    assert discriminant_bimodality(two[:, 1:2])[0] > 0.9  # one dimension
    points = np.concatenate([one + 30.0, two])
    truth = np.repeat([0, 1, 2], [400, 300, 200])
    labels = _discriminant_split(points, np.repeat([0, 1], [400, 500]), min_cluster_size=20, threshold=0.5)
    assert adjusted_rand_score(truth, labels) > 0.98
    untouched = _discriminant_split(points, np.repeat([0, 1], [400, 500]), min_cluster_size=300, threshold=0.5)
    assert np.array_equal(untouched, np.repeat([0, 1], [400, 500]))  # a half below min_cluster_size: no cut


ALIKE_FOOTPRINTS = {"A": [2.0, 6.0, 10.0, 6.0, 2.0, 0.0], "B": [0.5, 1.5, 10.0, 9.0, 5.0, 1.0],
                    "C": [6.0, 10.0, 10.0, 0.5, 0.0, 0.0], "small A": [0.6, 1.8, 3.0, 1.8, 0.6, 0.0]}


def _alike_on_main_channel(rng, detections=(("A", 2, 300), ("B", 2, 180), ("B", 3, 20))):
    """Units on channel 2 with the same main-channel trough and different footprints (``ALIKE_FOOTPRINTS``).

    ``detections``: (unit, detection channel, peaks); by default A (300 peaks) and B (200), 20 of B's peaks
    detected on channel 3, whose neighbourhood lacks channel 0. The basis decodes a component-0 coefficient c
    into c times a negative Gaussian trough at sample 8. Returns the features, the detection channels and
    each peak's unit (its index in ``ALIKE_FOOTPRINTS``).
    """
    from dlsort.features import TemporalPCA

    hood = build_neighbourhoods(LOCATIONS, 45.0)
    trough = -np.exp(-0.5 * ((np.arange(20) - 8) / 2.0) ** 2)
    second = np.sin(np.arange(20) / 3.0)
    second -= (second @ trough) / (trough @ trough) * trough
    basis = TemporalPCA(np.zeros(20, "float32"),
                        np.stack([trough / np.linalg.norm(trough), second / np.linalg.norm(second)]).astype("float32"))
    embeddings, channels, units = [], [], []
    for unit, channel, count in detections:
        slots = hood.indices[channel]
        coefficient = np.where(slots >= 0, np.asarray(ALIKE_FOOTPRINTS[unit])[np.maximum(slots, 0)], 0.0)
        scale = rng.lognormal(sigma=0.15, size=(count, 1))  # amplitudes vary 15 % around the footprint
        embedding = rng.normal(scale=0.8, size=(count, 2, hood.width))
        embedding[:, 0] += scale * coefficient
        embeddings.append(embedding * (slots >= 0))
        channels.append(np.full(count, channel))
        units.append(np.full(count, list(ALIKE_FOOTPRINTS).index(unit)))
    total = sum(count for *_, count in detections)
    features = PeakFeatures(np.concatenate(embeddings).astype("float32"),
                            np.repeat(LOCATIONS[[2]], total, axis=0).astype("float32"), hood, basis=basis)
    return features, np.concatenate(channels), np.concatenate(units)


def test_trough_footprints_read_each_member_at_the_cluster_trough():
    from dlsort.clustering import trough_footprints

    features, channels, _ = _alike_on_main_channel(np.random.default_rng(3))
    members = np.arange(len(channels))
    amplitudes, covered = trough_footprints(features, channels, members, LOCATIONS, radius_um=45.0)
    assert amplitudes.shape == covered.shape == (500, 5)  # channels 0-4
    assert covered[:480].all() and covered[480:, 1:].all() and not covered[480:, 0].any()  # channel 3 lacks 0
    at_trough = features.basis.inverse_transform(np.transpose(features.embedding[:480], (0, 2, 1)))[:, :, 8]
    slots = features.neighbourhoods.indices[2]
    expected = at_trough[:, [int(np.flatnonzero(slots == c)[0]) for c in range(5)]]
    np.testing.assert_allclose(amplitudes[:480], expected, rtol=1e-4, atol=1e-4)


def test_footprint_split_separates_units_alike_on_their_main_channel():
    from dlsort.clustering import _footprint_split

    features, channels, truth = _alike_on_main_channel(np.random.default_rng(4))
    one_cluster = np.zeros(len(channels), dtype="int64")
    split = _footprint_split(features, channels, one_cluster, LOCATIONS, min_cluster_size=20, threshold=0.8,
                             radius_um=40.0)
    assert adjusted_rand_score(truth, split) > 0.95  # channel-3 peaks of B joined B on the channels they cover
    # one unit whose amplitude varies (a continuum, not two modes) stays whole
    single = _footprint_split(features.subset(np.arange(300)), channels[:300], one_cluster[:300], LOCATIONS,
                              min_cluster_size=20, threshold=0.8, radius_um=40.0)
    assert np.all(single == 0)
    # with one channel near the centre (a sparse probe) the footprint is the amplitude there, the same for A and B
    alone = _footprint_split(features, channels, one_cluster, LOCATIONS, min_cluster_size=20, threshold=0.8,
                             radius_um=10.0)
    assert np.all(alone == 0)
    with pytest.raises(ValueError, match="footprint split needs channel_locations"):
        cluster(features, _peaks(channels), footprint_bimodality=0.8)


def test_footprint_split_tests_each_half_again():
    """Three units alike on their main channel in one cluster: one cut makes two parts, a cut of a part the third."""
    from dlsort.clustering import _footprint_split

    features, channels, truth = _alike_on_main_channel(np.random.default_rng(5),
                                                       (("A", 2, 300), ("B", 2, 200), ("C", 2, 250)))
    split = _footprint_split(features, channels, np.zeros(len(channels), dtype="int64"), LOCATIONS,
                             min_cluster_size=20, threshold=0.8, radius_um=40.0)
    assert len(np.unique(split[split >= 0])) == 3
    assert adjusted_rand_score(truth, split) > 0.95


def test_footprint_split_on_one_channel_tells_units_apart_by_amplitude():
    """A sparse probe: only the cluster's own channel is near its centre; A and a unit of its shape at 0.3 of its
    amplitude are cut apart there."""
    from dlsort.clustering import _footprint_split

    features, channels, truth = _alike_on_main_channel(np.random.default_rng(6), (("A", 2, 300), ("small A", 2, 200)))
    split = _footprint_split(features, channels, np.zeros(len(channels), dtype="int64"), LOCATIONS,
                             min_cluster_size=20, threshold=0.8, radius_um=10.0)
    assert adjusted_rand_score(truth, split) > 0.95


@pytest.mark.parametrize("method", ["hdbscan", "sklearn-hdbscan"])
def test_points_of_a_single_group_are_one_cluster(method):
    """HDBSCAN never returns its root: a tile whose peaks form one group (one electrode of a sparse probe) would come
    back all noise, or, allowed one cluster, as a core of about min_cluster_size points and the rest noise."""
    from dlsort.clustering import _hdbscan

    rng = np.random.default_rng(0)
    blob = rng.normal(size=(450, 5))
    assert np.all(_hdbscan(blob, min_cluster_size=20, min_samples=5, method=method) == 0)
    two = np.concatenate([blob, rng.normal(size=(300, 5)) + 12.0])
    labels = _hdbscan(two, min_cluster_size=20, min_samples=5, method=method)
    assert adjusted_rand_score(np.repeat([0, 1], [450, 300]), labels) > 0.9


def test_drop_weaker_halves_keeps_a_units_spikes_out_of_noise_crossings():
    """A unit's 200 spikes clustered with 350 smaller crossings of one shape: the crossings become noise, the unit keeps
    its label; a cluster too small to cut, and the clusters not asked for, are left as they are."""
    from dlsort.clustering import drop_weaker_halves

    features, channels, truth = _alike_on_main_channel(np.random.default_rng(7), (("A", 2, 200), ("small A", 2, 350)))
    labels = np.zeros(len(channels), dtype="int64")
    cut = drop_weaker_halves(features, channels, labels, np.array([0]), LOCATIONS, radius_um=40.0,
                             min_cluster_size=20)
    unit = truth == list(ALIKE_FOOTPRINTS).index("A")
    assert np.mean(cut[unit] == 0) > 0.97 and np.mean(cut[~unit] == -1) > 0.97
    assert np.array_equal(drop_weaker_halves(features, channels, labels, np.array([0]), LOCATIONS, radius_um=40.0,
                                             min_cluster_size=300), labels)
    assert np.array_equal(drop_weaker_halves(features, channels, labels, np.array([], dtype="int64"), LOCATIONS,
                                             radius_um=40.0, min_cluster_size=20), labels)

"""Clustering stage: HDBSCAN on peak features, then split steps.

``cluster(features, peaks, ...)`` returns one label per peak (-1 = noise):

1. HDBSCAN on globally comparable features: the peak location and the waveform features
   (``PeakFeatures.waveform_features``: the learned embedding of the neighbourhood snippet, or the
   temporal PCA of the detection channel), each scaled to unit spread. With ``region_um > 0`` the
   probe is cut into tiles of at most ``region_um`` (``spatial_regions``); each tile's peaks,
   with those within ``REGION_MARGIN_UM`` around it, are clustered on their own, a tile keeps the clusters
   whose median location lies inside it, and a peak claimed by two tiles' clusters goes to the
   one whose median is nearer. Cost then grows linearly with the probe's size. With
   ``footprint_components > 0`` each clustering (tile or whole probe) adds the principal scores of
   its peaks' multi-channel embeddings laid on the channels they cover (``footprint_scores``),
   which tell apart neighbouring units whose main-channel waveforms look alike.
2. Optional split (``split_components > 0``): every cluster is re-clustered on its whole
   channel neighbourhood (the embedding of each member re-laid on the neighbourhood of the
   cluster's most common channel), in its own PCA space; it is split when HDBSCAN finds two or
   more well-populated modes.
3. Optional discriminant split (``split_bimodality > 0``): every cluster is cut in two by k-means
   on the clustering features and kept cut when its members' projection on the two halves'
   Fisher discriminant is bimodal enough (``discriminant_bimodality``).
4. Footprint split (``footprint_bimodality > 0``): the same test on each member's amplitude at the
   cluster's trough on every channel near the cluster's centre (``trough_footprints``), which
   tells apart two neighbouring units whose main-channel waveforms look alike (on a sparse probe,
   one channel: units of one shape and different amplitudes). Each half is tested again, so three
   such units in one cluster come out as three.

Over-split units are merged later by template similarity (``dlsort.templates.merge_similar``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dlsort.errors import check_choice
from dlsort.features import PeakFeatures

# "hdbscan": the hdbscan package; "sklearn-hdbscan": scikit-learn's implementation of the same algorithm.
CLUSTERING_METHODS = ("hdbscan", "sklearn-hdbscan")
# Peaks this close to a tile are clustered with it: a unit's peaks are located within a few tens of um
# of its centre, so a unit whose median lies in the tile is whole in its tile's clustering.
REGION_MARGIN_UM = 100.0


def _hdbscan(points: np.ndarray, min_cluster_size: int, min_samples: int, method: str = "hdbscan") -> np.ndarray:
    """HDBSCAN labels of ``points``; all of them one cluster when they form a single group.

    HDBSCAN never returns its root as a cluster: the peaks of a tile that holds a single unit (on the
    Utah-like grid, one electrode's peaks) come back all noise. Allowing it one cluster does not help:
    it then returns a dense core of about ``min_cluster_size`` points and calls the rest noise, on a
    Gaussian blob as well. A clustering that finds no cluster therefore labels every point 0.
    """
    if len(points) < 2 * min_cluster_size:
        return np.zeros(len(points), dtype="int64")
    settings = dict(min_cluster_size=min_cluster_size, min_samples=min_samples, cluster_selection_method="eom")
    if method == "hdbscan":
        import hdbscan

        # core_dist_n_jobs=1: hdbscan's default starts 4 worker processes (~160 MiB each) that stay
        # alive for the rest of the sort; on a few low-dimensional features one core is fast enough.
        clusterer = hdbscan.HDBSCAN(**settings, core_dist_n_jobs=1)
    else:
        from sklearn.cluster import HDBSCAN

        clusterer = HDBSCAN(**settings, n_jobs=1, copy=True)
    labels = np.maximum(clusterer.fit_predict(points).astype("int64"), -1)  # scikit-learn's -2, -3: noise
    return labels if np.any(labels >= 0) else np.zeros(len(points), dtype="int64")


@dataclass(frozen=True)
class Region:
    """One tile of the probe.

    Attributes
    ----------
    members : np.ndarray
        Indices of the points clustered with this tile: inside it or within its margin.
    tile : tuple of int
        The tile's (column, row) index, to which ``tile_of`` maps a location inside it.
    """

    members: np.ndarray
    tile: tuple[int, int]


@dataclass(frozen=True)
class Tiling:
    """Tiles of at most ``region_um`` covering a set of locations.

    Attributes
    ----------
    origin : np.ndarray
        (2,) lowest x, y.
    size : np.ndarray
        (2,) tile width and height (um).
    shape : tuple of int
        Tiles along x and along y.
    """

    origin: np.ndarray
    size: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def covering(cls, locations: np.ndarray, region_um: float) -> Tiling:
        """Equal tiles of at most ``region_um`` on each side covering ``locations`` (n, 2)."""
        origin, span = locations.min(axis=0), np.ptp(locations, axis=0)
        shape = np.maximum(1, np.ceil(span / region_um)).astype(int)
        return cls(origin, np.maximum(span / shape, 1e-9), (int(shape[0]), int(shape[1])))

    def tile_of(self, locations: np.ndarray) -> np.ndarray:
        """(n, 2) tile index of each location (the last tile holds the far edge)."""
        index = np.floor((locations - self.origin) / self.size).astype(int)
        return np.clip(index, 0, np.array(self.shape) - 1)

    def regions(self, locations: np.ndarray, margin_um: float) -> list[Region]:
        """Each tile with the points inside it or within ``margin_um`` of it."""
        out = []
        for tile in np.ndindex(*self.shape):
            low = self.origin + np.array(tile) * self.size - margin_um
            high = low + self.size + 2 * margin_um
            inside = np.all((locations >= low) & (locations <= high), axis=1)
            out.append(Region(np.flatnonzero(inside), tile))
        return out


def spatial_regions(locations: np.ndarray, region_um: float,
                    margin_um: float = REGION_MARGIN_UM) -> tuple[Tiling, list[Region]]:
    """Cut the probe into tiles of at most ``region_um``, each with the points within ``margin_um`` of it.

    Parameters
    ----------
    locations : np.ndarray
        (n, 2) peak locations (um).
    region_um : float
        Largest tile side; 0 makes one tile of everything.
    margin_um : float, default: REGION_MARGIN_UM

    Returns
    -------
    tiling : Tiling
    regions : list of Region
    """
    if region_um < 0:
        raise ValueError(f"region_um must be >= 0, got {region_um}")
    span = float(np.ptp(locations, axis=0).max()) if len(locations) else 0.0
    tiling = Tiling.covering(locations, region_um if region_um > 0 else max(span, 1.0))
    return tiling, tiling.regions(locations, margin_um if region_um > 0 else 0.0)


def _regional_hdbscan(points: np.ndarray, locations: np.ndarray, region_um: float, min_cluster_size: int,
                      min_samples: int, extra: Callable[[np.ndarray], np.ndarray] | None = None,
                      method: str = "hdbscan") -> np.ndarray:
    """HDBSCAN labels of ``points`` clustered tile by tile (see the module docstring).

    ``extra(members)``, when given, returns more features of the points at ``members``, computed
    for each clustering's own points (a tile's, or all of them).
    """
    def clustered(members: np.ndarray) -> np.ndarray:
        chosen = points[members] if extra is None else np.concatenate([points[members], extra(members)], axis=1)
        return _hdbscan(chosen, min_cluster_size, min_samples, method)

    tiling, regions = spatial_regions(locations, region_um)
    if len(regions) == 1:
        return clustered(np.arange(len(points)))
    labels = np.full(len(points), -1, dtype="int64")
    nearest = np.full(len(points), np.inf)
    next_label = 0
    for region in regions:
        if len(region.members) < 2 * min_cluster_size:
            continue  # too few to cluster: noise unless a neighbouring tile's cluster claims them
        local = clustered(region.members)
        for label in np.unique(local[local >= 0]):
            members = region.members[local == label]
            centre = np.median(locations[members], axis=0)
            if tuple(tiling.tile_of(centre[None])[0]) != region.tile:
                continue
            distance = np.linalg.norm(locations[members] - centre, axis=1)
            claim = distance < nearest[members]
            labels[members[claim]], nearest[members[claim]] = next_label, distance[claim]
            next_label += 1
    return labels


def _principal_scores(matrix: np.ndarray, n_components: int) -> np.ndarray:
    centred = matrix - matrix.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    n_components = min(n_components, len(s))
    return u[:, :n_components] * s[:n_components]


def relay_on_neighbourhood(features: PeakFeatures, channels: np.ndarray, target_channel: int) -> np.ndarray:
    """Re-lay embeddings cut on each peak's own neighbourhood onto the neighbourhood of one channel.

    Parameters
    ----------
    features : PeakFeatures
    channels : np.ndarray
        Detection channel of each row of ``features``.
    target_channel : int
        Channel whose neighbourhood is the common layout.

    Returns
    -------
    np.ndarray
        (n, n_components, width); slots whose channel is absent from a peak's own
        neighbourhood are zero (the spike is far from them).
    """
    neighbours = features.neighbourhoods.indices
    target = neighbours[target_channel]
    own = neighbours[channels]  # (n, width)
    matches = (own[:, :, None] == target[None, None, :]) & (target[None, None, :] >= 0)  # (n, own slot, target slot)
    return np.einsum("nks,nst->nkt", features.embedding, matches.astype("float32"))


def cluster(
    features: PeakFeatures,
    peaks: np.ndarray,
    method: str = "hdbscan",
    min_cluster_size: int = 20,
    min_samples: int = 5,
    location_scale_um: float = 10.0,
    region_um: float = 0.0,
    split_components: int = 0,
    footprint_components: int = 0,
    split_bimodality: float = 0.0,
    footprint_bimodality: float = 0.0,
    footprint_radius_um: float = 40.0,
    channel_locations: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster peaks from their features.

    Parameters
    ----------
    features : PeakFeatures
        Features of ``peaks`` (same order).
    peaks : np.ndarray
        SpikeInterface peak array.
    method : {"hdbscan", "sklearn-hdbscan"}, default: "hdbscan"
        The HDBSCAN implementation: the hdbscan package or scikit-learn's.
    min_cluster_size : int, default: 20
        HDBSCAN's smallest cluster, also the smallest part a split may create.
    min_samples : int, default: 5
        HDBSCAN's density smoothing; larger values call more points noise.
    location_scale_um : float, default: 10.0
        Distance in micrometres that weighs as much as one standard deviation of the
        waveform features.
    region_um : float, default: 0.0
        Largest side (um) of the probe tiles clustered separately (0 = the whole probe at once).
    split_components : int, default: 0
        PCA dimensions of the split step (0 = no split step; measured on case M it lowered the
        clustering's adjusted Rand index, see ``docs/architecture.md``).
    footprint_components : int, default: 0
        Principal scores of the multi-channel embedding (``footprint_scores``) added to the
        features of each clustering (0 = none).
    split_bimodality : float, default: 0.0
        A cluster whose two k-means halves give a ``discriminant_bimodality`` of at least this
        (in (0, 1]) is split in two (0 = no discriminant split).
    footprint_bimodality : float, default: 0.0
        The same test on each cluster's ``trough_footprints`` (0 = no footprint split).
    footprint_radius_um : float, default: 40.0
        Channels at most this far from a cluster's centre make its trough footprints.
    channel_locations : np.ndarray or None, default: None
        (num_channels, 2) channel positions in um; needed by the footprint split.

    Returns
    -------
    np.ndarray
        int64 label per peak, -1 for noise; labels are 0..n_clusters-1.
    """
    check_choice("clustering method", method, CLUSTERING_METHODS)
    if len(features) != len(peaks):
        raise ValueError(f"features has {len(features)} rows but there are {len(peaks)} peaks")
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    if footprint_bimodality > 0 and (channel_locations is None or features.basis is None):
        raise ValueError("the footprint split needs channel_locations and features with a basis (a decoder)")
    if len(peaks) == 0:
        return np.zeros(0, dtype="int64")
    waveform = features.waveform_features()
    points = np.concatenate([features.locations / location_scale_um, waveform], axis=1)
    extra = None
    if footprint_components > 0:
        def extra(members: np.ndarray) -> np.ndarray:
            return footprint_scores(features, peaks["channel_index"], members, footprint_components)
    labels = _regional_hdbscan(points, features.locations, region_um, min_cluster_size, min_samples, extra, method)
    if split_components > 0:
        labels = _split_clusters(
            features, peaks["channel_index"], labels, min_cluster_size, min_samples, split_components, method
        )
    if split_bimodality > 0:
        labels = _discriminant_split(waveform, labels, min_cluster_size, split_bimodality)
    if footprint_bimodality > 0:
        labels = _footprint_split(features, peaks["channel_index"], labels, channel_locations, min_cluster_size,
                                  footprint_bimodality, footprint_radius_um)
    return _relabel(labels)


def lay_on_channels(features: PeakFeatures, channels: np.ndarray, members: np.ndarray,
                    target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peaks' neighbourhood embeddings placed in the columns of the ``target`` channels.

    Parameters
    ----------
    features : PeakFeatures
    channels : np.ndarray
        Detection channel of every peak of ``features``.
    members : np.ndarray
        Indices of the peaks to lay.
    target : np.ndarray
        Channel indices, one column each.

    Returns
    -------
    laid : np.ndarray
        float32 (len(members), n_components, len(target)); zero where a target channel is outside
        the peak's own neighbourhood.
    covered : np.ndarray
        bool (len(members), len(target)): the target channels each peak's neighbourhood holds.
    """
    slots = features.neighbourhoods.indices[channels[members]]  # (members, width): channel of each slot, -1 = none
    column = np.full(features.neighbourhoods.indices.shape[0] + 1, -1)
    column[target] = np.arange(len(target))
    rows, filled = np.nonzero(column[slots] >= 0)  # slots == -1 read column[-1], which is -1
    columns = column[slots[rows, filled]]
    embedding = features.embedding[members]
    laid = np.zeros((len(members), embedding.shape[1], len(target)), dtype="float32")
    covered = np.zeros((len(members), len(target)), dtype=bool)
    laid[rows, :, columns] = embedding[rows, :, filled]
    covered[rows, columns] = True
    return laid, covered


def footprint_scores(features: PeakFeatures, channels: np.ndarray, members: np.ndarray,
                     n_components: int) -> np.ndarray:
    """Principal scores of peaks' neighbourhood embeddings laid on the channels the peaks cover.

    Each peak's embedding (components x its neighbourhood's slots) is placed in the columns of
    the channels its slots hold, zero on the other channels the members cover, so that peaks
    detected on different channels of one unit are compared channel by channel; the matrix's
    principal scores are scaled to unit spread along the first.

    Parameters
    ----------
    features : PeakFeatures
    channels : np.ndarray
        Detection channel of every peak of ``features``.
    members : np.ndarray
        Indices of the peaks to score.
    n_components : int

    Returns
    -------
    np.ndarray
        float (len(members), min(n_components, available)).
    """
    slots = features.neighbourhoods.indices[channels[members]]  # (members, width): channel of each slot, -1 = none
    laid, _ = lay_on_channels(features, channels, members, np.unique(slots[slots >= 0]))
    scores = _principal_scores(laid.reshape(len(members), -1), n_components)
    return scores / (float(np.std(scores[:, 0])) or 1.0)


def _split_each(labels: np.ndarray, min_cluster_size: int, split: Callable[[np.ndarray], np.ndarray],
                recursive: bool = False) -> np.ndarray:
    """``labels`` with each cluster of at least ``2 * min_cluster_size`` members cut into the parts ``split`` finds.

    ``split(members)`` returns a local label per member (-1 = noise); a cluster is replaced by its
    parts (its noise becomes noise) when there are two or more, and left whole otherwise. With
    ``recursive``, every part is tested again, until no part splits: a cluster of three units that
    one cut divides into one unit and two is cut again.
    """
    out = labels.copy()
    next_label = labels.max() + 1
    pending = deque(int(label) for label in np.unique(labels[labels >= 0]))  # first in, first out
    while pending:
        members = np.flatnonzero(out == pending.popleft())
        if len(members) < 2 * min_cluster_size:
            continue
        local = split(members)
        parts = np.unique(local[local >= 0])
        if len(parts) < 2:
            continue
        out[members] = -1
        for part in parts:
            out[members[local == part]] = next_label
            if recursive:
                pending.append(next_label)
            next_label += 1
    return out


def _split_clusters(features, channels, labels, min_cluster_size, min_samples, n_components, method) -> np.ndarray:
    def split(members: np.ndarray) -> np.ndarray:
        centre = int(np.bincount(channels[members]).argmax())
        relaid = relay_on_neighbourhood(features.subset(members), channels[members], centre)
        return _hdbscan(_principal_scores(relaid.reshape(len(members), -1), n_components), min_cluster_size,
                        min_samples, method)

    return _split_each(labels, min_cluster_size, split)


def discriminant_bimodality(points: np.ndarray) -> tuple[float, np.ndarray]:
    """How bimodal a cluster is along the discriminant of its two k-means halves.

    The points are cut in two by k-means, projected on the Fisher discriminant of the two halves,
    and the projection's smoothed histogram scored: 1 - (its lowest point between the two halves'
    modes) / (the lower mode); 0 = unimodal, 1 = two separate groups.

    Parameters
    ----------
    points : np.ndarray
        (n, dimensions) features of the cluster's members.

    Returns
    -------
    score : float
        0 when a half has fewer than 3 points.
    halves : np.ndarray
        (n,) 0 or 1: the k-means half of each point.
    """
    halves = _kmeans_halves(points)
    first, second = points[halves == 0], points[halves == 1]
    if min(len(first), len(second)) < 3:
        return 0.0, halves
    pooled = (np.atleast_2d(np.cov(first.T)) * (len(first) - 1)
              + np.atleast_2d(np.cov(second.T)) * (len(second) - 1))
    direction = np.linalg.solve(pooled / (len(points) - 2) + 1e-6 * np.eye(len(pooled)),
                                first.mean(axis=0) - second.mean(axis=0))
    projection = points @ direction
    boundary = float((first.mean(axis=0) + second.mean(axis=0)) @ direction / 2)
    counts, edges = np.histogram(projection, bins=int(np.clip(np.sqrt(len(projection)), 20, 100)))
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    counts = np.convolve(counts, kernel / kernel.sum(), mode="same")
    centres = (edges[1:] + edges[:-1]) / 2
    left, right = np.flatnonzero(centres < boundary), np.flatnonzero(centres >= boundary)
    if len(left) == 0 or len(right) == 0:
        return 0.0, halves
    low, high = left[np.argmax(counts[left])], right[np.argmax(counts[right])]
    return float(1.0 - counts[low:high + 1].min() / min(counts[low], counts[high])), halves


def _kmeans_halves(points: np.ndarray) -> np.ndarray:
    """0 or 1 per point: its half in a k-means cut in two (seeded, so the same points give the same cut)."""
    from sklearn.cluster import KMeans

    return KMeans(2, n_init=3, random_state=0).fit_predict(points)


def _bimodal_halves(points: np.ndarray, min_cluster_size: int, threshold: float) -> np.ndarray | None:
    """The k-means halves of ``points`` when they are bimodal enough and each holds ``min_cluster_size``, else None."""
    score, halves = discriminant_bimodality(points)
    if score >= threshold and np.bincount(halves, minlength=2).min() >= min_cluster_size:
        return halves
    return None


def _discriminant_split(points: np.ndarray, labels: np.ndarray, min_cluster_size: int,
                        threshold: float) -> np.ndarray:
    """``labels`` with every cluster whose ``discriminant_bimodality`` reaches ``threshold`` cut in two."""
    def split(members: np.ndarray) -> np.ndarray:
        halves = _bimodal_halves(points[members], min_cluster_size, threshold)
        return np.zeros(len(members), dtype="int64") if halves is None else halves

    return _split_each(labels, min_cluster_size, split)


def trough_footprints(features: PeakFeatures, channels: np.ndarray, members: np.ndarray,
                      channel_locations: np.ndarray, radius_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Each member's amplitude at the cluster's trough on every channel near the cluster's centre.

    The centre is the members' most common detection channel; on each channel within
    ``radius_um`` of it, the trough is the sample where the members' mean waveform (their mean
    embedding decoded by the features' basis) is lowest, and a member's amplitude there is read
    from its own decoded waveform. Two units a few tens of um apart with alike main-channel
    waveforms differ in these footprints.

    Parameters
    ----------
    features : PeakFeatures
        Features with a ``basis``.
    channels : np.ndarray
        Detection channel of every peak of ``features``.
    members : np.ndarray
        Indices of the cluster's peaks.
    channel_locations : np.ndarray
        (num_channels, 2) positions in um.
    radius_um : float

    Returns
    -------
    amplitudes : np.ndarray
        float32 (len(members), channels near the centre).
    covered : np.ndarray
        bool, same shape: False where the channel is outside the member's own neighbourhood
        (its amplitude there is meaningless).
    """
    locations = np.asarray(channel_locations, dtype="float64")[:, :2]
    centre = int(np.bincount(channels[members]).argmax())
    near = np.flatnonzero(np.linalg.norm(locations - locations[centre], axis=1) <= radius_um)
    laid, covered = lay_on_channels(features, channels, members, near)
    basis = features.basis
    mean = laid.sum(axis=0) / np.maximum(covered.sum(axis=0), 1)  # (components, near)
    trough = basis.inverse_transform(mean.T).argmin(axis=1)  # (near,)
    amplitudes = basis.mean[trough] + np.einsum("nkc,kc->nc", laid, basis.components[:, trough])
    return amplitudes.astype("float32"), covered


def _footprint_split(features: PeakFeatures, channels: np.ndarray, labels: np.ndarray,
                     channel_locations: np.ndarray, min_cluster_size: int, threshold: float,
                     radius_um: float) -> np.ndarray:
    """``labels`` with every cluster whose trough footprints are bimodal enough cut in two, and each half tested again.

    The test runs on the members whose neighbourhood covers every channel near the centre; the
    others join the half whose mean footprint is nearer on the channels they cover. On a sparse probe,
    where only the cluster's own channel is near its centre, the footprint is the amplitude there: two
    units of one shape on one electrode differ in nothing else.
    """
    def split(members: np.ndarray) -> np.ndarray:
        amplitudes, covered = trough_footprints(features, channels, members, channel_locations, radius_um)
        complete = covered.all(axis=1)
        halves = None
        if complete.sum() >= 2 * min_cluster_size:
            halves = _bimodal_halves(amplitudes[complete], min_cluster_size, threshold)
        if halves is None:
            return np.zeros(len(members), dtype="int64")
        centroids = np.stack([amplitudes[complete][halves == half].mean(axis=0) for half in (0, 1)])
        distances = ((amplitudes[:, None, :] - centroids[None]) ** 2 * covered[:, None, :]).sum(axis=2)
        local = distances.argmin(axis=1)
        local[complete] = halves
        return local

    return _split_each(labels, min_cluster_size, split, recursive=True)


def drop_weaker_halves(features: PeakFeatures, channels: np.ndarray, labels: np.ndarray, clusters: np.ndarray,
                       channel_locations: np.ndarray, radius_um: float, min_cluster_size: int) -> np.ndarray:
    """``labels`` with the weaker k-means half of each of ``clusters`` made noise.

    Each cluster's members are cut in two by k-means on their trough footprints
    (``trough_footprints``, zero on the channels a member's neighbourhood lacks); the half whose
    mean absolute footprint is smaller becomes noise when the other holds at least
    ``min_cluster_size`` members. Noise crossings that share a cluster with a small unit's spikes
    pull its template below the threshold that keeps it; the stronger half carries the unit.

    Parameters
    ----------
    features : PeakFeatures
        Features with a ``basis``, one row per peak.
    channels : np.ndarray
        Detection channel of every peak.
    labels : np.ndarray
        Cluster of every peak (-1 = noise).
    clusters : np.ndarray
        The labels to cut.
    channel_locations : np.ndarray
        (num_channels, 2) positions in um.
    radius_um : float
        Channels this near a cluster's centre make its footprints.
    min_cluster_size : int

    Returns
    -------
    np.ndarray
        A copy of ``labels``; every cluster keeps its label (its stronger half) or is left whole.
    """
    out = labels.copy()
    for label in clusters:
        members = np.flatnonzero(labels == label)
        if len(members) < 2 * min_cluster_size:
            continue
        amplitudes, covered = trough_footprints(features, channels, members, channel_locations, radius_um)
        footprints = np.where(covered, amplitudes, 0.0)
        halves = _kmeans_halves(footprints)
        strength = [np.abs(footprints[halves == half]).mean() for half in (0, 1)]
        weaker = int(np.argmin(strength))
        if np.sum(halves != weaker) >= min_cluster_size:
            out[members[halves == weaker]] = -1
    return out


def _relabel(labels: np.ndarray) -> np.ndarray:
    out = np.full(len(labels), -1, dtype="int64")
    found, inverse = np.unique(labels[labels >= 0], return_inverse=True)
    out[labels >= 0] = inverse
    return out

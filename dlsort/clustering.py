"""Clustering stage: HDBSCAN on peak features, with an optional split step.

``cluster(features, peaks, ...)`` returns one label per peak (-1 = noise):

1. HDBSCAN on globally comparable features: the peak location and the waveform features
   (``PeakFeatures.waveform_features``: the learned embedding of the neighbourhood snippet, or the
   temporal PCA of the detection channel), each scaled to unit spread.
2. Optional split (``split_components > 0``): every cluster is re-clustered on its whole
   channel neighbourhood (the embedding of each member re-laid on the neighbourhood of the
   cluster's most common channel), in its own PCA space; it is split when HDBSCAN finds two or
   more well-populated modes.

Over-split units are merged later by template similarity (``dlsort.templates.merge_similar``).
"""

from __future__ import annotations

import numpy as np

from dlsort.errors import check_choice
from dlsort.features import PeakFeatures

CLUSTERING_METHODS = ("hdbscan",)


def _hdbscan(points: np.ndarray, min_cluster_size: int, min_samples: int) -> np.ndarray:
    import hdbscan

    if len(points) < 2 * min_cluster_size:
        return np.zeros(len(points), dtype="int64")
    # core_dist_n_jobs=1: hdbscan's default starts 4 worker processes (~160 MiB each) that stay
    # alive for the rest of the sort; on a few low-dimensional features one core is fast enough.
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size, min_samples=min_samples, cluster_selection_method="eom", core_dist_n_jobs=1
    )
    return clusterer.fit_predict(points).astype("int64")


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
    split_components: int = 0,
) -> np.ndarray:
    """Cluster peaks from their features.

    Parameters
    ----------
    features : PeakFeatures
        Features of ``peaks`` (same order).
    peaks : np.ndarray
        SpikeInterface peak array.
    method : {"hdbscan"}, default: "hdbscan"
    min_cluster_size : int, default: 20
        HDBSCAN's smallest cluster, also the smallest part a split may create.
    min_samples : int, default: 5
        HDBSCAN's density smoothing; larger values call more points noise.
    location_scale_um : float, default: 10.0
        Distance in micrometres that weighs as much as one standard deviation of the
        waveform features.
    split_components : int, default: 0
        PCA dimensions of the split step (0 = no split step; measured on case M it lowered the
        clustering's adjusted Rand index, see ``docs/architecture.md``).

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
    if len(peaks) == 0:
        return np.zeros(0, dtype="int64")
    points = np.concatenate([features.locations / location_scale_um, features.waveform_features()], axis=1)
    labels = _hdbscan(points, min_cluster_size, min_samples)
    if split_components > 0:
        labels = _split_clusters(
            features, peaks["channel_index"], labels, min_cluster_size, min_samples, split_components
        )
    return _relabel(labels)


def _split_clusters(features, channels, labels, min_cluster_size, min_samples, n_components) -> np.ndarray:
    out = labels.copy()
    next_label = labels.max() + 1
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        if len(members) < 2 * min_cluster_size:
            continue
        centre = int(np.bincount(channels[members]).argmax())
        relaid = relay_on_neighbourhood(features.subset(members), channels[members], centre)
        local = _hdbscan(
            _principal_scores(relaid.reshape(len(members), -1), n_components), min_cluster_size, min_samples
        )
        parts = np.unique(local[local >= 0])
        if len(parts) < 2:
            continue
        out[members] = -1
        for part in parts:
            out[members[local == part]] = next_label
            next_label += 1
    return out


def _relabel(labels: np.ndarray) -> np.ndarray:
    out = np.full(len(labels), -1, dtype="int64")
    found, inverse = np.unique(labels[labels >= 0], return_inverse=True)
    out[labels >= 0] = inverse
    return out

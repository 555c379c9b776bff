"""Local channel neighbourhoods from probe geometry, and waveform snippets on them.

A neighbourhood is the list of channels within ``radius_um`` of a centre channel, ordered by
distance (the centre first) and padded with ``-1`` to a common width. Every snippet is cut on
the neighbourhood of the peak's channel, so networks and features see the same layout on any
probe; padded positions are zero and flagged by a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from spikeinterface.core.node_pipeline import WaveformsNode


@dataclass(frozen=True)
class Neighbourhoods:
    """Distance-ordered channel neighbourhoods of every channel.

    Attributes
    ----------
    indices : np.ndarray
        int64 (num_channels, width): neighbour channel indices, nearest first, ``-1`` = padding.
    radius_um : float
        Radius used to build them.
    """

    indices: np.ndarray
    radius_um: float

    @property
    def width(self) -> int:
        """Number of slots per neighbourhood."""
        return self.indices.shape[1]

    @property
    def mask(self) -> np.ndarray:
        """bool (num_channels, width): True where a slot holds a real channel."""
        return self.indices >= 0

    def relative_positions(self, channel_locations: np.ndarray) -> np.ndarray:
        """float32 (num_channels, width, 2): each slot's position minus its centre's (0 for padding), in um."""
        locations = np.asarray(channel_locations, dtype="float64")[:, :2]
        relative = locations[np.maximum(self.indices, 0)] - locations[:, None, :]
        return (relative * self.mask[..., None]).astype("float32")


def build_neighbourhoods(channel_locations: np.ndarray, radius_um: float,
                         max_width: int | None = None) -> Neighbourhoods:
    """Build distance-ordered neighbourhoods from channel locations.

    Parameters
    ----------
    channel_locations : np.ndarray
        (num_channels, 2 or 3) positions in micrometres.
    radius_um : float
        Channels at most this far from the centre belong to its neighbourhood.
    max_width : int or None
        Keep at most this many channels (the nearest) per neighbourhood; the width is then
        exactly ``max_width`` (padded), as networks with a fixed number of slots need.

    Returns
    -------
    Neighbourhoods
    """
    locations = np.asarray(channel_locations, dtype="float64")
    if locations.ndim != 2 or locations.shape[0] == 0:
        raise ValueError(
            f"channel_locations must be (num_channels, ndim) with num_channels >= 1, got {locations.shape}"
        )
    if radius_um <= 0:
        raise ValueError(f"radius_um must be > 0, got {radius_um}")
    distances = np.linalg.norm(locations[:, None, :] - locations[None, :, :], axis=2)
    order = np.argsort(distances, axis=1, kind="stable")
    sorted_distances = np.take_along_axis(distances, order, axis=1)
    inside = sorted_distances <= radius_um
    width = int(inside.sum(axis=1).max()) if max_width is None else int(max_width)
    indices = np.where(inside, order, -1)[:, :width].astype("int64")
    if indices.shape[1] < width:
        indices = np.pad(indices, ((0, 0), (0, width - indices.shape[1])), constant_values=-1)
    return Neighbourhoods(indices=indices, radius_um=float(radius_um))


def cut_snippets(
    traces: np.ndarray,
    sample_indices: np.ndarray,
    centre_channels: np.ndarray,
    neighbourhoods: Neighbourhoods,
    nbefore: int,
    nafter: int,
) -> np.ndarray:
    """Cut snippets on the neighbourhood of each centre channel, without a Python loop.

    Parameters
    ----------
    traces : np.ndarray
        (num_samples, num_channels) chunk of traces.
    sample_indices : np.ndarray
        Peak sample of each snippet, relative to ``traces``; ``nbefore`` samples before and
        ``nafter`` after must lie inside ``traces``.
    centre_channels : np.ndarray
        Channel index of each snippet's neighbourhood centre.
    neighbourhoods : Neighbourhoods
    nbefore, nafter : int
        Samples before (excluded peak) and from the peak on (included).

    Returns
    -------
    np.ndarray
        float32 (num_snippets, nbefore + nafter, width); padded slots are zero.
    """
    times = np.asarray(sample_indices)[:, None] + np.arange(-nbefore, nafter)[None, :]
    channels = neighbourhoods.indices[np.asarray(centre_channels)]
    valid = channels >= 0
    snippets = traces[times[:, :, None], np.where(valid, channels, 0)[:, None, :]].astype("float32", copy=False)
    snippets *= valid[:, None, :]
    return snippets


class NeighbourhoodWaveforms(WaveformsNode):
    """Pipeline node that cuts each peak's snippet on its distance-ordered neighbourhood.

    Parameters
    ----------
    recording : BaseRecording
    parents : list
        The peak source node.
    neighbourhoods : Neighbourhoods
    ms_before, ms_after : float
        Window around the peak.
    """

    def __init__(self, recording, parents, neighbourhoods: Neighbourhoods, ms_before: float, ms_after: float):
        WaveformsNode.__init__(
            self, recording, parents=parents, ms_before=ms_before, ms_after=ms_after, return_output=False
        )
        self.neighbourhoods = neighbourhoods
        self._kwargs.update(neighbourhoods=neighbourhoods)

    def get_margin(self) -> int:
        return max(self.nbefore, self.nafter)

    def get_dtype(self):
        return np.dtype("float32")

    def compute(self, traces, peaks):
        return cut_snippets(
            traces, peaks["sample_index"], peaks["channel_index"], self.neighbourhoods, self.nbefore, self.nafter
        )

"""Probe geometry: the family a probe belongs to (so models can say which probes they serve), and
the placement of its channels on a rectangular grid (for networks that read the probe as an image):
from the contact positions, or DeepInterpolation's fixed checkerboard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROBE_FAMILIES = ("neuropixels-1.0", "neuropixels-2.0", "linear", "polytrode", "tetrode", "utah", "mea")


def _pitch(values: np.ndarray) -> float | None:
    """The spacing of equally spaced sorted unique values, or None if they are not equally spaced."""
    steps = np.diff(np.unique(np.round(values, 1)))
    if steps.size == 0 or np.ptp(steps) > 0.5:
        return None
    return float(steps[0])


def probe_family(locations: np.ndarray, shank_ids: np.ndarray | None = None) -> str:
    """Classify a probe from its contact positions.

    Parameters
    ----------
    locations : np.ndarray
        (num_channels, 2) contact positions in um (x across the shank, y along it).
    shank_ids : np.ndarray or None
        Shank of each contact; a multi-shank probe is classified by its first shank.

    Returns
    -------
    str
        One of ``PROBE_FAMILIES``: ``"tetrode"`` (4 contacts within 60 um), ``"utah"`` / ``"mea"``
        (a full square grid of at least 4 x 4 contacts with pitch >= / < 200 um),
        ``"neuropixels-1.0"`` (4 columns over 48 um, 20 um rows), ``"neuropixels-2.0"`` (2 columns
        32 um apart, 15 um rows), ``"linear"`` (one column), otherwise ``"polytrode"``.
    """
    locations = np.asarray(locations, dtype="float64")
    if locations.ndim != 2 or locations.shape[1] < 2 or len(locations) == 0:
        raise ValueError(f"locations must be a (num_channels, 2) array, got shape {locations.shape}")
    if shank_ids is not None and len(np.unique(shank_ids)) > 1:
        shank_ids = np.asarray(shank_ids)
        locations = locations[shank_ids == np.unique(shank_ids)[0]]
    x, y = locations[:, 0], locations[:, 1]
    columns, rows = np.unique(np.round(x, 1)), np.unique(np.round(y, 1))
    if len(locations) == 4 and np.ptp(x) <= 60 and np.ptp(y) <= 60:
        return "tetrode"
    if len(columns) == 1:
        return "linear"
    x_pitch, y_pitch = _pitch(x), _pitch(y)
    if len(columns) >= 4 and len(rows) >= 4 and len(columns) * len(rows) == len(locations):
        if x_pitch is not None and y_pitch is not None and abs(x_pitch - y_pitch) < 0.5:
            return "utah" if x_pitch >= 200 else "mea"
    if len(columns) == 4 and abs(np.ptp(x) - 48) < 1 and y_pitch is not None and abs(y_pitch - 20) < 0.5:
        return "neuropixels-1.0"
    if len(columns) == 2 and abs(np.ptp(x) - 32) < 1 and y_pitch is not None and abs(y_pitch - 15) < 0.5:
        return "neuropixels-2.0"
    return "polytrode"


@dataclass(frozen=True)
class ProbeGrid:
    """Channels placed on a grid of the probe's distinct x (columns) and y (rows) positions.

    A Neuropixels 1.0 probe becomes 4 columns by 192 rows with every other cell empty, a 2.0
    probe 2 by 192, a linear probe one column, a Utah array its square. Empty cells are masked.

    Attributes
    ----------
    rows, columns : np.ndarray
        (num_channels,) int, the cell of each channel.
    shape : tuple of int
        (num_rows, num_columns).
    """

    rows: np.ndarray
    columns: np.ndarray
    shape: tuple[int, int]

    @property
    def mask(self) -> np.ndarray:
        """(num_rows, num_columns) bool, True where a channel sits."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.rows, self.columns] = True
        return mask

    def to_grid(self, traces: np.ndarray) -> np.ndarray:
        """(samples, num_channels) traces as (samples, num_rows, num_columns), zero in empty cells."""
        grid = np.zeros((traces.shape[0], *self.shape), dtype=traces.dtype)
        grid[:, self.rows, self.columns] = traces
        return grid

    def from_grid(self, grid: np.ndarray) -> np.ndarray:
        """(samples, num_rows, num_columns) back to (samples, num_channels), in channel order."""
        return grid[:, self.rows, self.columns]


def _positions_to_indices(values: np.ndarray, tolerance_um: float) -> tuple[np.ndarray, int]:
    """Group sorted distinct positions closer than ``tolerance_um``; the group index of each value."""
    order = np.argsort(values, kind="stable")
    starts_group = np.concatenate([[True], np.diff(values[order]) > tolerance_um])
    indices = np.empty(len(values), dtype="int64")
    indices[order] = np.cumsum(starts_group) - 1
    return indices, int(starts_group.sum())


def probe_grid(locations: np.ndarray, tolerance_um: float = 1.0) -> ProbeGrid:
    """Place every channel on the grid of the probe's distinct x and y positions.

    Parameters
    ----------
    locations : np.ndarray
        (num_channels, 2) contact positions in um.
    tolerance_um : float, default: 1.0
        Positions closer than this along an axis share a column (x) or row (y).

    Returns
    -------
    ProbeGrid

    Raises
    ------
    ValueError
        Locations not (num_channels, 2) or not finite, or two channels in one cell (the
        error names them).
    """
    locations = np.asarray(locations, dtype="float64")
    if locations.ndim != 2 or locations.shape[1] < 2 or len(locations) == 0:
        raise ValueError(f"locations must be a (num_channels, 2) array, got shape {locations.shape}")
    if not np.isfinite(locations[:, :2]).all():
        raise ValueError("channel locations contain NaN or infinite values; set the probe's contact positions")
    columns, num_columns = _positions_to_indices(locations[:, 0], tolerance_um)
    rows, num_rows = _positions_to_indices(locations[:, 1], tolerance_um)
    cells = rows * num_columns + columns
    distinct, counts = np.unique(cells, return_counts=True)
    if (counts > 1).any():
        shared = distinct[counts > 1][0]
        channels = np.flatnonzero(cells == shared).tolist()
        raise ValueError(f"channels {channels} share a grid cell (positions within {tolerance_um} um on both axes); "
                         "give them distinct contact positions")
    return ProbeGrid(rows, columns, (num_rows, num_columns))


def checkerboard_grid(num_channels: int) -> ProbeGrid:
    """DeepInterpolation's Neuropixels layout: channel c at row c and column c % 2 of a ``num_channels`` x 2 grid.

    The Allen Institute's ``unet_single_ephys_1024`` reads 384 channels so, the other cell of each
    row empty: a 2-column image approximating the staggered four-column Neuropixels 1.0 probe from
    the channel order alone (no contact positions needed).

    Parameters
    ----------
    num_channels : int

    Returns
    -------
    ProbeGrid
    """
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    channels = np.arange(num_channels)
    return ProbeGrid(channels, channels % 2, (num_channels, 2))

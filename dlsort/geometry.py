"""Probe families recognised from channel locations, so models can say which probes they serve."""

from __future__ import annotations

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

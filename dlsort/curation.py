"""Clean-up after template matching: drop ghost units and duplicates.

Template matching can give a template almost no spikes (a cluster that was noise) or let a
weaker template explain the residual of a stronger one at the same instants (a duplicate).
Both are removed here, from the spike trains alone.
"""

from __future__ import annotations

import numpy as np


def coincidence_fractions(
    samples: np.ndarray, segments: np.ndarray, units: np.ndarray, num_units: int, window: int
) -> np.ndarray:
    """Fraction of each unit's spikes that have a spike of another unit within ``window`` samples.

    Parameters
    ----------
    samples, segments, units : np.ndarray
        Spike times (samples), segment and unit of every spike.
    num_units : int
    window : int
        Coincidence window in samples (inclusive).

    Returns
    -------
    np.ndarray
        (num_units, num_units): entry [a, b] = share of unit a's spikes with a unit-b spike in
        the window (a spike counts once per other unit).
    """
    order = np.lexsort((samples, segments))
    samples, segments, units = samples[order], segments[order], units[order]
    spike_ids, partners = [np.zeros(0, "int64")], [np.zeros(0, "int64")]
    for offset in range(1, len(samples)):
        close = (samples[offset:] - samples[:-offset] <= window) & (segments[offset:] == segments[:-offset])
        if not close.any():
            break
        first = np.flatnonzero(close)
        second = first + offset
        spike_ids += [first, second]
        partners += [units[second], units[first]]
    pairs = np.unique(np.stack([np.concatenate(spike_ids), np.concatenate(partners)], axis=1), axis=0)
    pairs = pairs[units[pairs[:, 0]] != pairs[:, 1]]
    hits = np.zeros((num_units, num_units))
    np.add.at(hits, (units[pairs[:, 0]], pairs[:, 1]), 1)
    counts = np.bincount(units, minlength=num_units)
    return hits / np.maximum(counts, 1)[:, None]


def remove_ghosts_and_duplicates(
    samples: np.ndarray,
    segments: np.ndarray,
    units: np.ndarray,
    amplitudes: np.ndarray,
    min_spikes: int,
    window: int,
    max_coincidence: float = 0.5,
) -> np.ndarray:
    """Units to keep after matching.

    Parameters
    ----------
    samples, segments, units : np.ndarray
        Matched spikes.
    amplitudes : np.ndarray
        Peak amplitude of each unit's template (num_units,).
    min_spikes : int
        Units with fewer spikes are dropped.
    window : int
        Coincidence window in samples.
    max_coincidence : float, default: 0.5
        A unit more than this share of whose spikes coincide with a unit of larger amplitude is
        a duplicate and is dropped.

    Returns
    -------
    np.ndarray
        bool (num_units,): True for the units kept.
    """
    num_units = len(amplitudes)
    keep = np.bincount(units, minlength=num_units) >= min_spikes
    fractions = coincidence_fractions(samples, segments, units, num_units, window)
    larger = amplitudes[None, :] > amplitudes[:, None]
    keep &= ~np.any((fractions > max_coincidence) & larger & keep[None, :], axis=1)
    return keep

"""Locally exclusive peaks: the largest score within a time window and a channel neighbourhood.

A peak is a (sample, channel) whose score is the largest within ``exclude`` samples on every
channel of its exclusion neighbourhood (a tie with the previous sample of the same channel goes
to the earlier one, so a plateau gives one peak), as SpikeInterface's locally exclusive
detector. ``pick_peaks`` applies the rule to a dense (num_channels, num_samples) score map;
``exclusive_maxima`` to a sparse set of scored entries (candidate troughs, network logits at
candidates), at a cost that grows with the entries, not with the chunk. ``far_field_peaks``
finds the peaks that a much deeper peak further away may explain (used by the neural detector).
``ThresholdPeakDetector``
is the threshold detector built on them: a SpikeInterface peak-detection node in numpy, with no
just-in-time compilation to wait for.
"""

from __future__ import annotations

import numpy as np
from spikeinterface.core.node_pipeline import PeakDetector, base_peak_dtype

from dlsort.errors import PEAK_SIGNS, check_choice
from dlsort.waveforms import Neighbourhoods, build_neighbourhoods


def candidate_troughs(traces: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Channels and samples of the local minima below ``-threshold`` of (num_samples, num_channels) traces.

    A trough is strictly below the previous sample and at most the next one (a flat bottom gives its first sample).
    """
    inner = traces[1:-1]
    trough = (inner <= -threshold) & (inner < traces[:-2]) & (inner <= traces[2:])
    samples, channels = np.nonzero(trough)
    return channels, samples + 1


def pick_peaks(logits: np.ndarray, threshold: float, exclude: int,
               exclusion: Neighbourhoods) -> tuple[np.ndarray, np.ndarray]:
    """Locally exclusive maxima of a dense (num_channels, num_samples) score map above ``threshold``.

    A sample of a channel is a peak when its score is at least ``threshold``, strictly above the
    previous sample's (so a plateau gives one peak) and the largest within ``exclude`` samples
    on every channel of ``exclusion[channel]``. ``exclusive_maxima`` is the same rule on a sparse
    set of entries.

    Returns
    -------
    samples, channels : np.ndarray
        int64 indices of the peaks, sorted by sample then channel.
    """
    from scipy.ndimage import maximum_filter1d

    over_time = maximum_filter1d(logits, size=2 * exclude + 1, axis=1, mode="constant", cval=-np.inf)
    padded = np.concatenate([over_time, np.full((1, logits.shape[1]), -np.inf, dtype=over_time.dtype)])
    slots = np.where(exclusion.mask, exclusion.indices, len(logits))
    local_max = padded[slots[:, 0]]
    for column in slots.T[1:]:
        np.maximum(local_max, padded[column], out=local_max)
    rising = np.ones_like(logits, dtype=bool)
    rising[:, 1:] = logits[:, 1:] > logits[:, :-1]
    channels, samples = np.nonzero((logits >= threshold) & (logits >= local_max) & rising)
    order = np.lexsort((channels, samples))
    return samples[order].astype("int64"), channels[order].astype("int64")


def exclusion_adjacency(exclusion: Neighbourhoods) -> np.ndarray:
    """bool (num_channels, num_channels): True where the column's channel is in the row's exclusion neighbourhood."""
    num_channels = len(exclusion.indices)
    adjacency = np.zeros((num_channels, num_channels), dtype=bool)
    rows, slots = np.nonzero(exclusion.mask)
    adjacency[rows, exclusion.indices[rows, slots]] = True
    return adjacency


def pairs_within(samples: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair ``(i, j)`` of entries with ``lo <= samples[j] - samples[i] <= hi`` (``i == j`` included).

    ``samples`` must be sorted; the cost grows with the number of pairs, not with the samples spanned.
    """
    first = np.searchsorted(samples, samples + lo, side="left")
    last = np.searchsorted(samples, samples + hi, side="right")
    counts = np.maximum(last - first, 0)
    i = np.repeat(np.arange(len(samples)), counts)
    j = first[i] + np.arange(len(i)) - np.repeat(np.cumsum(counts) - counts, counts)
    return i, j


def exclusive_maxima(samples: np.ndarray, channels: np.ndarray, scores: np.ndarray, exclude: int,
                     adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Locally exclusive maxima of a sparse set of scored (sample, channel) entries.

    The rule of ``pick_peaks``, where every sample that is not an entry scores minus infinity:
    an entry is a peak unless an entry within ``exclude`` samples on a channel of its exclusion
    neighbourhood scores higher, or the previous sample of its own channel scores the same.
    Entries must be unique (one score per sample and channel).

    Parameters
    ----------
    samples, channels : np.ndarray
        int (num_entries,) positions of the entries.
    scores : np.ndarray
        (num_entries,) their scores.
    exclude : int
        Half-width of the exclusion window in samples.
    adjacency : np.ndarray
        ``exclusion_adjacency`` of the exclusion neighbourhoods.

    Returns
    -------
    samples, channels : np.ndarray
        int64 positions of the peaks, sorted by sample then channel.
    """
    order = np.lexsort((channels, samples))
    s, c, v = samples[order].astype("int64"), channels[order].astype("int64"), scores[order]
    i, j = pairs_within(s, -exclude, exclude)
    previous_tie = (v[j] == v[i]) & (c[j] == c[i]) & (s[j] == s[i] - 1)
    beaten = adjacency[c[i], c[j]] & ((v[j] > v[i]) | previous_tie)
    peak = np.bincount(i[beaten], minlength=len(s)) == 0
    return s[peak], c[peak]


def far_field_peaks(samples: np.ndarray, channels: np.ndarray, depths: np.ndarray, distances: np.ndarray,
                    ratio: float, inner_um: float, outer_um: float, before: int, after: int) -> np.ndarray:
    """Which peaks may be the far field of a much deeper peak on a channel further away.

    A peak is far field when another peak at least ``ratio`` times deeper lies on a channel more
    than ``inner_um`` and at most ``outer_um`` away, from ``before`` samples after it to
    ``after`` samples before it (a large spike's trough reaches distant contacts attenuated and
    up to a few tenths of a millisecond later, or slightly earlier). Inside ``inner_um`` the
    locally exclusive rule has already decided.

    Parameters
    ----------
    samples, channels : np.ndarray
        int positions of the peaks, sorted by sample.
    depths : np.ndarray
        Depth of each peak's trough in noise levels (positive).
    distances : np.ndarray
        (num_channels, num_channels) distances between channels in um.
    ratio : float
        How many times deeper the other peak must be.
    inner_um, outer_um : float
        The ring of distances the rule applies to.
    before, after : int
        Samples the deeper peak may follow, or precede, the peak by.

    Returns
    -------
    np.ndarray
        bool per peak: True for far field.
    """
    i, j = pairs_within(np.asarray(samples, dtype="int64"), -after, before)
    distance = distances[channels[i], channels[j]]
    shadowed = (depths[j] >= ratio * depths[i]) & (distance > inner_um) & (distance <= outer_um)
    return np.bincount(i[shadowed], minlength=len(samples)) > 0


class ThresholdPeakDetector(PeakDetector):
    """Locally exclusive threshold detection as a SpikeInterface peak-detection node, in numpy.

    The troughs (or crests) of each channel beyond ``detect_threshold`` times its noise level
    are the candidates; those whose depth in noise levels is the largest within
    ``exclude_sweep_ms`` and ``radius_um`` are the peaks (``exclusive_maxima``). These are the
    peaks of SpikeInterface's numba ``locally_exclusive`` detector, without its compilation
    (about 4 s in every new process).

    Parameters
    ----------
    recording : BaseRecording
        Filtered recording with channel locations.
    noise_levels : np.ndarray
        Per-channel noise levels.
    peak_sign : {"neg", "pos", "both"}, default: "neg"
    detect_threshold : float, default: 5.0
        In multiples of the noise level.
    exclude_sweep_ms : float, default: 1.0
        Half-width of the temporal exclusion.
    radius_um : float, default: 50.0
        Spatial exclusion radius.
    return_output : bool, default: True
    """

    name = "dlsort_threshold"
    need_noise_levels = True
    preferred_mp_context = None

    def __init__(self, recording, noise_levels: np.ndarray, peak_sign: str = "neg", detect_threshold: float = 5.0,
                 exclude_sweep_ms: float = 1.0, radius_um: float = 50.0, return_output: bool = True):
        PeakDetector.__init__(self, recording, return_output=return_output)
        check_choice("peak_sign", peak_sign, PEAK_SIGNS)
        self.noise_levels = np.asarray(noise_levels, dtype="float32")
        self.peak_sign, self.detect_threshold = peak_sign, float(detect_threshold)
        self.exclude = int(exclude_sweep_ms * recording.sampling_frequency / 1000.0)
        self.adjacency = exclusion_adjacency(build_neighbourhoods(recording.get_channel_locations(), radius_um))
        self._kwargs.update(noise_levels=noise_levels, peak_sign=peak_sign, detect_threshold=detect_threshold,
                            exclude_sweep_ms=exclude_sweep_ms, radius_um=radius_um)

    def get_margin(self) -> int:
        """Samples of context on each side of a chunk: the exclusion window and the trough's neighbours."""
        return self.exclude + 1

    def get_dtype(self):
        return base_peak_dtype

    def compute(self, traces, start_frame, end_frame, segment_index, max_margin):
        standardized = traces / self.noise_levels[None, :]
        signs = {"neg": (1.0,), "pos": (-1.0,), "both": (1.0, -1.0)}[self.peak_sign]
        found = [candidate_troughs(sign * standardized, self.detect_threshold) for sign in signs]
        channels = np.concatenate([channels for channels, _ in found])
        samples = np.concatenate([samples for _, samples in found])
        samples, channels = exclusive_maxima(samples, channels, np.abs(standardized[samples, channels]), self.exclude,
                                             self.adjacency)
        margin = self.get_margin()
        inside = (samples >= margin) & (samples < len(traces) - margin)
        peaks = np.zeros(int(inside.sum()), dtype=base_peak_dtype)
        peaks["sample_index"] = samples[inside]
        peaks["channel_index"] = channels[inside]
        peaks["amplitude"] = traces[samples[inside], channels[inside]]
        peaks["segment_index"] = segment_index
        return (peaks,)

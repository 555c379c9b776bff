"""Templates of clustered peaks: decoded from features or averaged from the recording, merges, cleaning.

``templates_from_features`` decodes a cluster's mean embedding (no pass over the recording; used
for merge decisions). ``estimate_templates`` averages the preprocessed recording around a
bounded random sample of each cluster's peaks (SpikeInterface's streaming accumulator), so its
cost does not grow with the recording length; these dense templates are the ones matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from spikeinterface.core import Templates
from spikeinterface.core.waveform_tools import estimate_templates_with_accumulator

from dlsort.errors import PEAK_SIGNS, check_choice
from dlsort.features import PeakFeatures

# Samples of lag explored when two templates are compared for a merge.
MERGE_MAX_SHIFT = 3


def estimate_templates(
    recording,
    peaks: np.ndarray,
    labels: np.ndarray,
    ms_before: float,
    ms_after: float,
    max_spikes_per_unit: int = 500,
    seed: int | None = None,
    job_kwargs: dict | None = None,
) -> Templates:
    """Average waveforms of each label (labels >= 0, unit id = label).

    The sums run in one process whatever ``job_kwargs`` asks: SpikeInterface's accumulator sums
    each worker's chunks in float32 and then the workers' sums, so with several workers the
    rounding depends on which worker took which chunk, and the templates (then the matched spikes
    and the units near the accuracy threshold) changed from run to run. On the drifting case D
    one process took as long (about 1.5 s per estimate) as two.

    Parameters
    ----------
    recording : BaseRecording
        Preprocessed recording.
    peaks : np.ndarray
        Peak array.
    labels : np.ndarray
        One label per peak, -1 ignored; labels must be 0..n-1.
    ms_before, ms_after : float
        Template window.
    max_spikes_per_unit : int, default: 500
        Peaks averaged per label (a random sample).
    seed : int or None
    job_kwargs : dict or None
        SpikeInterface job kwargs; ``n_jobs`` is ignored (one process, see above).

    Returns
    -------
    Templates
        Dense templates, unit ids 0..n-1.
    """
    fs = recording.sampling_frequency
    nbefore, nafter = int(ms_before * fs / 1000.0), int(ms_after * fs / 1000.0)
    num_units = int(labels.max()) + 1 if np.any(labels >= 0) else 0
    rng = np.random.default_rng(seed)
    chosen = []
    for unit in range(num_units):
        members = np.flatnonzero(labels == unit)
        chosen.append(rng.choice(members, size=min(max_spikes_per_unit, len(members)), replace=False))
    chosen = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype="int64")
    spikes = np.zeros(
        len(chosen), dtype=[("sample_index", "int64"), ("unit_index", "int64"), ("segment_index", "int64")]
    )
    spikes["sample_index"] = peaks["sample_index"][chosen]
    spikes["unit_index"] = labels[chosen]
    spikes["segment_index"] = peaks["segment_index"][chosen]
    order = np.lexsort((spikes["sample_index"], spikes["segment_index"]))
    spikes = spikes[order]
    if num_units == 0:
        array = np.zeros((0, nbefore + nafter, recording.get_num_channels()), dtype="float32")
    else:
        array = estimate_templates_with_accumulator(
            recording,
            spikes,
            np.arange(num_units),
            nbefore,
            nafter,
            return_in_uV=False,
            job_name="templates",
            **{**dict(job_kwargs or {}), "n_jobs": 1},
        )
    return Templates(
        templates_array=array.astype("float32"),
        sampling_frequency=fs,
        nbefore=nbefore,
        channel_ids=recording.channel_ids,
        unit_ids=np.arange(num_units),
        probe=recording.get_probe(),
        is_in_uV=False,
    )


def extremum_offsets(templates_array: np.ndarray, nbefore: int, peak_sign: str) -> np.ndarray:
    """Samples from ``nbefore`` to each template's extremum of ``peak_sign``, over all channels.

    Parameters
    ----------
    templates_array : np.ndarray
        (num_units, num_samples, num_channels).
    nbefore : int
        Sample of the templates where the peak should sit.
    peak_sign : {"neg", "pos", "both"}
        The extremum sought: the most negative value, the most positive, or the largest in magnitude.

    Returns
    -------
    np.ndarray
        int64 (num_units,); positive when the extremum comes after ``nbefore``.
    """
    check_choice("peak_sign", peak_sign, PEAK_SIGNS)
    signed = {"neg": -templates_array, "pos": templates_array, "both": np.abs(templates_array)}[peak_sign]
    return signed.max(axis=2).argmax(axis=1).astype("int64") - nbefore


def align_peaks(recording, peaks: np.ndarray, labels: np.ndarray, offsets: np.ndarray, nbefore: int,
                nafter: int) -> np.ndarray:
    """A copy of ``peaks`` with each labelled peak moved by its label's offset, a template window inside the recording.

    Parameters
    ----------
    recording : BaseRecording
    peaks : np.ndarray
        Peak array.
    labels : np.ndarray
        One label per peak; -1 peaks do not move.
    offsets : np.ndarray
        Samples to move the peaks of each label by (``extremum_offsets``).
    nbefore, nafter : int
        Template window.

    Returns
    -------
    np.ndarray
        The peaks in their input order, so ``labels`` still applies (no longer sorted by time where
        peaks of different labels crossed).
    """
    aligned = peaks.copy()
    labelled = labels >= 0
    moved = aligned["sample_index"][labelled] + offsets[labels[labelled]]
    ends = np.array([recording.get_num_samples(segment) for segment in range(recording.get_num_segments())])
    aligned["sample_index"][labelled] = np.clip(moved, nbefore, ends[aligned["segment_index"][labelled]] - nafter)
    return aligned


def estimate_merged_templates(
    recording,
    peaks: np.ndarray,
    labels: np.ndarray,
    ms_before: float,
    ms_after: float,
    peak_sign: str = "neg",
    merge: dict | None = None,
    seed: int | None = None,
    job_kwargs: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, Templates]:
    """Templates averaged from the recording, aligned on their peaks, after merging the labels ``merge_similar`` joins.

    A cluster whose peaks were detected on a channel where the unit peaks earlier or later than
    on its main channel has its template's peak off the window's centre; its peaks are moved so
    that the peak sits at the centre (when it is off by more than the merge's lag search,
    ``max_shift``), and its template averaged again. Aligned dense templates see every channel,
    so they join the pieces of a unit that templates decoded from features cannot compare: on a
    probe whose pitch exceeds the neighbourhood radius, two pieces detected on different channels
    share no channel in the decoded templates, and their peaks may sit a few samples apart. When
    a merge happens the templates are averaged again for the merged labels.

    Parameters
    ----------
    recording : BaseRecording
        Preprocessed recording.
    peaks : np.ndarray
        Peak array.
    labels : np.ndarray
        One label per peak, -1 ignored; labels must be 0..n-1.
    ms_before, ms_after : float
    peak_sign : {"neg", "pos", "both"}, default: "neg"
        Sign of the peak the templates are aligned on (``extremum_offsets``).
    merge : dict or None
        Keyword arguments of ``merge_similar`` (None: its defaults).
    seed : int or None
    job_kwargs : dict or None

    Returns
    -------
    peaks : np.ndarray
        The peaks, aligned (``peaks`` itself when no template needed it).
    labels : np.ndarray
        The merged labels (``labels`` itself when nothing merged).
    templates : Templates
        Dense templates of the returned labels.
    """
    window = dict(ms_before=ms_before, ms_after=ms_after, seed=seed, job_kwargs=job_kwargs)
    templates = estimate_templates(recording, peaks, labels, **window)
    offsets = extremum_offsets(templates.templates_array, templates.nbefore, peak_sign)
    offsets[np.abs(offsets) <= (merge or {}).get("max_shift", MERGE_MAX_SHIFT)] = 0
    if np.any(offsets != 0):
        nafter = templates.templates_array.shape[1] - templates.nbefore
        peaks = align_peaks(recording, peaks, labels, offsets, templates.nbefore, nafter)
        templates = estimate_templates(recording, peaks, labels, **window)
    merged = merge_similar(templates, labels, **(merge or {}))
    if merged.max(initial=-1) == labels.max(initial=-1):
        return peaks, labels, templates
    return peaks, merged, estimate_templates(recording, peaks, merged, **window)


def templates_from_features(
    features: PeakFeatures, peaks: np.ndarray, labels: np.ndarray, recording, min_coverage: float = 0.5
) -> Templates:
    """Templates decoded from the mean embedding of each label, without reading the recording again.

    Each peak's embedding lives on its own channel neighbourhood; the mean embedding of a label
    on a channel averages the members whose neighbourhood holds that channel. Channels seen by
    fewer than ``min_coverage`` of a label's members are left at zero. The mean embedding is
    decoded into waveforms by the features' basis (a temporal PCA reconstruction, which also
    denoises).

    Parameters
    ----------
    features : PeakFeatures
        Features of ``peaks``, with a ``basis``.
    peaks : np.ndarray
    labels : np.ndarray
        One label per peak (0..n-1, -1 ignored).
    recording : BaseRecording
        Gives the channels, sampling rate and probe.
    min_coverage : float, default: 0.5

    Returns
    -------
    Templates
        Dense templates, unit ids 0..n-1.
    """
    if features.basis is None:
        raise ValueError("these features have no decoder (basis); templates cannot be decoded from them")
    num_units = int(labels.max()) + 1 if np.any(labels >= 0) else 0
    num_channels, num_components = recording.get_num_channels(), features.embedding.shape[1]
    member = labels >= 0
    channels = features.neighbourhoods.indices[peaks["channel_index"][member]]
    valid = channels >= 0
    rows = np.broadcast_to(labels[member][:, None], channels.shape)[valid]
    sums = np.zeros((num_units, num_channels, num_components))
    counts = np.zeros((num_units, num_channels))
    np.add.at(sums, (rows, channels[valid]), np.transpose(features.embedding[member], (0, 2, 1))[valid])
    np.add.at(counts, (rows, channels[valid]), 1)
    sizes = np.bincount(labels[member], minlength=num_units)
    covered = counts >= np.maximum(min_coverage * sizes[:, None], 1)
    mean = sums / np.maximum(counts, 1)[..., None]
    waveforms = features.basis.inverse_transform(mean.astype("float32")) * covered[..., None]
    return Templates(
        templates_array=np.ascontiguousarray(np.transpose(waveforms, (0, 2, 1)), dtype="float32"),
        sampling_frequency=recording.sampling_frequency,
        nbefore=features.nbefore,
        channel_ids=recording.channel_ids,
        unit_ids=np.arange(num_units),
        probe=recording.get_probe(),
        is_in_uV=False,
    )


def lagged_cosine_similarity(templates_array: np.ndarray, max_shift: int) -> np.ndarray:
    """Cosine similarity of every pair of templates, maximised over lags of up to ``max_shift`` samples.

    Parameters
    ----------
    templates_array : np.ndarray
        (num_units, num_samples, num_channels).
    max_shift : int
        Largest lag in samples, in both directions.

    Returns
    -------
    np.ndarray
        (num_units, num_units) similarity in [-1, 1].
    """
    num_units, num_samples, _ = templates_array.shape
    if not 0 <= max_shift < num_samples:
        raise ValueError(f"max_shift must be in [0, {num_samples}), got {max_shift}")
    norms = np.linalg.norm(templates_array.reshape(num_units, -1), axis=1)
    norms = np.where(norms > 0, norms, 1.0)
    flat = templates_array.reshape(num_units, -1)
    padded = np.pad(templates_array, ((0, 0), (max_shift, max_shift), (0, 0)))
    best = np.full((num_units, num_units), -np.inf)
    for start in range(2 * max_shift + 1):
        shifted = padded[:, start : start + num_samples].reshape(num_units, -1)
        best = np.maximum(best, flat @ shifted.T)
    return best / np.outer(norms, norms)


@dataclass(frozen=True)
class RefractoryCheck:
    """Spike times that let a merge test whether two clusters fire as one neuron.

    Two clusters of one neuron (an over-split unit) almost never fire within a refractory period
    of each other; two neurons firing independently do so at the rate chance predicts. A pair is
    not merged when its cross-pairs closer than ``refractory_samples`` reach half of the count
    expected for independent trains, provided that count is at least ``min_expected`` (below it
    the trains are too sparse to tell, and similarity alone decides).

    Attributes
    ----------
    times : np.ndarray
        Time of each labelled peak in samples, on one clock over all segments.
    refractory_samples : int
    duration_samples : int
        Total length of the recording.
    min_expected : float, default: 5.0
    """

    times: np.ndarray
    refractory_samples: int
    duration_samples: int
    min_expected: float = 5.0

    def independent(self, first: np.ndarray, second: np.ndarray) -> bool:
        """Whether the peaks at indices ``first`` and ``second`` coincide as often as independent trains would."""
        a, b = np.sort(self.times[first]), np.sort(self.times[second])
        window = self.refractory_samples
        expected = len(a) * len(b) * (2 * window + 1) / max(self.duration_samples, 1)
        if expected < self.min_expected:
            return False
        observed = np.sum(np.searchsorted(b, a + window, side="right") - np.searchsorted(b, a - window, side="left"))
        return observed >= 0.5 * expected

    @classmethod
    def of_peaks(cls, peaks: np.ndarray, recording, refractory_ms: float) -> RefractoryCheck | None:
        """The check for SpikeInterface ``peaks`` of ``recording``, or None when ``refractory_ms`` is 0."""
        if refractory_ms <= 0:
            return None
        lengths = [recording.get_num_samples(segment) for segment in range(recording.get_num_segments())]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        times = peaks["sample_index"].astype("int64") + offsets[peaks["segment_index"]]
        return cls(times, int(round(refractory_ms * recording.sampling_frequency / 1000.0)), int(sum(lengths)))


def merge_similar(
    templates: Templates, labels: np.ndarray, similarity_threshold: float = 0.95, max_shift: int = MERGE_MAX_SHIFT,
    refractory: RefractoryCheck | None = None, min_amplitude_ratio: float = 0.7,
    noise_levels: np.ndarray | None = None, masked_similarity_threshold: float | None = None,
) -> np.ndarray:
    """Merge labels whose templates are similar (cosine similarity with small lags).

    Parameters
    ----------
    templates : Templates
        Templates of ``labels`` (unit id = label).
    labels : np.ndarray
        One label per peak.
    similarity_threshold : float, default: 0.95
        Pairs at or above it whose peak amplitudes are within ``min_amplitude_ratio`` of each
        other merge (transitively).
    max_shift : int, default: 3
        Samples of lag explored when comparing two templates.
    refractory : RefractoryCheck or None
        When given, similar pairs that fire independently of each other (``RefractoryCheck``)
        are not merged.
    min_amplitude_ratio : float, default: 0.7
        Smallest ratio of the two peak amplitudes (smaller / larger) of a pair that merges: the
        cosine similarity ignores scale, so two units of one shape but different sizes would
        otherwise merge.
    noise_levels : np.ndarray or None
        Noise level per channel, in the templates' units; with ``masked_similarity_threshold``.
    masked_similarity_threshold : float or None
        Pairs whose templates, each kept on the channels where it reaches the noise level (and
        its strongest channel), are at least this similar also merge (amplitudes within the
        ratio). A template averaged from n peaks carries noise of 1/sqrt(n) noise levels on every
        channel; over the hundreds of channels of a dense array that noise outweighs a weak
        unit's few channels and deflates the similarity of its pieces. None (or no
        ``noise_levels``): the dense similarity alone.

    Returns
    -------
    np.ndarray
        New labels 0..m-1 (-1 kept).
    """
    n = templates.num_units
    if n < 2:
        return labels.copy()
    array = templates.templates_array
    similar = lagged_cosine_similarity(array, max_shift) >= similarity_threshold
    if noise_levels is not None and masked_similarity_threshold is not None:
        masked = array * channels_above_noise(array, noise_levels)[:, None, :]
        similar |= lagged_cosine_similarity(masked, max_shift) >= masked_similarity_threshold
    amplitude = np.abs(array).max(axis=(1, 2))
    ratio = np.minimum(amplitude[:, None], amplitude[None, :]) / np.maximum(amplitude[:, None], amplitude[None, :])
    pairs = similar & (ratio >= min_amplitude_ratio)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(pairs, k=1))):
        if refractory is not None and refractory.independent(np.flatnonzero(labels == i), np.flatnonzero(labels == j)):
            continue
        parent[root(i)] = root(j)
    roots = np.array([root(i) for i in range(n)])
    _, new_ids = np.unique(roots, return_inverse=True)
    out = np.full(len(labels), -1, dtype="int64")
    out[labels >= 0] = new_ids[labels[labels >= 0]]
    return out


def template_snrs(templates: Templates, noise_levels: np.ndarray) -> np.ndarray:
    """Each template's peak absolute value in noise levels of its channel, on its best channel.

    Parameters
    ----------
    templates : Templates
    noise_levels : np.ndarray
        Per-channel noise of the recording the templates come from.

    Returns
    -------
    np.ndarray
        (num_units,).
    """
    return _channel_snrs(templates.templates_array, noise_levels).max(axis=1)


def _channel_snrs(array: np.ndarray, noise_levels) -> np.ndarray:
    """(units, channels): each template's peak absolute value on each channel, in that channel's noise levels."""
    return np.abs(array).max(axis=1) / np.broadcast_to(noise_levels, array.shape[2])[None, :]


def clean_templates(
    templates: Templates,
    noise_levels: np.ndarray,
    min_snr: float,
    rates_hz: np.ndarray,
    weak_snr: float | None = None,
    weak_min_rate_hz: float = 0.0,
) -> tuple[Templates, np.ndarray]:
    """Drop templates too small to match reliably and sparsify the rest.

    A template is kept when its peak reaches ``min_snr`` noise levels, or ``weak_snr`` when its
    cluster fires at least ``weak_min_rate_hz``: the clusters of noise crossings that average to
    a small template hold few peaks, while a real unit of low amplitude keeps firing.

    Parameters
    ----------
    templates : Templates
    noise_levels : np.ndarray
        Per-channel noise of the recording the templates come from.
    min_snr : float
        Peak amplitude, in noise levels of the template's best channel, that keeps a template.
    rates_hz : np.ndarray
        Estimated firing rate of each template's cluster (``cluster_rates_hz``); templates of empty
        clusters are dropped.
    weak_snr : float or None, default: None
        Lower peak amplitude kept for clusters firing at least ``weak_min_rate_hz``; None: none.
    weak_min_rate_hz : float, default: 0.0

    Returns
    -------
    templates : Templates
        Kept templates, sparse (channels where the template exceeds the noise level),
        unit ids 0..m-1.
    kept : np.ndarray
        Indices of the kept input templates.
    """
    array = templates.templates_array
    snr = template_snrs(templates, noise_levels)
    strong = snr >= min_snr
    weak = np.zeros_like(strong) if weak_snr is None else (snr >= weak_snr) & (rates_hz >= weak_min_rate_hz)
    kept = np.flatnonzero((strong | weak) & (rates_hz > 0))
    return sparse_above_noise(array[kept], noise_levels, templates, np.arange(len(kept))), kept


def cluster_rates_hz(sampled_channels: np.ndarray, labels: np.ndarray, sampling_weights: np.ndarray,
                     num_units: int, duration_s: float) -> np.ndarray:
    """Firing rate of each cluster, estimated from the clustering sample.

    Parameters
    ----------
    sampled_channels : np.ndarray
        Detection channel of each sampled peak.
    labels : np.ndarray
        Cluster of each sampled peak (-1: noise).
    sampling_weights : np.ndarray
        Per channel, detected peaks per sampled peak (``sampling_weights``).
    num_units : int
    duration_s : float
        Duration of the recording.

    Returns
    -------
    np.ndarray
        float64 (num_units,) peaks per second.
    """
    member = labels >= 0
    counts = np.bincount(labels[member], weights=sampling_weights[sampled_channels[member]], minlength=num_units)
    return counts[:num_units] / duration_s


def channels_above_noise(array: np.ndarray, noise_levels) -> np.ndarray:
    """For each template, the channels where it reaches the noise level, and its strongest channel.

    Parameters
    ----------
    array : np.ndarray
        (units, samples, channels) template waveforms.
    noise_levels : np.ndarray or float
        Noise level per channel (or one for all), in the templates' units.

    Returns
    -------
    np.ndarray
        Boolean (units, channels).
    """
    snr_per_channel = _channel_snrs(array, noise_levels)
    mask = snr_per_channel >= 1.0
    mask[np.arange(len(array)), snr_per_channel.argmax(axis=1)] = True
    return mask


def sparse_above_noise(array: np.ndarray, noise_levels, like: Templates, unit_ids: np.ndarray) -> Templates:
    """Sparse templates that keep, for each unit, the channels where it reaches the noise level and its strongest.

    Parameters
    ----------
    array : np.ndarray
        (units, samples, channels) template waveforms.
    noise_levels : np.ndarray or float
        Noise level per channel (or one for all).
    like : Templates
        Templates whose sampling rate, window, channels and probe the new ones share.
    unit_ids : np.ndarray

    Returns
    -------
    Templates
        Sparse; zero outside each unit's channels.
    """
    from spikeinterface.core.sparsity import ChannelSparsity

    mask = channels_above_noise(array, noise_levels)
    dense = Templates(templates_array=array * mask[:, None, :], sampling_frequency=like.sampling_frequency,
                      nbefore=like.nbefore, channel_ids=like.channel_ids, unit_ids=unit_ids, probe=like.probe,
                      is_in_uV=like.is_in_uV)
    return dense.to_sparse(ChannelSparsity(mask, dense.unit_ids, dense.channel_ids))

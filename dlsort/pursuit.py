"""Bounded matching pursuit: dlsort's own template-matching engine.

Greedy matching pursuit (Mallat and Zhang, IEEE Trans. Signal Process. 1993) over every template at
every time, the deconvolution Kilosort and YASS run: for template ``k`` starting at sample ``t``
the inner product ``B[k, t] = <residual[t : t + L], T_k>`` gives the least-squares amplitude
``a = B[k, t] / |T_k|^2`` and the residual energy that fitting it removes. Each round fits, at
every time where the best gain is the largest within one template length, that template, and
subtracts it from ``B`` through the templates' cross-correlations. Atoms one template length or
more apart do not overlap, so a round gives what one-at-a-time pursuit would. When no template is
eligible any more, the amplitudes of overlapping fits are refitted jointly by coordinate descent.

A template is eligible at a time only where

- its amplitude would be at least ``min_amplitude`` (its gain is scored with the amplitude clipped
  to ``max_amplitude``), so a large template cannot take a small unit's spike at amplitude 0.4;
  SpikeInterface's ``circus-omp`` fits it there and then discards it, and the spike is lost;
- its inner product is at least ``min_snr`` times its spread over the recording (its noise);
- its inner product is at least ``misfit`` times the largest projection on it of each fit that
  overlaps it: what a large spike leaves behind where its template does not quite fit it (drift,
  shape variability) is not taken for a small unit's spike.

With an amplitude prior (``amplitude_penalty``), templates that compete for an event are ranked by
their gain less ``penalty * (a - 1)^2``: fits far from a template's own size lose to a template that
fits the event near amplitude 1. Two units of one shape and different sizes (one electrode of a
sparse probe) explain each other's spikes equally well at free amplitude; the prior tells them apart.

Fits above ``max_amplitude`` are subtracted (the event is explained) but not reported, as
``circus-omp`` does. Unlike ``circus-omp``, no numerically dependent set of atoms can stop the fit
of the rest of a chunk (it does so when it selects an atom it already holds).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d
from spikeinterface.sortingcomponents.matching.base import BaseTemplateMatching

from dlsort.errors import DlsortInputError

REFIT_SWEEPS = 3  # coordinate-descent passes over overlapping fits (3 reach the joint fit to 1e-3 in test_pursuit)

SPIKE_DTYPE = [
    ("sample_index", "int64"),
    ("channel_index", "int64"),
    ("cluster_index", "int64"),
    ("amplitude", "float64"),
    ("segment_index", "int64"),
]


def compress_templates(templates_array: np.ndarray, mask: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-``rank`` approximations of templates on their own channels.

    Parameters
    ----------
    templates_array : np.ndarray
        Dense templates, shape (num_templates, num_samples, num_channels).
    mask : np.ndarray
        Boolean, shape (num_templates, num_channels): the channels each template keeps; the others
        are zero in its approximation.
    rank : int
        Number of singular components kept per template.

    Returns
    -------
    temporal : np.ndarray
        float32, shape (num_templates, rank, num_samples): the temporal components scaled by their
        singular values.
    spatial : np.ndarray
        float32, shape (num_templates, rank, num_channels): the spatial components (orthonormal
        rows, zero outside ``mask``). ``temporal[k].T @ spatial[k]`` is template ``k``'s approximation.
    """
    num_templates, num_samples, num_channels = templates_array.shape
    temporal = np.zeros((num_templates, rank, num_samples), dtype="float32")
    spatial = np.zeros((num_templates, rank, num_channels), dtype="float32")
    for k in range(num_templates):
        channels = np.flatnonzero(mask[k])
        u, s, vt = np.linalg.svd(templates_array[k][:, channels].astype("float64"), full_matrices=False)
        kept = min(rank, s.size)
        temporal[k, :kept] = (u[:, :kept] * s[:kept]).T
        spatial[k, :kept][:, channels] = vt[:kept]
    return temporal, spatial


def cross_correlations(templates_array: np.ndarray) -> np.ndarray:
    """How fitting one template changes every template's inner product at every lag.

    Parameters
    ----------
    templates_array : np.ndarray
        Templates, shape (num_templates, num_samples, num_channels).

    Returns
    -------
    np.ndarray
        float32, shape (num_templates, num_templates, 2 * num_samples - 1):
        ``cross[k, j, d + num_samples - 1] = sum_tau <T_j[tau], T_k[tau + d]>``, the change of
        ``B[j, s + d]`` per unit of amplitude of template ``k`` subtracted at start ``s``.
    """
    num_samples = templates_array.shape[1]
    size = 2 * num_samples
    spectra = np.fft.rfft(templates_array.astype("float64"), n=size, axis=1)  # (K, F, C)
    # sum over channels of conj(F_k) F_j, per frequency: a batch of (K x C) @ (C x K) products
    products = np.einsum("kfc,jfc->kjf", np.conj(spectra), spectra, optimize=True)
    circular = np.fft.irfft(products, n=size, axis=2)  # [k, j, m] = sum_tau <T_k[tau], T_j[tau + m]>, m mod size
    lags = np.arange(-(num_samples - 1), num_samples)
    return np.ascontiguousarray(circular[:, :, -lags % size], dtype="float32")


def inner_products(traces: np.ndarray, temporal: np.ndarray, spatial: np.ndarray,
                   kernel_spectra: dict | None = None, channels: list[np.ndarray] | None = None) -> np.ndarray:
    """``B[k, t] = <traces[t : t + L], T_k>`` for every template and every start that fits in ``traces``.

    The traces are projected on each template's spatial components, then correlated with its
    temporal components through the FFT.

    Parameters
    ----------
    traces : np.ndarray
        Shape (num_frames, num_channels).
    temporal, spatial : np.ndarray
        The compressed templates of :func:`compress_templates`.
    kernel_spectra : dict or None
        A cache of the temporal components' spectra by FFT size, kept by the caller between chunks.
    channels : list of np.ndarray or None
        Each template's channels (where its spatial components are non-zero): each is then projected
        from those channels only, which saves most of the work on probes with many channels. None
        projects every template from every channel.

    Returns
    -------
    np.ndarray
        float32, shape (num_templates, num_frames - num_samples + 1).
    """
    from scipy import fft

    num_templates, rank, num_samples = temporal.shape
    by_channel = np.ascontiguousarray(np.asarray(traces, dtype="float32").T)  # (C, N): rows gather fast
    num_frames = by_channel.shape[1]
    size = fft.next_fast_len(num_frames, real=True)
    if channels is None:
        projected = spatial.reshape(num_templates * rank, -1) @ by_channel  # (K * R, N)
    else:
        projected = np.stack([spatial[k][:, own] @ by_channel[own] for k, own in enumerate(channels)])
    spectra = fft.rfft(projected, n=size, axis=-1).reshape(num_templates, rank, -1)
    cache = {} if kernel_spectra is None else kernel_spectra
    if size not in cache:
        cache[size] = np.conj(fft.rfft(temporal, n=size, axis=2))
    kernels = cache[size]
    products = fft.irfft((spectra * kernels).sum(axis=1), n=size, axis=1)
    return products[:, : num_frames - num_samples + 1].astype("float32", copy=False)


def noise_products(recording, temporal: np.ndarray, spatial: np.ndarray, seed: int = 0,
                   channels: list[np.ndarray] | None = None) -> np.ndarray:
    """Spread of each template's inner product with the recording, where it is mostly noise.

    Parameters
    ----------
    recording : BaseRecording
        The recording templates are matched in.
    temporal, spatial : np.ndarray
        The compressed templates of :func:`compress_templates`.
    seed : int, default: 0
        Seed of the 20 random one-second chunks the products are taken over.
    channels : list of np.ndarray or None
        As in :func:`inner_products`.

    Returns
    -------
    np.ndarray
        Shape (num_templates,): the median absolute deviation of each template's products over the
        chunks, scaled by 1.4826 (the standard deviation of Gaussian noise). Spikes sit in the tails,
        which the median ignores.
    """
    from spikeinterface.core import get_random_data_chunks

    shortest = min(recording.get_num_samples(segment) for segment in range(recording.get_num_segments()))
    size = min(int(recording.sampling_frequency), shortest)
    chunks = get_random_data_chunks(recording, concatenated=False, num_chunks_per_segment=20, chunk_size=size,
                                    seed=seed)
    products = np.concatenate([inner_products(chunk, temporal, spatial, channels=channels) for chunk in chunks],
                              axis=1)
    spread = np.empty(products.shape[0])
    for block in range(0, products.shape[0], 32):  # in blocks of templates: the medians copy what they sort
        rows = products[block : block + 32]
        spread[block : block + 32] = np.median(np.abs(rows - np.median(rows, axis=1, keepdims=True)), axis=1)
    return 1.4826 * spread


def pursue(products: np.ndarray, norms2: np.ndarray, cross: np.ndarray, min_amplitude: float = 0.6,
           max_amplitude: float = np.inf, min_products: np.ndarray | None = None, misfit: float = 0.0,
           overlap: np.ndarray | None = None, neighbours: list[np.ndarray | slice] | None = None,
           sweeps: int = REFIT_SWEEPS, amplitude_penalty: np.ndarray | None = None,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit templates greedily while any is eligible (see the module's docstring), then refit overlapping fits.

    Parameters
    ----------
    products : np.ndarray
        ``B`` of :func:`inner_products`, shape (num_templates, num_starts); not modified.
    norms2 : np.ndarray
        Squared norms of the templates, shape (num_templates,), all positive.
    cross : np.ndarray
        :func:`cross_correlations` of the same templates.
    min_amplitude, max_amplitude : float, default: 0.6, inf
        Amplitude bounds (``0 < min_amplitude <= max_amplitude``).
    min_products : np.ndarray or None
        Shape (num_templates,): the smallest inner product at which each template may fit (``min_snr``
        times :func:`noise_products`); None sets none.
    misfit : float, default: 0.0
        A template may fit only where its inner product is at least ``misfit`` times the largest
        projection on it (``max |cross|``, times the fitted amplitude) of each fit within one
        template length; 0 sets no such rule.
    overlap : np.ndarray or None
        ``max |cross|`` over lags, shape (num_templates, num_templates), when the caller keeps it
        between chunks; computed when None.
    neighbours : list or None
        :func:`fit_neighbours` of ``overlap``, when the caller keeps it between chunks; computed when None.
    sweeps : int, default: REFIT_SWEEPS
        Passes of :func:`refit` over overlapping fits before the amplitude bounds are applied.
    amplitude_penalty : np.ndarray or None
        Shape (num_templates,): a fit of template ``k`` at amplitude ``a`` is ranked by its gain less
        ``amplitude_penalty[k] * (a - 1) ** 2`` (never below a millionth of its gain, so no fit loses its
        eligibility); :func:`amplitude_penalties` gives the penalty of a prior on the amplitude. None: no
        penalty. The fitted amplitudes stay the least-squares ones.

    Returns
    -------
    templates, starts : np.ndarray
        int64: the template and start sample of each reported fit, in no particular order.
    amplitudes : np.ndarray
        Their amplitudes (relative to the template), all within the bounds.
    """
    residual = products.astype("float32", copy=True)
    num_starts = residual.shape[1]
    length = (cross.shape[2] + 1) // 2
    norms = norms2.astype("float32")[:, None]
    floor = np.maximum(min_amplitude * norms, 0.0 if min_products is None else min_products[:, None])
    overlap = np.abs(cross).max(axis=2) if overlap is None else overlap  # (fitted, other template)
    limits = misfit * overlap
    neighbours = fit_neighbours(overlap) if neighbours is None else neighbours
    explained = np.zeros_like(residual)  # the largest misfit that fits nearby may have left on each template
    best_template = np.zeros(num_starts, dtype="int64")
    best_gain = np.zeros(num_starts, dtype="float32")
    fitted = []
    columns = np.arange(num_starts)
    while columns.size:
        local = residual[:, columns]
        amplitude = local / norms
        clipped = np.minimum(amplitude, max_amplitude)
        eligible = (local >= floor) & (local >= explained[:, columns])
        gain = np.where(eligible, norms * clipped * (2.0 * amplitude - clipped), 0.0)
        if amplitude_penalty is not None:
            gain = np.maximum(gain - amplitude_penalty[:, None] * (amplitude - 1.0) ** 2, 1e-6 * gain)
        best_template[columns] = np.argmax(gain, axis=0)
        best_gain[columns] = gain[best_template[columns], np.arange(columns.size)]
        peaks = np.flatnonzero((best_gain > 0) & (best_gain == maximum_filter1d(best_gain, 2 * length - 1)))
        peaks = peaks[np.diff(peaks, prepend=-length) >= length]  # equal gains within one length: keep the first
        touched = []
        for start in peaks:
            k = best_template[start]
            a = residual[k, start] / norms[k, 0]
            fitted.append((k, start, a))
            rows = neighbours[k]
            window = subtract(residual, cross, k, start, a, rows)
            explained[rows, window] = np.maximum(explained[rows, window], abs(a) * limits[k][rows, None])
            touched.append(np.arange(window.start, window.stop))
        columns = np.unique(np.concatenate(touched)) if touched else np.zeros(0, dtype="int64")
    if not fitted:
        empty = np.zeros(0, dtype="int64")
        return empty, empty, np.zeros(0)
    templates, starts, amplitudes = (np.asarray(values) for values in zip(*fitted))
    atoms, inverse = np.unique(templates.astype("int64") * num_starts + starts, return_inverse=True)
    templates, starts = atoms // num_starts, atoms % num_starts
    amplitudes = np.bincount(inverse, weights=amplitudes.astype("float64"))  # an atom fitted twice: summed
    refit(residual, norms2, cross, templates, starts, amplitudes, sweeps, neighbours)
    keep = (amplitudes >= min_amplitude) & (amplitudes <= max_amplitude)
    return templates[keep], starts[keep], amplitudes[keep]


def amplitude_penalties(spread: np.ndarray, norms2: np.ndarray, amplitude_spread: float) -> np.ndarray:
    """:func:`pursue`'s ``amplitude_penalty`` for amplitudes spread by ``amplitude_spread`` around each template.

    The noise variance along template ``k`` is ``spread[k] ** 2 / norms2[k]`` (white noise of variance
    ``s ** 2`` gives inner products of spread ``s |T_k|``). A Gaussian prior of standard deviation
    ``amplitude_spread`` on the amplitude adds ``(a - 1) ** 2 / amplitude_spread ** 2`` noise variances to
    the cost of a fit, so its gain, in the products' units, loses that times the noise variance.

    Parameters
    ----------
    spread : np.ndarray
        :func:`noise_products` of the templates, shape (num_templates,).
    norms2 : np.ndarray
        Their squared norms, same shape.
    amplitude_spread : float
        Standard deviation of a unit's amplitudes relative to its template (> 0).

    Returns
    -------
    np.ndarray
        Shape (num_templates,).
    """
    return np.asarray(spread, dtype="float64") ** 2 / (np.asarray(norms2, dtype="float64") * amplitude_spread ** 2)


def fit_neighbours(overlap: np.ndarray) -> list[np.ndarray | slice]:
    """For each template, the templates whose inner products a fit of it changes (those sharing a channel with it).

    Parameters
    ----------
    overlap : np.ndarray
        ``max |cross|`` over lags, shape (num_templates, num_templates).

    Returns
    -------
    list
        Row indices per template, or a plain slice of all rows when they are half of the templates or more.
    """
    return [rows if rows.size < overlap.shape[0] // 2 else slice(None)
            for rows in (np.flatnonzero(row) for row in overlap > 0)]


def subtract(residual: np.ndarray, cross: np.ndarray, template: int, start: int, amplitude: float,
             rows: np.ndarray | slice = slice(None)) -> slice:
    """Update the inner products ``residual`` in place for ``amplitude`` times ``template`` subtracted at ``start``.

    ``rows``, when not all of them, are the only templates whose inner products the fit changes (the
    others share no channel with it).

    Returns
    -------
    slice
        The starts whose inner products changed.
    """
    length = (cross.shape[2] + 1) // 2
    low, high = max(0, start - length + 1), min(residual.shape[1], start + length)
    offset = length - 1 - start
    residual[rows, low:high] -= amplitude * cross[template][rows, low + offset : high + offset]
    return slice(low, high)


def refit(residual: np.ndarray, norms2: np.ndarray, cross: np.ndarray, templates: np.ndarray, starts: np.ndarray,
          amplitudes: np.ndarray, sweeps: int, neighbours: list[np.ndarray | slice] | None = None) -> None:
    """Refit the amplitudes of overlapping fits jointly, in place, by coordinate descent.

    Greedy fits of overlapping atoms each absorb part of the others; ``sweeps`` passes of exact
    one-atom least-squares updates (Gauss-Seidel) move them towards the joint least-squares
    amplitudes, as orthogonal matching pursuit would refit them.

    Parameters
    ----------
    residual : np.ndarray
        Inner products of the residual (all atoms subtracted); updated.
    norms2, cross : np.ndarray
        As in :func:`pursue`.
    templates, starts : np.ndarray
        The atoms.
    amplitudes : np.ndarray
        float64, their amplitudes; updated.
    sweeps : int
        Number of passes over the atoms that have another within one template length.
    neighbours : list or None
        For each template, ``subtract``'s ``rows``; None updates every template.
    """
    length = (cross.shape[2] + 1) // 2
    order = np.argsort(starts, kind="stable")
    close = np.diff(starts[order]) < length
    overlapping = order[np.concatenate([[False], close]) | np.concatenate([close, [False]])]
    for _ in range(sweeps):
        for i in overlapping:
            delta = residual[templates[i], starts[i]] / norms2[templates[i]]
            amplitudes[i] += delta
            subtract(residual, cross, templates[i], starts[i], delta,
                     slice(None) if neighbours is None else neighbours[templates[i]])


class BoundedPursuit(BaseTemplateMatching):
    """SpikeInterface node running :func:`pursue` on each chunk of a recording.

    Parameters
    ----------
    recording : BaseRecording
    templates : Templates
        Dense or sparse; a sparse template is zero outside its channels.
    amplitudes : tuple of float, default: (0.6, inf)
        ``(min_amplitude, max_amplitude)``; 0.6 is circus-omp's lower bound.
    min_snr : float, default: 0.0
        A template fits only where its inner product is at least ``min_snr`` times its spread in
        the recording (:func:`noise_products`); 0 sets no such threshold.
    misfit : float, default: 0.0
        See :func:`pursue`.
    amplitude_spread : float or None, default: None
        Standard deviation of each unit's amplitudes relative to its template, the prior by which
        competing templates are ranked (:func:`amplitude_penalties`); None ranks them by gain alone.
    rank : int, default: 5
        Singular components kept per template (circus-omp's default).
    return_output : bool, default: True
    """

    def __init__(self, recording, templates, amplitudes: tuple[float, float] = (0.6, np.inf), min_snr: float = 0.0,
                 misfit: float = 0.0, amplitude_spread: float | None = None, rank: int = 5,
                 return_output: bool = True):
        BaseTemplateMatching.__init__(self, recording, templates, return_output=return_output)
        low, high = (float(value) for value in amplitudes)
        if not 0.0 < low <= high:
            raise DlsortInputError(f"bounded-pursuit amplitude bounds must satisfy 0 < min <= max, got {amplitudes}; "
                                   "pass e.g. (0.6, inf).")
        if rank < 1 or min_snr < 0 or misfit < 0:
            raise DlsortInputError(f"bounded-pursuit needs rank >= 1, min_snr >= 0 and misfit >= 0; got rank={rank}, "
                                   f"min_snr={min_snr}, misfit={misfit}; pass e.g. rank=5, min_snr=4, misfit=0.2.")
        if amplitude_spread is not None and not amplitude_spread > 0:
            raise DlsortInputError(f"bounded-pursuit's amplitude_spread must be > 0 (or None for no amplitude prior), "
                                   f"got {amplitude_spread}; pass e.g. 0.1.")
        dense = templates.get_dense_templates()
        mask = (templates.sparsity.mask if templates.sparsity is not None
                else np.ones((templates.num_units, dense.shape[2]), dtype=bool))
        self.temporal, self.spatial = compress_templates(dense, mask, rank)
        approximations = np.einsum("krl,krc->klc", self.temporal, self.spatial)
        self.norms2 = np.sum(approximations.astype("float64") ** 2, axis=(1, 2))
        if np.any(self.norms2 <= 0):
            raise DlsortInputError("bounded-pursuit got a template that is zero on all of its channels; drop it (or "
                                   "widen its sparsity) before matching.")
        self.cross = cross_correlations(approximations)
        self.overlap = np.abs(self.cross).max(axis=2)
        self.neighbours = fit_neighbours(self.overlap)
        self.channels = None if templates.sparsity is None else [np.flatnonzero(own) for own in mask]
        spread = (noise_products(recording, self.temporal, self.spatial, channels=self.channels)
                  if min_snr > 0 or amplitude_spread is not None else None)
        self.min_products = min_snr * spread if min_snr > 0 else None
        self.amplitude_penalty = (amplitude_penalties(spread, self.norms2, amplitude_spread)
                                  if amplitude_spread is not None else None)
        self.amplitudes = (low, high)
        self.misfit = misfit
        self.nbefore = templates.nbefore
        length = dense.shape[1]
        self.margin = length + max(templates.nbefore, length - templates.nbefore)
        self._kernel_spectra: dict = {}

    def get_margin(self) -> int:
        return self.margin

    def compute_matching(self, traces, start_frame, end_frame, segment_index):
        if traces.shape[0] < self.temporal.shape[2]:
            return np.zeros(0, dtype=SPIKE_DTYPE)
        products = inner_products(traces, self.temporal, self.spatial, self._kernel_spectra, self.channels)
        templates, starts, amplitudes = pursue(products, self.norms2, self.cross, *self.amplitudes,
                                               min_products=self.min_products, misfit=self.misfit,
                                               overlap=self.overlap, neighbours=self.neighbours,
                                               amplitude_penalty=self.amplitude_penalty)
        spikes = np.zeros(templates.size, dtype=SPIKE_DTYPE)
        spikes["sample_index"] = starts + self.nbefore
        spikes["cluster_index"] = templates
        spikes["amplitude"] = amplitudes
        return spikes[np.argsort(spikes["sample_index"], kind="stable")]

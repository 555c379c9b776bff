"""Template matching stage: find every spike of every template (dlsort's bounded pursuit or a SpikeInterface engine).

``match_templates(recording, templates, method=...)`` returns a spike vector
(``sample_index``, ``channel_index``, ``cluster_index``, ``amplitude``, ``segment_index``).
Matching recovers spikes that detection merged or missed (overlaps, low amplitude) and labels
every spike of the recording, while clustering only ever sees a bounded sample.
"""

from __future__ import annotations

import numpy as np

from dlsort.errors import check_choice

MATCHING_METHODS = ("bounded-pursuit", "circus-omp", "wobble", "tdc-peeler", "nearest")
WHITENING_MODES = ("stable", "always", "never")
MIN_AMPLITUDE = 0.6  # lower amplitude bound, relative to the template: circus-omp's default
WHITENING_RADIUS_UM = 100.0
# Largest estimated drift (peak to peak over time) at which "stable" whitens: the static benchmark cases
# estimate 0.0 um, the drifting case D (+-15 um) 28.9 um.
STABLE_DRIFT_UM = 5.0


def should_whiten(mode: str, drift_um: float | None) -> bool:
    """Whether to match on the whitened recording.

    Parameters
    ----------
    mode : {"stable", "always", "never"}
        ``"stable"`` whitens unless motion correction estimated a drift of ``STABLE_DRIFT_UM`` or
        more (whitening lost units on a drifting recording, see ``matching_whitening``).
    drift_um : float or None
        The estimated drift (``dlsort.preprocessing.estimated_drift_um``); None when motion was not
        corrected.

    Returns
    -------
    bool
    """
    check_choice("matching_whitening", mode, WHITENING_MODES)
    if mode != "stable":
        return mode == "always"
    return drift_um is None or drift_um < STABLE_DRIFT_UM


def whiten_for_matching(recording, templates, seed: int = 0):
    """The recording and the templates under one local whitening, for matching in decorrelated noise.

    Noise correlated across neighbouring channels inflates the inner products template matching
    compares; after whitening (SpikeInterface's ``whiten``, ``mode="local"`` within
    ``WHITENING_RADIUS_UM``, fitted on random chunks) the noise is unit-variance and uncorrelated
    between channels. A template is a mean of traces, so it is whitened by the same matrix;
    each whitened template keeps the channels where it exceeds the whitened noise (1) and its
    strongest channel.

    Parameters
    ----------
    recording : BaseRecording
        The preprocessed recording the templates were estimated on.
    templates : Templates
        Its templates (dense or sparse).
    seed : int, default: 0
        Seed of the random chunks the whitening matrix is fitted on.

    Returns
    -------
    recording : BaseRecording
        The whitened recording (lazy, float32).
    templates : Templates
        The whitened templates, sparse, same unit ids.
    """
    from spikeinterface.preprocessing import whiten
    from spikeinterface.preprocessing.whiten import compute_whitening_matrix

    from dlsort.templates import sparse_above_noise

    matrix, _ = compute_whitening_matrix(recording, "local", {"seed": seed}, apply_mean=False,
                                         radius_um=WHITENING_RADIUS_UM)
    whitened = whiten(recording, dtype="float32", mode="local", radius_um=WHITENING_RADIUS_UM, W=matrix)
    array = templates.get_dense_templates() @ matrix.astype("float32")
    return whitened, sparse_above_noise(array, 1.0, templates, templates.unit_ids)  # whitened noise: unit variance


def match_templates(
    recording,
    templates,
    method: str = "circus-omp",
    noise_levels: np.ndarray | None = None,
    detect_threshold: float = 5.0,
    peak_sign: str = "neg",
    max_amplitude: float | None = None,
    min_snr: float = 0.0,
    misfit: float = 0.0,
    amplitude_spread: float | None = None,
    job_kwargs: dict | None = None,
) -> np.ndarray:
    """Find spikes of ``templates`` in ``recording``.

    Parameters
    ----------
    recording : BaseRecording
        The preprocessed recording the templates were estimated on.
    templates : Templates
    method : {"bounded-pursuit", "circus-omp", "wobble", "tdc-peeler", "nearest"}, default: "circus-omp"
        ``"bounded-pursuit"`` is dlsort's engine (``dlsort.pursuit``); the others are SpikeInterface's.
    noise_levels : np.ndarray or None
        Per-channel noise levels (needed by "tdc-peeler" and "nearest").
    detect_threshold : float, default: 5.0
        Detection threshold of the engines that detect before matching.
    peak_sign : {"neg", "pos", "both"}, default: "neg"
    max_amplitude : float or None
        "bounded-pursuit" and "circus-omp": upper bound of the fitted amplitude relative to the
        template (lower bound 0.6, SpikeInterface's); None leaves it unbounded.
    min_snr, misfit : float, default: 0.0
        "bounded-pursuit": its significance threshold and misfit rule (``dlsort.pursuit.pursue``).
    amplitude_spread : float or None
        "bounded-pursuit": the amplitude prior by which it ranks competing templates
        (``dlsort.pursuit.amplitude_penalties``); None: none.
    job_kwargs : dict or None

    Returns
    -------
    np.ndarray
        Spike vector sorted by segment and sample.
    """
    from spikeinterface.core.node_pipeline import run_node_pipeline
    from spikeinterface.sortingcomponents.matching import find_spikes_from_templates

    from dlsort.pursuit import SPIKE_DTYPE, BoundedPursuit

    check_choice("matching method", method, MATCHING_METHODS)
    if templates.num_units == 0:
        return np.zeros(0, dtype=SPIKE_DTYPE)
    job_kwargs = dict(job_kwargs or {})
    bounds = [MIN_AMPLITUDE, np.inf if max_amplitude is None else float(max_amplitude)]
    if method == "bounded-pursuit":
        node = BoundedPursuit(recording, templates, amplitudes=tuple(bounds), min_snr=min_snr, misfit=misfit,
                              amplitude_spread=amplitude_spread)
        spikes = run_node_pipeline(recording, [node], job_kwargs, job_name="find spikes (bounded-pursuit)",
                                   squeeze_output=True, names=["spikes"])
    else:
        method_kwargs: dict = {}
        if method in ("tdc-peeler", "nearest"):
            method_kwargs.update(noise_levels=noise_levels, detect_threshold=detect_threshold, peak_sign=peak_sign)
        if method == "circus-omp" and max_amplitude is not None:
            method_kwargs.update(amplitudes=bounds)
        spikes = find_spikes_from_templates(recording, templates, method=method, method_kwargs=method_kwargs,
                                            job_kwargs=job_kwargs)
    order = np.lexsort((spikes["sample_index"], spikes["segment_index"]))
    return spikes[order]

"""Template matching stage: find every spike of every template with a SpikeInterface engine.

``match_templates(recording, templates, method=...)`` returns a spike vector
(``sample_index``, ``channel_index``, ``cluster_index``, ``amplitude``, ``segment_index``).
Matching recovers spikes that detection merged or missed (overlaps, low amplitude) and labels
every spike of the recording, while clustering only ever sees a bounded sample.
"""

from __future__ import annotations

import numpy as np

from dlsort.errors import check_choice

MATCHING_METHODS = ("circus-omp", "wobble", "tdc-peeler", "nearest")


def match_templates(
    recording,
    templates,
    method: str = "circus-omp",
    noise_levels: np.ndarray | None = None,
    detect_threshold: float = 5.0,
    peak_sign: str = "neg",
    max_amplitude: float | None = None,
    job_kwargs: dict | None = None,
) -> np.ndarray:
    """Find spikes of ``templates`` in ``recording``.

    Parameters
    ----------
    recording : BaseRecording
        The preprocessed recording the templates were estimated on.
    templates : Templates
    method : {"circus-omp", "wobble", "tdc-peeler", "nearest"}, default: "circus-omp"
        SpikeInterface matching engine.
    noise_levels : np.ndarray or None
        Per-channel noise levels (needed by "tdc-peeler" and "nearest").
    detect_threshold : float, default: 5.0
        Detection threshold of the engines that detect before matching.
    peak_sign : {"neg", "pos", "both"}, default: "neg"
    max_amplitude : float or None
        "circus-omp": upper bound of the fitted amplitude relative to the template (lower bound 0.6,
        SpikeInterface's); None leaves it unbounded.
    job_kwargs : dict or None

    Returns
    -------
    np.ndarray
        Spike vector sorted by segment and sample.
    """
    from spikeinterface.sortingcomponents.matching import find_spikes_from_templates

    check_choice("matching method", method, MATCHING_METHODS)
    if templates.num_units == 0:
        return np.zeros(
            0,
            dtype=[
                ("sample_index", "int64"),
                ("channel_index", "int64"),
                ("cluster_index", "int64"),
                ("amplitude", "float64"),
                ("segment_index", "int64"),
            ],
        )
    method_kwargs: dict = {}
    if method in ("tdc-peeler", "nearest"):
        method_kwargs.update(noise_levels=noise_levels, detect_threshold=detect_threshold, peak_sign=peak_sign)
    if method == "circus-omp" and max_amplitude is not None:
        method_kwargs.update(amplitudes=[0.6, float(max_amplitude)])
    spikes = find_spikes_from_templates(
        recording, templates, method=method, method_kwargs=method_kwargs, job_kwargs=dict(job_kwargs or {})
    )
    order = np.lexsort((spikes["sample_index"], spikes["segment_index"]))
    return spikes[order]

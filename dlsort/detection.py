"""Spike detection stage.

``detect_peaks(recording, method=...)`` returns SpikeInterface's peak array
(``sample_index``, ``channel_index``, ``amplitude``, ``segment_index``) and the provenance of the
networks it ran. ``"threshold"`` is the locally exclusive threshold detector
(``dlsort.peak_picking.ThresholdPeakDetector``: SpikeInterface's ``locally_exclusive`` peaks, in
numpy); ``"neural"`` runs a trained neighbourhood network
(``dlsort.neural_detection.NeuralPeakDetector``) from the model catalog.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlsort.errors import PEAK_SIGNS, DlsortInputError, check_choice
from dlsort.neural_detection import (
    DEFAULT_CANDIDATE_THRESHOLD,
    DEFAULT_DETECTOR,
    DEFAULT_FAR_FIELD_RADIUS_UM,
    DEFAULT_FAR_FIELD_RATIO,
    DETECTION_MODES,
    check_far_field_rule,
    probability_logit,
)

DETECTION_METHODS = ("threshold", "neural")


def check_peak_sign(method: str, peak_sign: str) -> None:
    """Refuse a peak sign the detection method cannot find (the neural detector finds troughs only)."""
    check_choice("peak_sign", peak_sign, PEAK_SIGNS)
    if method == "neural" and peak_sign != "neg":
        raise DlsortInputError(f"the neural detector finds negative peaks (it was trained on spike troughs), not "
                               f"peak_sign={peak_sign!r}: use detection_method='threshold' for positive peaks")


def make_neural_detector(recording, noise_levels: np.ndarray, model: str | Path = DEFAULT_DETECTOR,
                         probability: float | None = None, mode: str = "candidates",
                         candidate_threshold: float = DEFAULT_CANDIDATE_THRESHOLD,
                         exclude_sweep_ms: float = 0.5, radius_um: float = 50.0, device: str = "cpu",
                         batch_size: int = 4096, far_field_ratio: float = DEFAULT_FAR_FIELD_RATIO,
                         far_field_radius_um: float = DEFAULT_FAR_FIELD_RADIUS_UM):
    """Load a detection network and wrap it in a SpikeInterface peak-detection node.

    Parameters
    ----------
    recording : BaseRecording
        Preprocessed recording with channel locations.
    noise_levels : np.ndarray
    model : str or Path, default: DEFAULT_DETECTOR ("detector-generic@1.2.0")
        Catalog id, ``id@version`` or a ``.safetensors`` file with its card beside it.
    probability : float or None
        Probability of a spike a peak needs; None takes the card's operating point.
    mode : {"candidates", "dense"}, default: "candidates"
    candidate_threshold : float, default: 3.0
    exclude_sweep_ms, radius_um : float
    device : str, default: "cpu"
    batch_size : int, default: 4096
        Candidate windows per forward pass.
    far_field_ratio : float, default: 14
        A peak is dropped when a peak this many times deeper lies between ``radius_um`` and
        ``far_field_radius_um`` away, from 0.2 ms after it to 0.8 ms before it; 0 keeps every peak.
    far_field_radius_um : float, default: 250

    Returns
    -------
    NeuralPeakDetector

    Raises
    ------
    DlsortInputError
        A model that is not a detector or whose card lacks its neighbourhood or (without
        ``probability``) its operating point, weights that do not fit their card, a probability
        outside (0, 1), or a far-field rule ``check_far_field_rule`` refuses.
    """
    from dlsort.models import load
    from dlsort.neural_detection import NeuralPeakDetector
    from dlsort.nn import build_network

    check_choice("detection mode", mode, DETECTION_MODES)
    if probability is not None and not 0.0 < probability < 1.0:
        raise DlsortInputError(f"detection probability must be in (0, 1), got {probability}")
    check_far_field_rule(far_field_ratio, radius_um, far_field_radius_um)
    tensors, card, model_file = load(model, task="detector")
    geometry = card["geometry"]
    missing = [key for key in ("neighbourhood_radius_um", "neighbourhood_slots") if key not in geometry]
    if missing:
        raise DlsortInputError(f"the card of detector {model_file.id} lacks geometry fields {missing}")
    if probability is None:
        if "probability" not in card.get("operating_point", {}):
            raise DlsortInputError(f"the card of detector {model_file.id} has no operating point: give the "
                                   "detection probability (detection_probability)")
        probability = float(card["operating_point"]["probability"])
    network = build_network(card["architecture"], tensors)
    return NeuralPeakDetector(
        recording, network, model_file.provenance(), card, noise_levels,
        threshold=probability_logit(probability), mode=mode,
        candidate_threshold=candidate_threshold, exclude_sweep_ms=exclude_sweep_ms, radius_um=radius_um,
        device=device, batch_size=batch_size, far_field_ratio=far_field_ratio, far_field_radius_um=far_field_radius_um,
    )


def detect_peaks(
    recording,
    method: str = "threshold",
    detect_threshold: float = 5.0,
    peak_sign: str = "neg",
    exclude_sweep_ms: float = 0.5,
    radius_um: float = 50.0,
    noise_levels: np.ndarray | None = None,
    model: str | Path = DEFAULT_DETECTOR,
    probability: float | None = None,
    mode: str = "candidates",
    candidate_threshold: float = DEFAULT_CANDIDATE_THRESHOLD,
    device: str = "cpu",
    batch_size: int = 4096,
    far_field_ratio: float = DEFAULT_FAR_FIELD_RATIO,
    far_field_radius_um: float = DEFAULT_FAR_FIELD_RADIUS_UM,
    job_kwargs: dict | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Detect spikes in a (preprocessed) recording.

    Parameters
    ----------
    recording : BaseRecording
        Filtered, referenced recording with channel locations.
    method : {"threshold", "neural"}, default: "threshold"
        ``"threshold"``: a sample is a peak when it crosses ``detect_threshold`` times the
        channel's noise level and is the extremum within ``radius_um`` and ``exclude_sweep_ms``.
        ``"neural"``: a network gives the probability of a spike centred on a channel; see
        ``make_neural_detector``.
    detect_threshold : float, default: 5.0
        Threshold in multiples of the noise level (MAD) of the ``"threshold"`` method.
    peak_sign : {"neg", "pos", "both"}, default: "neg"
        The neural detector finds negative peaks only.
    exclude_sweep_ms : float, default: 0.5
        Half-width of the temporal exclusion zone around a peak.
    radius_um : float, default: 50.0
        Spatial exclusion radius.
    noise_levels : np.ndarray or None
        Per-channel noise levels; estimated from random chunks when None.
    model : str or Path, default: DEFAULT_DETECTOR ("detector-generic@1.2.0")
        Detection network (``"neural"``).
    probability : float or None
        Probability a neural peak needs; None takes the model card's operating point.
    mode : {"candidates", "dense"}, default: "candidates"
        Neural detection on threshold candidates or on every sample.
    candidate_threshold : float, default: 3.0
        Multiple of the noise level at which candidates are proposed (``"candidates"`` mode).
    device : str, default: "cpu"
    batch_size : int, default: 4096
        Candidate windows per forward pass of the neural detector.
    far_field_ratio, far_field_radius_um : float, default: 14, 250
        The neural detector's far-field rule; see ``make_neural_detector``.
    job_kwargs : dict or None
        SpikeInterface job kwargs (``n_jobs``, ``chunk_duration``, ``progress_bar``).

    Returns
    -------
    peaks : np.ndarray
        Structured peak array sorted by segment then sample.
    models : list of dict
        Provenance of the networks used (empty for ``"threshold"``).
    """
    from spikeinterface.core import get_noise_levels
    from spikeinterface.core.node_pipeline import run_node_pipeline

    from dlsort.peak_picking import ThresholdPeakDetector

    check_choice("detection method", method, DETECTION_METHODS)
    check_peak_sign(method, peak_sign)
    job_kwargs = dict(job_kwargs or {})
    if noise_levels is None:
        noise_levels = get_noise_levels(recording, return_in_uV=False, n_jobs=job_kwargs.get("n_jobs", 1),
                                        progress_bar=job_kwargs.get("progress_bar", False))
    if method == "threshold":
        node = ThresholdPeakDetector(recording, noise_levels, peak_sign=peak_sign, detect_threshold=detect_threshold,
                                     exclude_sweep_ms=exclude_sweep_ms, radius_um=radius_um)
        models = []
    else:
        node = make_neural_detector(recording, noise_levels, model, probability, mode, candidate_threshold,
                                    exclude_sweep_ms, radius_um, device, batch_size, far_field_ratio,
                                    far_field_radius_um)
        models = list(node.models)
        if device == "cuda":
            job_kwargs["mp_context"] = "spawn"  # CUDA cannot run in forked workers
    peaks = run_node_pipeline(recording, [node], job_kwargs, job_name=f"detect peaks (dlsort {method})",
                              squeeze_output=True)
    return peaks, models

"""dlsort's parameters: defaults, descriptions and validation.

Each parameter is declared once in ``PARAMETERS`` with its default, allowed type, range or
choices and a description; ``run_sorter`` defaults, the sorter's descriptions, the CLI's
``--params`` file and the validation all read it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from dlsort.clustering import CLUSTERING_METHODS
from dlsort.denoising import DEFAULT_DENOISERS, DENOISING_METHODS
from dlsort.detection import DETECTION_METHODS
from dlsort.errors import PEAK_SIGNS, DlsortInputError
from dlsort.features import FEATURE_METHODS
from dlsort.matching import MATCHING_METHODS, WHITENING_MODES
from dlsort.neural_detection import (
    DEFAULT_FAR_FIELD_RADIUS_UM,
    DEFAULT_FAR_FIELD_RATIO,
    DETECTION_MODES,
    SORTER_CANDIDATE_THRESHOLD,
    SORTER_DETECTOR,
    check_far_field_rule,
)
from dlsort.preprocessing import MOTION_PRESETS
from dlsort.preprocessing.cache import CACHE_MODES


@dataclass(frozen=True)
class Parameter:
    """Declaration of one parameter.

    Attributes
    ----------
    default : Any
    description : str
    kind : type or tuple of types
        Accepted Python type(s) (``float`` accepts ints; ``None`` is accepted when ``nullable``).
    choices : tuple or None
        Allowed values.
    low, high : float or None
        Inclusive bounds for numbers.
    nullable : bool
        Whether ``None`` is allowed.
    """

    default: Any
    description: str
    kind: type | tuple = object
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    nullable: bool = False


PARAMETERS: dict[str, Parameter] = {
    "freq_min": Parameter(300.0, "High-pass corner of the band-pass filter (Hz).", float, low=1.0),
    "freq_max": Parameter(
        6000.0, "Low-pass corner of the band-pass filter (Hz), clipped below Nyquist.", float, low=10.0
    ),
    "common_reference": Parameter(
        "auto",
        "Subtract the common median across channels: True, False, or 'auto' (unless the probe is so compact that a "
        "spike reaches half of its channels within 50 um, as on a tetrode, where the median is the spike itself). "
        "'auto' since the generalization benchmark: on the tetrode case T20 the median erased units (docs/"
        "benchmarks.md); every other benchmark probe resolves to True, as before.",
        (bool, str),
        choices=(True, False, "auto"),
    ),
    "motion_correction": Parameter(
        "auto",
        "SpikeInterface motion-correction preset applied after filtering, None, or 'auto' (dredge_fast on probes "
        "with more than 32 channels spanning at most 60 um across, else none).",
        str,
        choices=("auto", *MOTION_PRESETS),
        nullable=True,
    ),
    "deepinterpolation_model": Parameter(
        None,
        "DeepInterpolation after referencing, before motion correction and detection: None (off; the default "
        "because it gained no well-detected unit on the ground-truth benchmark, docs/benchmarks.md), "
        "'deepinterpolation-np1' (shipped, Neuropixels 1.0) or a model trained with 'dlsort train "
        "deepinterpolation' (a .safetensors file with its card.json beside it, or a catalog id).",
        str,
        nullable=True,
    ),
    "detection_method": Parameter(
        "neural",
        "Spike detection: 'neural' (a neighbourhood network, see detection_model) or 'threshold' (locally exclusive "
        "threshold crossings, see detect_threshold). 'neural' is the default since the ground-truth benchmark: D 33 -> "
        "35 well-detected units, M 5 -> 2 false-positive units, S unchanged (docs/benchmarks.md).",
        str,
        choices=DETECTION_METHODS,
    ),
    "detect_threshold": Parameter(
        5.0,
        "Threshold in multiples of the noise level (MAD) of detection_method='threshold' and of template matching.",
        float,
        low=1.0,
        high=100.0,
    ),
    "detection_model": Parameter(
        SORTER_DETECTOR,
        "Detection network for detection_method='neural': a catalog id, id@version, or a .safetensors file with "
        "its card.json beside it. The default is pinned (a catalog update never changes results) and chosen by "
        "the ground-truth benchmark over detector-generic@1.1.0 (D 35 vs 32, M 38 vs 37 well-detected units) and "
        "1.2.0 (D 35 vs 34, L 36 vs 35, S M H equal, with the far-field rule; with candidates from 3 noise levels "
        "D 37 vs 35, L 36 vs 35); 1.1.0 and 1.2.0 detect better on layouts unlike their training probes "
        "(Neuropixels 2.0: recall 0.943 and 0.945 vs 0.872 for SNR 3-5 units), 1.2.0 with fewer false peaks on "
        "real noise statistics (precision 0.905 vs 0.876), which is why detection on its own "
        "(dlsort.detection.detect_peaks) defaults to 1.2.0 with candidates from 3 (docs/benchmarks.md).",
        str,
    ),
    "detection_probability": Parameter(
        None,
        "Probability of a spike a neural peak needs; None = the model card's operating point (calibrated at "
        "training: precision on held-out synthetic data equal to threshold detection's at 5).",
        float,
        low=0.001,
        high=0.999,
        nullable=True,
    ),
    "detection_mode": Parameter(
        "candidates",
        "Neural detection on the peaks a low threshold proposes ('candidates', see detection_candidate_threshold) "
        "or on every sample and channel ('dense', slower on CPU).",
        str,
        choices=DETECTION_MODES,
    ),
    "detection_candidate_threshold": Parameter(
        SORTER_CANDIDATE_THRESHOLD,
        "Threshold (multiples of the noise level) at which candidates are proposed to the network. 3.5 kept by the "
        "ground-truth benchmark: from 3 (the default of detection on its own) the sorter found the same "
        "well-detected units on S, M, D, L and H, at a lower mean accuracy on four of them (D 0.9354 vs 0.9360) "
        "(docs/benchmarks.md).",
        float,
        low=1.0,
        high=100.0,
    ),
    "detection_far_field_ratio": Parameter(
        DEFAULT_FAR_FIELD_RATIO,
        "Neural detection drops a peak as the far field of a larger spike when a peak this many times deeper lies "
        "beyond detection_radius_um and within detection_far_field_radius_um, from 0.2 ms after it to 0.8 ms before "
        "it; 0 keeps every peak. Chosen by the detection benchmark and a scratch sweep of the ratio: with detector-"
        "generic@1.0.0 the precision on case S rises from 0.933 to 0.958 (threshold detection at 5: 0.945; the false "
        "peaks are the far field of its largest unit) with recall unchanged on S and on M's SNR 3-5 units (0.952); in"
        " the sweep a ratio of 12 cost M 0.001 of that recall, 10 cost 0.004; sorting S, M, D, L and H found the same"
        " well-detected units (docs/benchmarks.md).",
        float,
        low=0.0,
    ),
    "detection_far_field_radius_um": Parameter(
        DEFAULT_FAR_FIELD_RADIUS_UM, "Outer radius of the neural detector's far-field rule (um).", float, low=0.0
    ),
    "peak_sign": Parameter("neg", "Sign of the spike peaks to detect.", str, choices=PEAK_SIGNS),
    "exclude_sweep_ms": Parameter(0.5, "Temporal exclusion around a detected peak (ms).", float, low=0.0, high=5.0),
    "detection_radius_um": Parameter(50.0, "Spatial exclusion radius of the detector (um).", float, low=0.0),
    "neighbourhood_radius_um": Parameter(
        75.0, "Radius of the channel neighbourhood of each spike (um).", float, low=1.0
    ),
    "ms_before": Parameter(1.0, "Snippet and template window before the peak (ms).", float, low=0.1, high=10.0),
    "ms_after": Parameter(1.5, "Snippet and template window after the peak (ms).", float, low=0.1, high=10.0),
    "denoising_method": Parameter(
        "neural",
        "Waveform denoising before features and locations: 'neural' (a single-channel network, see "
        "denoising_model), 'neighbourhood' (a neighbourhood autoencoder's reconstruction of the whole snippet: a "
        "lower error to the clean spike than 'neural', but fewer well-detected units in the ground-truth benchmark, "
        "S 13 vs 18, M 31 vs 38, D 24 vs 35) or 'none'. The default 'neural' was chosen by that benchmark over "
        "both (docs/benchmarks.md).",
        str,
        choices=DENOISING_METHODS,
    ),
    "denoising_model": Parameter(
        None,
        "Denoising network: a single-channel denoiser for denoising_method='neural', a neighbourhood autoencoder "
        "for 'neighbourhood'; a catalog id ('dlsort models list'), id@version, or the path of a .safetensors file "
        f"with its card.json beside it. None = the method's pinned default (a catalog update never changes results): "
        f"{DEFAULT_DENOISERS['neural'][0]} and {DEFAULT_DENOISERS['neighbourhood'][0]}.",
        str,
        nullable=True,
    ),
    "features_method": Parameter(
        "tpca",
        "Waveform features clustering reads: 'tpca' (temporal PCA of the detection channel) or 'autoencoder' (a "
        "learned embedding of the whole neighbourhood snippet, see features_model).",
        str,
        choices=FEATURE_METHODS,
    ),
    "features_model": Parameter(
        "autoencoder-generic@1.1.0",
        "Autoencoder for features_method='autoencoder' (shipped, or trained with 'dlsort train autoencoder'): a "
        "catalog id, id@version, or the path of a .safetensors file with its card.json beside it. The default is "
        "pinned (a catalog update never changes results) and chosen by the features benchmark over 1.0.0: on the "
        "true spikes of cases S, M, D adjusted Rand index 0.979 / 0.967 / 0.960 vs 0.976 / 0.968 / 0.940 "
        "(temporal PCA 0.969 / 0.951 / 0.906); end to end D 34 vs 33 well-detected units, in runs at two commits "
        "(docs/benchmarks.md).",
        str,
        nullable=True,
    ),
    "n_components": Parameter(5, "Embedding dimension per channel.", int, low=1, high=64),
    "clustering_method": Parameter(
        "hdbscan",
        "HDBSCAN implementation: 'hdbscan' (the hdbscan package) or 'sklearn-hdbscan' (scikit-learn's). 'hdbscan' "
        "since the features benchmark: on the true spikes of S, M, D as accurate (adjusted Rand index within 0.003) "
        "and 3-7x faster; end to end the same well-detected units (docs/benchmarks.md).",
        str,
        choices=CLUSTERING_METHODS,
    ),
    "clustering_max_spikes_per_channel": Parameter(
        1000, "Peaks per detection channel sampled for clustering (memory and time stay bounded).", int, low=50
    ),
    "min_cluster_size": Parameter(20, "Smallest cluster HDBSCAN may form.", int, low=2),
    "min_samples": Parameter(5, "HDBSCAN density smoothing (larger = more peaks called noise).", int, low=1),
    "curation": Parameter(
        True,
        "After matching, drop units with fewer than min_cluster_size / 2 spikes and units more than half of whose "
        "spikes coincide (0.4 ms) with a unit of larger amplitude.",
        bool,
    ),
    "location_scale_um": Parameter(
        10.0,
        "Distance (um) that weighs as much as one standard deviation of the waveform embedding in clustering.",
        float,
        low=0.1,
    ),
    "clustering_region_um": Parameter(
        500.0,
        "Probe tiles of at most this size (um) are clustered one by one, each with the peaks within 100 um of it, "
        "so clustering time grows linearly with the probe (0 = the whole probe at once). 500 um: as accurate as the "
        "whole probe on case M's spikes laid end to end, 1.5-2.4x faster at 384 channels and 1.2-1.6x slower at "
        "64-128 (benchmarks/features.py, two runs).",
        float,
        low=0.0,
    ),
    "footprint_components": Parameter(
        0,
        "Principal components of each peak's multi-channel embedding, laid on the channels of its tile, added to "
        "the clustering features (0 = none): they tell apart neighbouring units whose main-channel waveforms look "
        "alike. Off by default: at 8, dense case H 72 -> 73 well-detected units, drifting case D 35 -> 34 (a unit "
        "split), S, M, L unchanged (docs/benchmarks.md).",
        int,
        low=0,
        high=64,
    ),
    "split_components": Parameter(
        0,
        "PCA dimensions of the optional split step that re-clusters each cluster (0 = no split step).",
        int,
        low=0,
        high=64,
    ),
    "split_bimodality": Parameter(
        0.0,
        "Discriminant split: a cluster cut in two by k-means is kept cut when its members' projection on the halves' "
        "Fisher discriminant is at least this bimodal (0-1; 0 = no split). Off by default: on the true spikes of the "
        "drifting case D the one cluster holding two units scores 0.47 while 12 single-unit clusters score above "
        "0.5 (docs/benchmarks.md).",
        float,
        low=0.0,
        high=1.0,
    ),
    "footprint_bimodality": Parameter(
        0.7,
        "Footprint split: a cluster cut in two by k-means on its members' amplitudes at its trough on the channels "
        "near its centre is kept cut when their projection on the halves' Fisher discriminant is at least this "
        "bimodal (0-1; 0 = no split); it tells apart neighbouring units whose main-channel waveforms look alike "
        "(on a sparse probe, one channel near the centre: units of one shape and different amplitudes). Each half "
        "is tested again. 0.8 since the ground-truth benchmark: dense case H 72 -> 74 well-detected units (its "
        "units 1 and 74 shared a cluster, which scores 0.84), S, M, D, L unchanged; at 0.5 drifting case D lost a "
        "unit to cuts scoring 0.50-0.73. Testing each half again: polytrode P4 15 -> 18 (three units in one "
        "cluster); the one-channel footprint: MEA 75 -> 76. 0.7 since, with matching_amplitude_spread: U 14 -> 16 (a "
        "cluster of two units of one shape on one electrode scores 0.743), the other cases the same units "
        "(docs/benchmarks.md).",
        float,
        low=0.0,
        high=1.0,
    ),
    "footprint_radius_um": Parameter(
        40.0,
        "Channels at most this far (um) from a cluster's most common detection channel make the footprints of "
        "the footprint split.",
        float,
        low=1.0,
    ),
    "merge_similarity": Parameter(
        0.95,
        "Cosine similarity of templates above which clusters merge. 0.95 since the ground-truth benchmark: pieces of "
        "one unit measured >= 0.94, neighbouring units up to 0.92 (dense case H); H 63 -> 72 well-detected units, "
        "S, M, D, L unchanged, against 0.9 (docs/benchmarks.md).",
        float,
        low=0.0,
        high=1.0,
    ),
    "merge_masked_similarity": Parameter(
        0.98,
        "Second merge (on the templates averaged from the recording) only: clusters also merge when their "
        "templates, each kept on the channels where it reaches the noise level, have at least this cosine "
        "similarity (None = the dense similarity alone). Averaging noise on the channels a weak unit does not "
        "reach deflates the dense similarity of its pieces on arrays of many channels. 0.98 since the benchmark: "
        "16 x 16 MEA 75 -> 78 well-detected units (scratch runs with the other defaults; its units 1, 15 and 39 "
        "were each split in two; 78 in the benchmark), the other cases and families the same; at 0.95-0.97 two "
        "units of one shape on one MEA electrode merged (docs/benchmarks.md).",
        float,
        low=0.0,
        high=1.0,
        nullable=True,
    ),
    "merge_amplitude_ratio": Parameter(
        0.7,
        "Similar templates merge only when the smaller peak amplitude is at least this fraction of the larger "
        "(cosine similarity ignores scale). 0.7 since the ground-truth benchmark, against 0.5: tetrode T20 4 -> 6 "
        "well-detected units (two units of one shape and different sizes), MEA 62 -> 63, the other cases and "
        "probe families unchanged (docs/benchmarks.md).",
        float,
        low=0.0,
        high=1.0,
    ),
    "merge_refractory_ms": Parameter(
        0.0,
        "Similar clusters are not merged when their spikes fall within this many ms of each other at half the rate "
        "or more that independent neurons would (two neurons, not one split in two); 0 = similarity alone. Off by "
        "default: at 1.0 ms cases S, M and D kept the same well-detected units (benchmarks/run_benchmark.py), no "
        "measured gain.",
        float,
        low=0.0,
        high=10.0,
    ),
    "min_template_snr": Parameter(
        5.0,
        "Templates whose peak is below this many noise levels are dropped (5 = the detection threshold), unless "
        "weak_template_snr keeps them.",
        float,
        low=0.0,
    ),
    "weak_template_snr": Parameter(
        3.5,
        "Templates whose peak is between this and min_template_snr noise levels are kept when their cluster fires "
        "at least weak_template_rate_hz (estimated from the clustering sample): clusters of noise crossings hold "
        "few peaks, a real low-amplitude unit keeps firing. Chosen by the benchmark (benchmarks/run_benchmark.py, "
        "real_data.py, generalization.py): well-detected units L 34 -> 36, HN 34 -> 35, LIN 15 -> 16, P4 11 -> 15, "
        "U 11 -> 12, MEA 58 -> 63, the other cases unchanged (at 3.75); 3.5 since: P4 18 -> 19 (its unit 30, a "
        "template of 3.54 noise levels), the other cases unchanged (docs/benchmarks.md). Set it to min_template_snr "
        "to turn it off.",
        float,
        low=0.0,
    ),
    "weak_template_rate_hz": Parameter(
        1.5,
        "Firing rate (peaks per second of recording) a cluster needs for weak_template_snr to keep its template. "
        "Chosen by the benchmark (see weak_template_snr): the noise clusters between weak_template_snr and "
        "min_template_snr fired about 1 Hz at most in cases D, L, H and HN, the units gained 2.9 Hz or more.",
        float,
        low=0.0,
    ),
    "weak_cluster_split": Parameter(
        True,
        "A cluster whose template is below weak_template_snr but that fires at least weak_template_rate_hz is cut "
        "in two by k-means on its members' trough footprints, the weaker half made noise, and the template of the "
        "stronger half judged again: noise crossings that share a cluster with a small unit's spikes pull its "
        "template below the threshold. On since the benchmark (rows dlsort:weak_cluster_split=false): the hybrid HN "
        "35 -> 36 well-detected units (its unit 25, SNR 5.2: 182 spikes among 350 noise crossings), D 37 -> 38 (its "
        "unit 32 at the threshold, accuracy 0.7989 -> 0.8004), S, M, L and H unchanged (docs/benchmarks.md).",
        bool,
    ),
    "matching_method": Parameter(
        "bounded-pursuit",
        "Template matching engine that finds every spike of every unit, or 'none' to keep the clustered peaks "
        "(then every peak is clustered). 'bounded-pursuit' (dlsort's own, dlsort.pursuit) since the ground-truth "
        "benchmark: against circus-omp, mean accuracy S 0.900 -> 0.900, M 0.948 -> 0.949, D 0.929 -> 0.935, "
        "L 0.890 -> 0.894, H 0.922 -> 0.932, well-detected units the same but for D (36 -> 37) (docs/benchmarks.md).",
        str,
        choices=(*MATCHING_METHODS, "none"),
    ),
    "matching_max_amplitude": Parameter(
        None,
        "bounded-pursuit and circus-omp: largest amplitude, relative to its template, at which a unit may claim a "
        "spike (None = unbounded, SpikeInterface's default); a bound stops a small template from absorbing a larger "
        "unit.",
        float,
        low=1.0,
        nullable=True,
    ),
    "matching_min_snr": Parameter(
        4.0,
        "bounded-pursuit only: a template may claim a spike only where its inner product with the recording is at "
        "least this many times its spread over the recording (its noise). 4 since the ground-truth benchmark: at 0 "
        "case H lost a unit that no peer finds (mean accuracy 0.932 -> 0.922), at 4.5 and 5 case L lost its weakest "
        "well-detected unit (docs/benchmarks.md).",
        float,
        low=0.0,
    ),
    "matching_misfit": Parameter(
        0.2,
        "bounded-pursuit only: a template may claim a spike only where its inner product is at least this fraction "
        "of the largest projection on it of each spike fitted within one template length, so what a large spike "
        "leaves where its template does not quite fit it (drift, shape variability) is not taken for a small "
        "unit's spike; 0 turns the rule off. 0.2 since the ground-truth benchmark: without it the drifting case D "
        "lost 3 well-detected units (37 -> 34) to such fits; 0.1 and 0.3 did less well there (docs/benchmarks.md).",
        float,
        low=0.0,
    ),
    "matching_amplitude_spread": Parameter(
        0.1,
        "bounded-pursuit only: spread (standard deviation) of a unit's spike amplitudes relative to its template, "
        "a prior by which templates that compete for a spike are ranked: a fit at amplitude a counts "
        "(a - 1)^2 / spread^2 noise variances less (None = ranked by the energy they remove alone). Two units "
        "of one shape and different sizes, on one electrode of a sparse probe, remove the same energy from each "
        "other's spikes at free amplitude; the prior gives each spike to the one it fits near amplitude 1. 0.1 since "
        "the ground-truth benchmark, with footprint_bimodality 0.7 (which cuts such a cluster): Utah-like grid U "
        "14 -> 16 well-detected units (its units 12 and 48: 0.97 accurate each, 0.93 at 0.2, 0.71 without the "
        "prior); H mean accuracy 0.9315 -> 0.9324; the other cases and families the same units (docs/benchmarks.md).",
        float,
        low=0.01,
        nullable=True,
    ),
    "matching_chunk_duration": Parameter(
        "100ms",
        "Duration of the chunks template matching works in (chunk_duration is used by every other pass). '100ms' "
        "since the ground-truth benchmark: in 1 s chunks circus-omp lost spikes late in each chunk (case H, units "
        "found with recall >= 0.98: 47 spikes missed, 37 in the last 30 % of their chunk, none in the first 30 %); "
        "in 100 ms chunks it missed 15, and mean accuracy rose on H 0.921 -> 0.922 and D 0.928 -> 0.929 "
        "(docs/benchmarks.md): a numerically dependent atom ends circus-omp's fitting of the rest of its chunk. "
        "SpikeInterface's circus-omp recommends 100 ms chunks. bounded-pursuit sorts D, L and H the same in 1 s "
        "chunks.",
        str,
    ),
    "matching_whitening": Parameter(
        "stable",
        "Match templates on the locally whitened recording (noise decorrelated between channels within 100 um, as "
        "spykingcircus2 does), with the templates whitened alike: 'always', 'never', or 'stable' (unless motion "
        "correction estimated >= 5 um of drift). 'stable' since the ground-truth benchmark: whitening raised the mean "
        "accuracy of the static cases (M 0.936 -> 0.948, H 0.880 -> 0.906) but lost 4 well-detected units on the "
        "drifting case D (35 -> 31) (docs/benchmarks.md).",
        str,
        choices=WHITENING_MODES,
    ),
    "cache_preprocessing": Parameter(
        "auto",
        "Compute the filtered and referenced traces once for the sorter's passes (motion estimation, detection, "
        "features, templates, matching) instead of filtering them again in each: 'memory' (shared memory, "
        "when they take at most a quarter of the available memory and fit in /dev/shm), 'disk' (float32 in the "
        "sort's scratch folder, removed after the sort, when 10 % of its file system stays free), 'auto' (memory, "
        "else disk, else not cached) or 'none'. Memory and disk hold the same values, which differ from the "
        "uncached traces only by float32 rounding where chunks meet. 'auto' since the ground-truth benchmark: "
        "wall time S 25.5 -> 17.5 s, M 64.3 -> 44.3 s, D 60.8 -> 43.2 s, well-detected units unchanged but for D "
        "(36 -> 35, a unit at the 0.8 line) (docs/benchmarks.md).",
        str,
        choices=CACHE_MODES,
    ),
    "device": Parameter(
        "auto", "Device of the neural stages: 'auto', 'cpu' or 'cuda'.", str, choices=("auto", "cpu", "cuda")
    ),
    "seed": Parameter(0, "Seed of every random choice.", int, low=0),
    "n_jobs": Parameter(-1, "Parallel workers (-1 = all cores).", int),
    "chunk_duration": Parameter("1s", "Duration of the chunks the recording is processed in.", str),
    "progress_bar": Parameter(True, "Show progress bars.", bool),
}

DEFAULT_PARAMS: dict[str, Any] = {name: spec.default for name, spec in PARAMETERS.items()}
PARAMS_DESCRIPTION: dict[str, str] = {name: spec.description for name, spec in PARAMETERS.items()}


def validate_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check parameters and return them merged over the defaults.

    Parameters
    ----------
    params : dict
        User parameters (any subset of ``DEFAULT_PARAMS``).

    Returns
    -------
    dict
        Complete, validated parameters.

    Raises
    ------
    DlsortInputError
        For an unknown key, a wrong type, a value out of range or not among the choices.
    """
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise DlsortInputError(f"unknown dlsort parameter(s) {unknown}; valid parameters are {sorted(PARAMETERS)}")
    merged = {**DEFAULT_PARAMS, **params}
    for name, value in merged.items():
        _check_one(name, PARAMETERS[name], value)
    if merged["features_method"] == "autoencoder" and merged["features_model"] is None:
        raise DlsortInputError("features_method='autoencoder' needs features_model: a model trained with 'dlsort "
                               "train autoencoder' (the path of its weights.safetensors) or a catalog id")
    check_far_field_rule(merged["detection_far_field_ratio"], merged["detection_radius_um"],
                         merged["detection_far_field_radius_um"])
    if merged["footprint_bimodality"] > 0 and merged["footprint_radius_um"] > merged["neighbourhood_radius_um"]:
        raise DlsortInputError(
            f"footprint_radius_um={merged['footprint_radius_um']} exceeds neighbourhood_radius_um="
            f"{merged['neighbourhood_radius_um']}: no spike's neighbourhood would cover its footprint channels; "
            "lower footprint_radius_um or raise neighbourhood_radius_um"
        )
    if merged["n_jobs"] == 0 or merged["n_jobs"] < -1:
        raise DlsortInputError(f"n_jobs={merged['n_jobs']} is invalid; use -1 (all cores) or a positive number")
    return merged


def _check_one(name: str, spec: Parameter, value: Any) -> None:
    if value is None:
        if spec.nullable:
            return
        raise DlsortInputError(f"parameter {name!r} must not be None")
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    ok = any(_is_instance(value, kind) for kind in kinds)
    if not ok:
        expected = " or ".join(k.__name__ for k in kinds)
        raise DlsortInputError(f"parameter {name!r} must be {expected}, got {type(value).__name__} {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise DlsortInputError(f"parameter {name!r}={value!r} is not one of {list(spec.choices)}")
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise DlsortInputError(f"parameter {name!r}={value!r} is out of range [{spec.low}, {spec.high}]")


def _is_instance(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, kind)

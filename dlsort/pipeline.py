"""The dlsort pipeline, top-down.

recording -> preprocess (filter, reference; cached) -> motion correction -> detect peaks -> sample peaks
for clustering -> neighbourhood snippets -> denoise -> features -> HDBSCAN (+ optional split)
-> merge clusters with similar feature-decoded templates -> templates from the recording (aligned on their
peaks, merged again by the same rule) -> clean -> template matching over the whole recording -> curation -> sorting.

Every stage streams in chunks through SpikeInterface's job machinery; clustering sees at most
``clustering_max_spikes_per_channel`` peaks per channel, so its memory does not grow with the
recording's length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from spikeinterface.core import NumpySorting, Templates, get_noise_levels

from dlsort.clustering import cluster, drop_weaker_halves
from dlsort.curation import remove_ghosts_and_duplicates
from dlsort.denoising import make_denoiser
from dlsort.detection import detect_peaks
from dlsort.features import extract_features
from dlsort.matching import match_templates, should_whiten, whiten_for_matching
from dlsort.preprocessing import (
    estimated_drift_um,
    motion_corrected,
    preprocess,
    resolve_common_reference,
    resolve_motion_correction,
)
from dlsort.preprocessing.cache import cache_preprocessed
from dlsort.spike_encoder import make_spike_encoder
from dlsort.templates import (
    RefractoryCheck,
    clean_templates,
    cluster_rates_hz,
    estimate_merged_templates,
    estimate_templates,
    merge_similar,
    template_snrs,
    templates_from_features,
)
from dlsort.validation import resolve_device
from dlsort.waveforms import build_neighbourhoods

logger = logging.getLogger("dlsort")


@dataclass
class PipelineResult:
    """What the pipeline produces.

    Attributes
    ----------
    sorting : NumpySorting
        The sorted units.
    templates : Templates
        One template per unit (preprocessed units, sparse).
    num_peaks : int
        Peaks detected.
    motion_correction : str or None
        The motion-correction preset applied (``"auto"`` resolved).
    common_referenced : bool
        Whether the common median was subtracted (``common_reference``, ``"auto"`` resolved).
    preprocessing_cache : {"memory", "disk"} or None
        Where the preprocessed traces were computed once for the sorter's passes (``cache_preprocessing``);
        None: not cached.
    estimated_drift_um : float or None
        Peak-to-peak drift the motion correction estimated (None without motion correction).
    matching_whitened : bool
        Whether templates were matched on the whitened recording (``matching_whitening``).
    models : list of dict
        Every network used (``{"id", "sha256", "task"}``); empty for classical methods.
    """

    sorting: NumpySorting
    templates: Templates
    num_peaks: int
    motion_correction: str | None
    common_referenced: bool = True
    preprocessing_cache: str | None = None
    estimated_drift_um: float | None = None
    matching_whitened: bool = False
    models: list[dict] = field(default_factory=list)


def sample_peaks_per_channel(peaks: np.ndarray, max_per_channel: int | None, seed: int | None) -> np.ndarray:
    """Indices of a random sample of at most ``max_per_channel`` peaks per detection channel, sorted.

    Parameters
    ----------
    peaks : np.ndarray
    max_per_channel : int or None
        None keeps every peak.
    seed : int or None

    Returns
    -------
    np.ndarray
        Sorted int64 indices into ``peaks``.
    """
    if max_per_channel is None:
        return np.arange(len(peaks))
    rng = np.random.default_rng(seed)
    chosen = []
    for channel in np.unique(peaks["channel_index"]):
        members = np.flatnonzero(peaks["channel_index"] == channel)
        chosen.append(rng.choice(members, size=min(max_per_channel, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype="int64")


def sampling_weights(channels: np.ndarray, sampled_channels: np.ndarray, num_channels: int) -> np.ndarray:
    """Per channel, the detected peaks each sampled peak stands for (0 where none was sampled).

    Parameters
    ----------
    channels : np.ndarray
        Detection channel of every peak.
    sampled_channels : np.ndarray
        Detection channel of the sampled peaks (``sample_peaks_per_channel``).
    num_channels : int

    Returns
    -------
    np.ndarray
        float64 (num_channels,).
    """
    detected = np.bincount(channels, minlength=num_channels)
    sampled = np.bincount(sampled_channels, minlength=num_channels)
    return np.where(sampled > 0, detected / np.maximum(sampled, 1), 0.0)


def interpolation_models(model: str | None) -> list[dict]:
    """Provenance of the DeepInterpolation model, or nothing when it is off."""
    from dlsort.models import resolve_model
    from dlsort.preprocessing.deepinterpolation import TASK

    return [] if model is None else [resolve_model(model, TASK).provenance()]


def run_pipeline(recording, params: dict, job_kwargs: dict, scratch_folder: Path | None = None) -> PipelineResult:
    """Sort a recording with validated dlsort parameters.

    Parameters
    ----------
    recording : BaseRecording
        A recording with channel locations (checked by ``dlsort.validation``).
    params : dict
        Validated parameters (see ``dlsort.params.DEFAULT_PARAMS``).
    job_kwargs : dict
        SpikeInterface job kwargs (``n_jobs``, ``chunk_duration``, ``progress_bar``).
    scratch_folder : Path or None, default: None
        Where intermediate traces may be written: the preprocessed traces when they are cached on disk
        (``dlsort.preprocessing.cache``), or the DeepInterpolated ones with ``cache_preprocessing="none"``
        (``dlsort.preprocessing.preprocess``); the caller removes it afterwards. None: nothing is written.

    Returns
    -------
    PipelineResult
    """
    p = params
    seed = p["seed"]
    motion_preset = resolve_motion_correction(recording, p["motion_correction"])
    referenced = resolve_common_reference(recording, p["common_reference"])
    device = resolve_device(p["device"])
    rec = preprocess(
        recording,
        freq_min=p["freq_min"],
        freq_max=p["freq_max"],
        common_reference=referenced,
        motion_correction=None,
        job_kwargs=job_kwargs,
        deepinterpolation_model=p["deepinterpolation_model"],
        device=device,
        # DeepInterpolated traces are written to the scratch folder only when no cache will hold them (once)
        scratch_folder=scratch_folder if p["cache_preprocessing"] == "none" else None,
    )
    # The filtered traces are computed once; motion is estimated on them and interpolated lazily by every pass
    # (a spatial mix at each sample; none when no displacement is estimated).
    rec, cache = cache_preprocessed(rec, p["cache_preprocessing"], job_kwargs, folder=scratch_folder)
    rec, motion = motion_corrected(rec, motion_preset, job_kwargs, seed=seed)
    drift_um = estimated_drift_um(motion)
    noise_levels = get_noise_levels(
        rec,
        return_in_uV=False,
        random_slices_kwargs=dict(seed=seed),
        n_jobs=job_kwargs.get("n_jobs", 1),
        progress_bar=job_kwargs.get("progress_bar", False),
    )
    logger.info("detecting peaks (%s)", p["detection_method"])
    peaks, detection_models = detect_peaks(
        rec,
        method=p["detection_method"],
        detect_threshold=p["detect_threshold"],
        peak_sign=p["peak_sign"],
        exclude_sweep_ms=p["exclude_sweep_ms"],
        radius_um=p["detection_radius_um"],
        noise_levels=noise_levels,
        model=p["detection_model"],
        probability=p["detection_probability"],
        mode=p["detection_mode"],
        candidate_threshold=p["detection_candidate_threshold"],
        far_field_ratio=p["detection_far_field_ratio"],
        far_field_radius_um=p["detection_far_field_radius_um"],
        device=device,
        job_kwargs=job_kwargs,
    )
    logger.info("%d peaks", len(peaks))
    matching = p["matching_method"]
    whitened = matching != "none" and should_whiten(p["matching_whitening"], drift_um)
    cap = None if matching == "none" else p["clustering_max_spikes_per_channel"]
    sampled = peaks[sample_peaks_per_channel(peaks, cap, seed)]
    weights = sampling_weights(peaks["channel_index"], sampled["channel_index"], rec.get_num_channels())
    num_peaks = len(peaks)
    del peaks  # only the sample is needed from here on; template matching finds every spike again
    neighbourhoods = build_neighbourhoods(rec.get_channel_locations(), p["neighbourhood_radius_um"])
    window = dict(ms_before=p["ms_before"], ms_after=p["ms_after"])
    denoiser = make_denoiser(
        p["denoising_method"],
        rec.sampling_frequency,
        p["ms_before"],
        p["ms_after"],
        noise_levels=noise_levels,
        model=p["denoising_model"],
        device=device,
        channel_locations=rec.get_channel_locations(),
        neighbourhoods=neighbourhoods,
    )
    # CUDA cannot be used in a forked process: workers that run networks on the GPU are spawned instead.
    feature_job_kwargs = {**job_kwargs, "mp_context": "spawn"} if device == "cuda" else job_kwargs
    encoder = None
    if p["features_method"] == "autoencoder":
        encoder = make_spike_encoder(p["features_model"], rec.sampling_frequency, rec.get_channel_locations(),
                                     neighbourhoods, p["ms_before"], p["ms_after"], noise_levels, device)
    labels = np.full(len(sampled), -1, dtype="int64")
    if len(sampled) >= p["min_cluster_size"]:
        features = extract_features(
            rec,
            sampled,
            method=p["features_method"],
            neighbourhoods=neighbourhoods,
            n_components=p["n_components"],
            denoiser=denoiser,
            encoder=encoder,
            seed=seed,
            job_kwargs=feature_job_kwargs,
            **window,
        )
        labels = cluster(
            features,
            sampled,
            method=p["clustering_method"],
            min_cluster_size=p["min_cluster_size"],
            min_samples=p["min_samples"],
            location_scale_um=p["location_scale_um"],
            region_um=p["clustering_region_um"],
            split_components=p["split_components"],
            footprint_components=p["footprint_components"],
            split_bimodality=p["split_bimodality"],
            footprint_bimodality=p["footprint_bimodality"],
            footprint_radius_um=p["footprint_radius_um"],
            channel_locations=rec.get_channel_locations(),
        )
    merge = dict(similarity_threshold=p["merge_similarity"], min_amplitude_ratio=p["merge_amplitude_ratio"],
                 refractory=RefractoryCheck.of_peaks(sampled, rec, p["merge_refractory_ms"]))
    if np.any(labels >= 0):
        # Merge decisions on templates decoded from the features (no pass over the recording) ...
        labels = merge_similar(templates_from_features(features, sampled, labels, rec), labels, **merge)
    # ... and the final templates averaged from the recording: dense, so matching sees every channel, aligned on their
    # peaks and merged again by the same rule (on a sparse probe the pieces of a unit may share no channel in the
    # decoded templates).
    dense_merge = dict(merge, noise_levels=noise_levels, masked_similarity_threshold=p["merge_masked_similarity"])
    sampled, labels, templates = estimate_merged_templates(rec, sampled, labels, peak_sign=p["peak_sign"],
                                                           merge=dense_merge, seed=seed, job_kwargs=job_kwargs,
                                                           **window)
    rates_hz = cluster_rates_hz(sampled["channel_index"], labels, weights, templates.num_units,
                                rec.get_total_duration())
    if p["weak_cluster_split"] and np.any(labels >= 0):  # (no features were computed otherwise)
        # a small unit's spikes in a cluster of noise crossings: keep the stronger half and average it again
        diluted = np.flatnonzero((template_snrs(templates, noise_levels) < p["weak_template_snr"])
                                 & (rates_hz >= p["weak_template_rate_hz"]))
        cut = drop_weaker_halves(features, sampled["channel_index"], labels, diluted, rec.get_channel_locations(),
                                 p["footprint_radius_um"], p["min_cluster_size"])
        if not np.array_equal(cut, labels):
            labels = cut
            templates = estimate_templates(rec, sampled, labels, seed=seed, job_kwargs=job_kwargs, **window)
            rates_hz = cluster_rates_hz(sampled["channel_index"], labels, weights, templates.num_units,
                                        rec.get_total_duration())
    templates, kept = clean_templates(templates, noise_levels, p["min_template_snr"], rates_hz,
                                      weak_snr=p["weak_template_snr"], weak_min_rate_hz=p["weak_template_rate_hz"])
    if matching == "none":
        remap = np.full(rates_hz.size + 1, -1, dtype="int64")  # the extra last slot maps label -1 to -1
        remap[kept] = np.arange(len(kept))
        unit_of_peak = remap[labels]
        spikes = sampled[unit_of_peak >= 0]
        units = unit_of_peak[unit_of_peak >= 0]
    else:
        searched, searched_templates = (whiten_for_matching(rec, templates, seed) if whitened else (rec, templates))
        found = match_templates(
            searched,
            searched_templates,
            method=matching,
            noise_levels=noise_levels,
            detect_threshold=p["detect_threshold"],
            peak_sign=p["peak_sign"],
            max_amplitude=p["matching_max_amplitude"],
            min_snr=p["matching_min_snr"],
            misfit=p["matching_misfit"],
            amplitude_spread=p["matching_amplitude_spread"],
            job_kwargs={**job_kwargs, "chunk_duration": p["matching_chunk_duration"]},
        )
        spikes, units = found, found["cluster_index"]
    if p["curation"]:
        amplitudes = np.abs(templates.get_dense_templates()).max(axis=(1, 2))
        keep = remove_ghosts_and_duplicates(
            spikes["sample_index"],
            spikes["segment_index"],
            units,
            amplitudes,
            min_spikes=p["min_cluster_size"] // 2,
            window=int(0.4e-3 * rec.sampling_frequency),
        )
        remap = np.cumsum(keep) - 1
        spikes, units = spikes[keep[units]], remap[units[keep[units]]]
        templates = templates.select_units(templates.unit_ids[keep])
    sorting = _to_sorting(spikes, units, rec, templates.num_units)
    return PipelineResult(
        sorting=sorting, templates=templates, num_peaks=num_peaks, motion_correction=motion_preset,
        common_referenced=referenced, preprocessing_cache=cache, estimated_drift_um=drift_um,
        matching_whitened=whitened,
        models=[*interpolation_models(p["deepinterpolation_model"]), *detection_models, *denoiser.models,
                *(encoder.models if encoder is not None else [])],
    )


def _to_sorting(spikes: np.ndarray, units: np.ndarray, recording, num_units: int) -> NumpySorting:
    samples, labels = [], []
    for segment in range(recording.get_num_segments()):
        in_segment = spikes["segment_index"] == segment
        samples.append(spikes["sample_index"][in_segment])
        labels.append(units[in_segment])
    return NumpySorting.from_samples_and_labels(
        samples, labels, recording.sampling_frequency, unit_ids=np.arange(num_units)
    )

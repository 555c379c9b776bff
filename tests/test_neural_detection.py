"""The neighbourhood detection network, its SpikeInterface node, the shipped detector and its training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import JOB, folder_of, saved_recording

from dlsort.detection import detect_peaks
from dlsort.detection_scores import ground_truth_main_channels, score_detection
from dlsort.errors import DlsortInputError
from dlsort.neural_detection import candidate_logits, detection_logits
from dlsort.nn import NeighbourhoodDetector
from dlsort.training.detector import DEFAULT_GEOMETRY, DetectorGeometry, detector_card
from dlsort.training.trainer import TrainingReport, write_model
from dlsort.waveforms import build_neighbourhoods


def _random_network(seed: int = 0) -> NeighbourhoodDetector:
    torch.manual_seed(seed)
    return NeighbourhoodDetector().eval()


def _inputs(batch: int = 3, slots: int = 6, samples: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    traces = torch.as_tensor(rng.normal(size=(batch, slots, samples)).astype("float32"))
    positions = torch.as_tensor(rng.uniform(-40, 40, size=(batch, slots, 2)).astype("float32"))
    positions[:, 0] = 0.0
    mask = torch.ones(batch, slots)
    return traces, positions, mask


def test_network_ignores_padding_and_the_order_of_neighbours():
    network = _random_network()
    traces, positions, mask = _inputs()
    mask[:, 4:] = 0.0
    reference = network(traces, positions, mask)
    noisy = traces.clone()
    noisy[:, 4:] = 100.0  # whatever the padded slots hold
    assert torch.allclose(network(noisy, positions, mask), reference, atol=1e-5)
    order = [0, 3, 1, 2, 5, 4]
    assert torch.allclose(network(traces[:, order], positions[:, order], mask[:, order]), reference, atol=1e-5)
    with pytest.raises(ValueError, match="expected traces"):
        network(traces, positions[:, :, :1], mask)


def test_valid_logits_are_the_padded_ones_whose_receptive_field_lies_inside_the_window():
    network = _random_network()
    traces, positions, mask = _inputs()
    half = network.receptive_field // 2
    valid = network(traces, positions, mask, valid=True)
    assert valid.shape == (3, 50 - 2 * half)
    assert torch.allclose(valid, network(traces, positions, mask)[:, half:-half], atol=1e-5)


def test_candidate_logits_equal_the_dense_map_at_the_candidates():
    network = _random_network()
    rng = np.random.default_rng(1)
    locations = np.array([[0.0, y] for y in range(0, 200, 20)])
    traces = rng.normal(size=(400, len(locations))).astype("float32")
    neighbourhoods = build_neighbourhoods(locations, 50.0, max_width=6)
    relative = neighbourhoods.relative_positions(locations)
    dense = detection_logits(network, traces, neighbourhoods, relative, max_elements=10_000)
    samples, channels = np.array([50, 200, 333]), np.array([0, 5, 9])
    around = candidate_logits(network, traces, samples, channels, neighbourhoods, relative, reach=2)
    expected = dense[channels[:, None], samples[:, None] + np.arange(-2, 3)]
    np.testing.assert_allclose(around, expected, atol=1e-5)


def _write_detector(folder, network: NeighbourhoodDetector, geometry: DetectorGeometry = DEFAULT_GEOMETRY) -> str:
    card = detector_card(network, "detector-test", "0.1.0", "random weights", geometry, [], TrainingReport(), 0.0,
                         calibrated=False)
    return str(write_model(folder, network, card))


@pytest.fixture(scope="module")
def generated():
    """A 16-channel staggered recording with 6 units, band-passed (the detector's input)."""
    from spikeinterface.core import generate_ground_truth_recording
    from spikeinterface.preprocessing import bandpass_filter

    from dlsort.groundtruth import make_probe

    recording, sorting = generate_ground_truth_recording(durations=[8.0], num_units=6, seed=3,
                                                         probe=make_probe("staggered", 16))
    return bandpass_filter(recording, dtype="float32"), sorting


@pytest.mark.parametrize("mode", ["candidates", "dense"])
def test_node_finds_the_same_peaks_whatever_the_chunking(tmp_path, generated, mode):
    recording, _ = generated
    model = _write_detector(tmp_path / "model", _random_network(2))
    # a low far-field ratio drops many peaks, so that a margin too short for the rule shows at the borders
    common = dict(method="neural", model=model, probability=0.3, mode=mode, candidate_threshold=3.0,
                  far_field_ratio=3.0, far_field_radius_um=150.0)
    whole, models = detect_peaks(recording, job_kwargs=dict(JOB, chunk_duration="8s"), **common)
    chunked, _ = detect_peaks(recording, job_kwargs=dict(n_jobs=2, chunk_duration="0.37s", progress_bar=False),
                              **common)
    assert len(whole) > 1000
    # Chunks of other lengths run torch's convolutions on other shapes, whose float32 rounding can
    # flip a near-tie between two logits of this random network (1 peak of 23 058 in one CI run,
    # next to a chunk border); a wrong margin would change peaks at every one of the 22 borders.
    pairs = [set(zip(peaks["sample_index"].tolist(), peaks["channel_index"].tolist())) for peaks in (whole, chunked)]
    assert len(pairs[0] ^ pairs[1]) <= 4, sorted(pairs[0] ^ pairs[1])[:10]
    assert models[0]["task"] == "detector" and len(models[0]["sha256"]) == 64


def test_far_field_rule_drops_exactly_the_peaks_a_much_deeper_peak_nearby_explains(tmp_path, generated):
    from spikeinterface.core import get_noise_levels

    recording, _ = generated
    model = _write_detector(tmp_path / "model", _random_network(2))
    noise_levels = get_noise_levels(recording, return_in_uV=False)
    common = dict(method="neural", model=model, probability=0.3, candidate_threshold=3.0, noise_levels=noise_levels,
                  job_kwargs=JOB)
    every, _ = detect_peaks(recording, far_field_ratio=0.0, **common)
    kept, _ = detect_peaks(recording, far_field_ratio=3.0, far_field_radius_um=150.0, **common)
    # by brute force: a peak goes when one 3 times deeper lies 50-150 um away, 0.2 ms after to 0.8 ms before it
    before, after = (round(ms * recording.sampling_frequency / 1000.0) for ms in (0.2, 0.8))
    locations = recording.get_channel_locations()
    traces = recording.get_traces(return_in_uV=False)
    depths = -traces[every["sample_index"], every["channel_index"]] / noise_levels[every["channel_index"]]
    far = np.zeros(len(every), dtype=bool)
    for index, (sample, channel) in enumerate(zip(every["sample_index"], every["channel_index"])):
        lag = every["sample_index"] - sample
        distance = np.linalg.norm(locations[every["channel_index"]] - locations[channel], axis=1)
        far[index] = np.any((lag >= -after) & (lag <= before) & (distance > 50.0) & (distance <= 150.0)
                            & (depths >= 3.0 * depths[index]))
    assert far.sum() > 20
    expected = set(zip(every["sample_index"][~far].tolist(), every["channel_index"][~far].tolist()))
    assert set(zip(kept["sample_index"].tolist(), kept["channel_index"].tolist())) == expected


def test_bad_detector_inputs_get_clear_errors(tmp_path, generated):
    recording, _ = generated
    model = _write_detector(tmp_path / "model", _random_network())
    with pytest.raises(DlsortInputError, match="negative peaks"):
        detect_peaks(recording, method="neural", model=model, peak_sign="both", job_kwargs=JOB)
    with pytest.raises(DlsortInputError, match="probability"):
        detect_peaks(recording, method="neural", model=model, probability=1.0, job_kwargs=JOB)
    with pytest.raises(DlsortInputError, match="detection mode='sparse'"):
        detect_peaks(recording, method="neural", model=model, mode="sparse", job_kwargs=JOB)
    card_path = tmp_path / "model" / "card.json"
    _write_detector(tmp_path / "small", NeighbourhoodDetector(filters=4))
    (tmp_path / "small" / "card.json").write_text(card_path.read_text())  # the card of the larger network
    with pytest.raises(DlsortInputError, match="do not fit"):
        detect_peaks(recording, method="neural", model=str(tmp_path / "small" / "weights.safetensors"),
                     job_kwargs=JOB)
    card = json.loads(card_path.read_text())
    del card["operating_point"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(DlsortInputError, match="no operating point"):
        detect_peaks(recording, method="neural", model=model, job_kwargs=JOB)
    del card["geometry"]["neighbourhood_slots"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(DlsortInputError, match="neighbourhood_slots"):
        detect_peaks(recording, method="neural", model=model, probability=0.5, job_kwargs=JOB)


@pytest.fixture(scope="module")
def low_snr_case(tmp_path_factory):
    """30 s of case M's probe and units (same seed): several units of SNR 3-5."""
    from dataclasses import replace

    from spikeinterface.core import get_noise_levels, load

    from dlsort.evaluation import ground_truth_snrs
    from dlsort.groundtruth import BENCHMARK_CASES, generate_case
    from dlsort.preprocessing import preprocess

    recording, gt = generate_case(replace(BENCHMARK_CASES["M"], duration_s=30.0))
    folder = tmp_path_factory.mktemp("low_snr")
    recording = recording.save(folder=folder / "recording", **JOB)
    gt.save(folder=folder / "gt")
    gt = load(folder / "gt")
    rec = preprocess(recording)
    noise_levels = get_noise_levels(rec, return_in_uV=False, random_slices_kwargs=dict(seed=0))
    return (rec, gt, noise_levels, ground_truth_main_channels(recording, gt), ground_truth_snrs(recording, gt))


def test_shipped_detector_finds_low_snr_spikes_the_threshold_misses(low_snr_case):
    rec, gt, noise_levels, main_channels, snrs = low_snr_case
    job = dict(n_jobs=2, chunk_duration="1s", progress_bar=False)
    scores = {}
    for name, kwargs in {"threshold": dict(method="threshold", detect_threshold=5.0),
                         "neural": dict(method="neural")}.items():
        peaks, models = detect_peaks(rec, noise_levels=noise_levels, job_kwargs=job, **kwargs)
        scores[name] = score_detection(peaks, gt, main_channels, rec.get_channel_locations())
    # detection on its own runs its own pin (the sorter's is SORTER_DETECTOR)
    assert [model["id"] for model in models] == ["detector-generic@1.2.0"]
    low = (snrs >= 3) & (snrs < 5)
    assert low.sum() >= 3
    neural_low, threshold_low = scores["neural"].recall[low].mean(), scores["threshold"].recall[low].mean()
    assert neural_low >= 0.9 and neural_low >= threshold_low + 0.08, (neural_low, threshold_low)
    assert scores["neural"].recall[snrs >= 5].mean() >= scores["threshold"].recall[snrs >= 5].mean() - 0.01
    assert scores["neural"].precision >= scores["threshold"].precision - 0.005


def test_train_command_fine_tunes_the_detector_and_the_sorter_uses_it(tiny_recording, tmp_path):
    from spikeinterface.sorters import run_sorter

    from dlsort.cli import main
    from dlsort.models import resolve_model

    output = tmp_path / "model"
    code = main(["train", "detector", "--recording", folder_of(tiny_recording), "--patches", "20", "--examples",
                 "4000", "--epochs", "2", "--quiet", "--id", "tiny-detector", "--output", str(output)])
    assert code == 0
    model = resolve_model(output / "weights.safetensors", task="detector")
    assert "fine-tuned from detector-generic@" in model.card["training_data"]
    assert "units of a 2-min bootstrap sort" in model.card["training_data"]
    network, threshold_5, _ = model.card["metrics"]["held_out_detection"]
    assert threshold_5["detector"] == "threshold 5"
    assert network["recall"] > threshold_5["recall"] and network["precision"] >= threshold_5["precision"]
    assert 0.0 < model.card["operating_point"]["probability"] < 1.0
    refused = tmp_path / "refused"
    assert main(["train", "detector", "--recording", folder_of(tiny_recording), "--bootstrap-minutes", "-1",
                 "--output", str(refused)]) == 2
    assert not refused.exists()
    sorting = run_sorter("dlsort", tiny_recording, folder=tmp_path / "sort", detection_method="neural",
                         detection_model=str(output / "weights.safetensors"), **JOB)
    assert sorting.get_num_units() >= 1
    provenance = json.loads((tmp_path / "sort" / "provenance.json").read_text())
    assert model.provenance() in provenance["models"]


def test_bootstrap_templates_are_the_recordings_units_and_feed_the_patches_and_the_denoiser(accuracy_case):
    from dlsort.training.bootstrap import bootstrap_templates, bootstrap_waveforms
    from dlsort.training.noise import SpatialNoise, TemporalNoise
    from dlsort.training.recordings import JITTER_STEPS, synthesize_patch

    recording, gt = accuracy_case
    own = bootstrap_templates(recording, minutes=0.5, job_kwargs=JOB)
    num_units, _, num_channels, steps = own.templates.shape
    assert num_channels == recording.get_num_channels() and steps == JITTER_STEPS
    assert 4 <= num_units <= 12  # 8 ground-truth units
    troughs = -own.templates[..., 0].min(axis=1)
    np.testing.assert_allclose(troughs.max(axis=1), 1.0, atol=0.02)
    locations = recording.get_channel_locations()
    truth = locations[ground_truth_main_channels(recording, gt)]
    distance = np.linalg.norm(locations[own.main_channels][:, None] - truth[None], axis=2)
    assert np.all(distance.min(axis=1) <= 30.0)  # every unit sits on a ground-truth unit's main channel
    band = np.flatnonzero(locations[:, 1] <= locations[own.main_channels[0], 1] + 40.0)
    restricted = own.restricted_to(band)
    assert restricted.shape[2] == len(band) and 1 <= len(restricted) <= num_units

    temporal = TemporalNoise(np.eye(31), "white")
    spatial = SpatialNoise(np.array([0.0, 1.0]), np.array([1.0, 0.0]), "independent")
    patch = synthesize_patch(np.random.default_rng(0), locations[band], temporal, spatial, templates=restricted)
    used = np.unique(patch.spike_channels)
    assert set(used) <= set(np.flatnonzero(np.isin(band, own.main_channels)))

    waveforms = bootstrap_waveforms(own, 1.0, 1.5)  # the denoiser's shapes: every channel above 5 % of its unit
    assert waveforms.shape[1:] == (JITTER_STEPS, 75) and num_units < len(waveforms) < num_units * num_channels
    np.testing.assert_allclose(waveforms.min(axis=(1, 2)), -1.0, rtol=1e-5)
    on_main = waveforms[np.abs(waveforms[:, 0, 30]) > 0.99]  # the main channels' troughs sit at the window's 1.0 ms
    assert len(on_main) >= num_units


def test_bootstrap_sort_without_units_says_how_to_go_on(tmp_path):
    from dlsort.training.bootstrap import bootstrap_templates

    noise = np.random.default_rng(0).standard_normal((300_000, 8)) * 10.0
    recording = saved_recording(tmp_path, noise, np.array([[0.0, y] for y in np.arange(8) * 20.0]))
    with pytest.raises(DlsortInputError, match=r"found no unit.*--bootstrap-minutes 0"):
        bootstrap_templates(recording, minutes=0.2, job_kwargs=JOB)


def test_patch_noise_is_band_passed_as_the_sorter_filters_whatever_its_temporal_model():
    from scipy.signal import welch

    from dlsort.training.noise import SpatialNoise, TemporalNoise
    from dlsort.training.recordings import JITTER_STEPS, synthesize_patch
    from dlsort.training.synthesis import TRAINING_SAMPLING_FREQUENCY

    locations = np.array([[0.0, 20.0 * i] for i in range(4)])
    silent = np.zeros((1, 60, len(locations), JITTER_STEPS))  # units without spikes: the patch is its noise
    rough = TemporalNoise(np.eye(31), "white (power up to Nyquist)")
    spatial = SpatialNoise(np.array([0.0, 1.0]), np.array([1.0, 0.0]), "independent")
    for seed in range(6):  # either branch of the noise draw (the recording's model or white noise)
        patch = synthesize_patch(np.random.default_rng(seed), locations, rough, spatial, templates=silent)
        frequencies, power = welch(patch.traces, fs=TRAINING_SAMPLING_FREQUENCY, axis=0, nperseg=1024)
        outside = (frequencies > 8000.0) | (frequencies < 150.0)
        assert power[outside].sum() < 0.01 * power.sum()


def test_training_windows_include_the_noise_troughs_candidates_mode_scores():
    from dlsort.neural_detection import SORTER_CANDIDATE_THRESHOLD
    from dlsort.training.detector import EXAMPLE_KINDS, detection_examples
    from dlsort.training.noise import SpatialNoise, TemporalNoise
    from dlsort.training.recordings import JITTER_STEPS, synthesize_patch

    locations = np.array([[0.0, 20.0 * i] for i in range(8)])
    silent = np.zeros((1, 60, len(locations), JITTER_STEPS))  # noise only: every trough is a negative
    noise = TemporalNoise(np.eye(31), "white"), SpatialNoise(np.array([0.0, 1.0]), np.array([1.0, 0.0]), "none")
    patches = [synthesize_patch(np.random.default_rng(seed), locations, *noise, templates=silent) for seed in range(3)]
    examples = detection_examples(patches, 4000, DEFAULT_GEOMETRY, seed=0, window=64, margin=12)
    centre = examples.traces[:, 0, 12:-12]  # the centre channel, scored samples
    with_trough = np.mean(centre.min(axis=1) <= -SORTER_CANDIDATE_THRESHOLD)
    # random windows hold such a trough a few times in a hundred; the candidate windows always do
    assert with_trough >= 0.9 * EXAMPLE_KINDS["candidate"]
    assert not np.any(examples.target == 1)  # and none is a positive


def test_spatial_noise_fit_recovers_a_distance_profile():
    from dlsort.training.noise import SpatialNoise

    locations = np.array([[0.0, y] for y in np.arange(16) * 20.0])
    true = SpatialNoise(np.array([0.0, 20.0, 40.0, 60.0]), np.array([1.0, 0.5, 0.2, 0.0]), "test")
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((20_000, 16)) @ true.sqrtcov(locations).T for _ in range(2)]
    fitted = SpatialNoise.from_traces(chunks, locations)
    np.testing.assert_allclose(np.interp([20.0, 40.0], fitted.distances_um, fitted.correlation), [0.5, 0.2],
                               atol=0.05)
    with pytest.raises(ValueError, match="spike-free samples"):
        SpatialNoise.from_traces([np.full((500, 16), 10.0)], locations)


def test_a_tetrode_at_20_khz_fills_4_of_the_12_slots_and_is_detected_at_least_as_well(tmp_path):
    from dataclasses import replace

    from spikeinterface.core import get_noise_levels

    from dlsort.groundtruth import GENERALIZATION_CASES, generate_case
    from dlsort.preprocessing import preprocess

    recording, gt = generate_case(replace(GENERALIZATION_CASES["T20"], duration_s=20.0))
    recording = recording.save(folder=tmp_path / "recording", **JOB)
    rec = preprocess(recording)
    noise_levels = get_noise_levels(rec, return_in_uV=False, random_slices_kwargs=dict(seed=0))
    main_channels = ground_truth_main_channels(recording, gt)
    recall = {}
    for method in ("threshold", "neural"):
        peaks, _ = detect_peaks(rec, method=method, noise_levels=noise_levels, job_kwargs=JOB)
        recall[method] = score_detection(peaks, gt, main_channels, rec.get_channel_locations()).recall.mean()
    assert recall["neural"] >= 0.9 and recall["neural"] >= recall["threshold"], recall

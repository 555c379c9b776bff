"""The waveform denoising stage, the shipped denoiser and its training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import JOB, folder_of
from safetensors.torch import save_file

from dlsort.denoising import Denoiser, interpolation_matrix, make_denoiser
from dlsort.errors import DlsortInputError
from dlsort.nn import SingleChannelDenoiser, build_network
from dlsort.training.denoiser import evaluate_denoiser
from dlsort.training.synthesis import denoising_examples, waveform_library
from dlsort.training.trainer import fit


@pytest.fixture(scope="module")
def noise():
    """Temporally correlated noise fitted to a band-passed generated recording (no shared data needed)."""
    from spikeinterface.core import generate_recording

    from dlsort.training.noise import recording_noise

    recording = generate_recording(num_channels=4, durations=[20.0], seed=0)
    return recording_noise(recording, minutes=1.0).temporal


@pytest.fixture(scope="module")
def held_out(noise):
    """Examples from unit shapes the shipped network never saw (another seed)."""
    return denoising_examples(waveform_library(60, 1.0, 1.5, seed=4242), noise, 4000, seed=7)


def _channels(num: int, width: int) -> np.ndarray:
    return np.tile(np.arange(width), (num, 1))


def test_none_passes_snippets_through_and_checks_shapes():
    snippets = np.random.default_rng(0).normal(size=(5, 75, 3)).astype("float32")
    assert make_denoiser("none", 30_000.0, 1.0, 1.5)(snippets, _channels(5, 3)) is snippets
    with pytest.raises(ValueError, match="channels"):
        Denoiser()(snippets, _channels(5, 2))
    with pytest.raises(DlsortInputError, match="denoising method='deep'"):
        make_denoiser("deep", 30_000.0, 1.0, 1.5)


def test_shipped_denoiser_beats_raw_and_temporal_pca_on_held_out_spikes(held_out):
    denoiser = make_denoiser("neural", 30_000.0, 1.0, 1.5, noise_levels=np.ones(1), model="denoiser-generic")
    rows = evaluate_denoiser(denoiser.network, held_out, held_out.noisy)
    overall = rows[-1]
    assert overall["network_over_raw"] <= 0.5, rows
    assert overall["network_over_pca"] <= 0.8, rows
    assert denoiser.models[0]["id"] == "denoiser-generic@1.0.0"


def test_stage_scales_by_noise_level_and_leaves_padding_zero(held_out):
    denoiser = make_denoiser("neural", 30_000.0, 1.0, 1.5, noise_levels=np.array([2.0, 10.0]))
    noisy = held_out.noisy[:300]
    snippets = np.zeros((150, 75, 3), "float32")
    snippets[:, :, 0] = noisy[:150] * 2.0  # channel 0 has noise level 2
    snippets[:, :, 1] = noisy[150:] * 10.0  # channel 1 has noise level 10
    channels = np.tile([0, 1, -1], (150, 1))
    out = denoiser(snippets, channels)
    direct = torch.as_tensor(noisy)
    with torch.inference_mode():
        expected = denoiser.network(direct).numpy()
    np.testing.assert_allclose(out[:, :, 0], expected[:150] * 2.0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[:, :, 1], expected[150:] * 10.0, rtol=1e-4, atol=1e-3)
    assert np.all(out[:, :, 2] == 0)


def test_a_20_khz_recording_is_resampled_to_the_network(held_out):
    to_20k = interpolation_matrix(75, 30, 30_000.0, 50, 20, 20_000.0)
    noisy, clean = held_out.noisy @ to_20k.T, held_out.clean @ to_20k.T
    denoiser = make_denoiser("neural", 20_000.0, 1.0, 1.5, noise_levels=np.ones(1))
    out = denoiser(noisy[:, :, None], np.zeros((len(noisy), 1), dtype="int64"))[:, :, 0]
    assert np.mean((out - clean) ** 2) <= 0.6 * np.mean((noisy - clean) ** 2)


def test_the_shipped_neighbourhood_network_denoises_held_out_spikes_better_than_the_single_channel_one(noise):
    """Per-channel error to the clean spike over held-out neighbourhood snippets (scenes of an unseen seed)."""
    from dlsort.training.autoencoder import autoencoder_examples, training_scenes
    from dlsort.training.denoiser import denoise_array, pca_denoise
    from dlsort.training.noise import SpatialNoise

    spatial = SpatialNoise(np.array([0.0, 50.0]), np.array([0.3, 0.0]), "correlation falling to 0 at 50 um")
    examples = autoencoder_examples(training_scenes(noise, spatial, 6, seed=9001), 3000, 75.0, seed=9002)
    single = make_denoiser("neural", 30_000.0, 1.0, 1.5, noise_levels=np.ones(1))
    neighbourhood = build_network(*_shipped("autoencoder-generic@1.0.0"))
    with torch.inference_mode():
        reconstructed = neighbourhood(*(torch.as_tensor(array) for array in examples.inputs)).numpy()
    valid = examples.mask > 0
    noisy, clean = examples.snippets[valid], examples.clean[valid]
    errors = {name: np.mean((out - clean) ** 2) for name, out in (
        ("raw", noisy), ("pca", pca_denoise(noisy, noisy)), ("single", denoise_array(single.network, noisy)),
        ("neighbourhood", reconstructed[valid]))}
    assert errors["neighbourhood"] <= 0.7 * min(errors["single"], errors["pca"]), errors
    assert errors["neighbourhood"] <= 0.5 * errors["raw"], errors


def _shipped(model: str) -> tuple[dict, dict]:
    """The architecture and tensors of a shipped model."""
    from dlsort.models import load

    tensors, card, _ = load(model, task="autoencoder")
    return card["architecture"], tensors


def test_the_neighbourhood_stage_is_the_network_in_noise_units_and_passes_slots_beyond_its_radius():
    from dlsort.groundtruth import make_probe
    from dlsort.waveforms import build_neighbourhoods

    locations = make_probe("staggered", 16).contact_positions
    neighbourhoods = build_neighbourhoods(locations, 100.0)  # wider than the network's 75 um
    noise_levels = np.linspace(2.0, 20.0, 16).astype("float32")
    denoiser = make_denoiser("neighbourhood", 30_000.0, 1.0, 1.5, noise_levels=noise_levels,
                             channel_locations=locations, neighbourhoods=neighbourhoods)
    assert denoiser.models[0]["id"] == "autoencoder-generic@1.0.0"
    centres = np.arange(16)
    channels = neighbourhoods.indices[centres]
    rng = np.random.default_rng(0)
    snippets = (rng.normal(size=(16, 75, neighbourhoods.width)) * noise_levels[np.maximum(channels, 0)][:, None, :]
                * neighbourhoods.mask[centres][:, None, :]).astype("float32")
    out = denoiser(snippets, channels)
    distance = np.linalg.norm(neighbourhoods.relative_positions(locations)[centres], axis=2)
    inside = neighbourhoods.mask[centres] & (distance <= 75.0)
    beyond = neighbourhoods.mask[centres] & ~inside
    assert beyond.any() and (~neighbourhoods.mask[centres]).any()
    np.testing.assert_array_equal(np.transpose(out, (0, 2, 1))[beyond], np.transpose(snippets, (0, 2, 1))[beyond])
    assert np.all(np.transpose(out, (0, 2, 1))[~neighbourhoods.mask[centres]] == 0)
    scale = noise_levels[np.maximum(channels, 0)]
    network = build_network(*_shipped("autoencoder-generic@1.0.0")).eval()
    inputs = np.transpose(snippets / scale[:, None, :], (0, 2, 1)) * inside[:, :, None]
    positions = neighbourhoods.relative_positions(locations)[centres]
    with torch.inference_mode():
        direct = network(torch.as_tensor(inputs.astype("float32")), torch.as_tensor(positions.astype("float32")),
                         torch.as_tensor(inside.astype("float32"))).numpy()
    expected = np.transpose(direct, (0, 2, 1)) * scale[:, None, :]
    np.testing.assert_allclose(np.transpose(out, (0, 2, 1))[inside], np.transpose(expected, (0, 2, 1))[inside],
                               rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="not cut on the neighbourhoods"):
        denoiser(snippets, channels[:, ::-1])
    with pytest.raises(ValueError, match="channel locations"):
        make_denoiser("neighbourhood", 30_000.0, 1.0, 1.5, noise_levels=noise_levels)
    with pytest.raises(DlsortInputError, match="autoencoder"):
        make_denoiser("neighbourhood", 30_000.0, 1.0, 1.5, noise_levels=noise_levels, model="denoiser-generic",
                      channel_locations=locations, neighbourhoods=neighbourhoods)


def test_window_and_weights_must_fit_the_card(tmp_path):
    with pytest.raises(DlsortInputError, match="ms_before=1.0 and ms_after=1.5"):
        make_denoiser("neural", 30_000.0, 2.0, 2.0, noise_levels=np.ones(1))
    network = SingleChannelDenoiser(60)
    save_file(network.state_dict(), str(tmp_path / "weights.safetensors"))
    from dlsort.models import catalog

    card = {k: v for k, v in catalog.find_entry("denoiser-generic").record.items()
            if k not in ("size_bytes", "sha256", "location", "card")}
    (tmp_path / "card.json").write_text(json.dumps(card))  # says 75 samples; the weights have 60
    with pytest.raises(DlsortInputError, match="do not fit the card"):
        make_denoiser("neural", 30_000.0, 1.0, 1.5, noise_levels=np.ones(1), model=tmp_path / "weights.safetensors")
    with pytest.raises(DlsortInputError, match="unknown network architecture"):
        build_network({"name": "resnet", "hyperparameters": {}})


def test_fit_keeps_the_best_epoch_and_stops_early():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 75)).astype("float32")
    network = SingleChannelDenoiser(75)
    report = fit(network, x, x, x[:200], x[:200], torch.nn.MSELoss(), max_epochs=6, patience=2, progress_bar=False)
    assert report.epochs <= 6 and 1 <= report.best_epoch <= report.epochs
    assert report.best_validation_loss == min(entry["validation_loss"] for entry in report.history)
    assert report.best_validation_loss < report.history[0]["train_loss"]


def test_train_command_fine_tunes_on_a_recording_and_the_sorter_uses_the_result(tiny_recording, tmp_path):
    from spikeinterface.sorters import run_sorter

    from dlsort.cli import main
    from dlsort.models import resolve_model

    output = tmp_path / "model"
    code = main(["train", "denoiser", "--recording", folder_of(tiny_recording), "--examples", "6000",
                 "--epochs", "2", "--quiet", "--id", "tiny-denoiser", "--output", str(output),
                 "--bootstrap-minutes", "1"])
    assert code == 0
    assert main(["train", "denoiser", "--recording", folder_of(tiny_recording), "--output", str(output)]) == 2
    assert main(["train", "denoiser", "--id", "My-Denoiser", "--output", str(tmp_path / "other")]) == 2
    assert not (tmp_path / "other").exists()
    model = resolve_model(output / "weights.safetensors", task="denoiser")
    assert "fine-tuned from denoiser-generic@1.0.0" in model.card["training_data"]
    assert "units of a 1-min bootstrap sort of it" in model.card["training_data"]
    assert model.card["metrics"]["validation_mse_by_snr"][-1]["network_over_raw"] < 1.0
    sorting = run_sorter("dlsort", tiny_recording, folder=tmp_path / "sort", denoising_method="neural",
                         denoising_model=str(output / "weights.safetensors"), **JOB)
    assert sorting.get_num_units() >= 1
    provenance = json.loads((tmp_path / "sort" / "provenance.json").read_text())
    assert provenance["models"][1:] == [model.provenance()]  # after the shipped detector


def test_noise_fit_needs_enough_spike_free_data_and_recovers_the_correlation():
    from dlsort.training.noise import TemporalNoise

    with pytest.raises(ValueError, match="only 0 spike-free windows"):
        TemporalNoise.from_traces([np.zeros((50, 2), "float32")])
    white = np.random.default_rng(0).normal(size=(60_000, 2))
    smooth = (white[1:] + white[:-1]) / np.sqrt(2)  # neighbouring samples correlate by 0.5
    noise = TemporalNoise.from_traces([smooth[:30_000], smooth[30_000:]])
    covariance = noise.sqrtcov @ noise.sqrtcov.T
    assert covariance[60, 61] == pytest.approx(0.5, abs=0.05)
    assert covariance[60, 63] == pytest.approx(0.0, abs=0.05)
    # a few windows spread over every channel and chunk estimate the same covariance
    capped = TemporalNoise.from_traces([smooth[:30_000], smooth[30_000:]], max_windows=2000)
    covariance = capped.sqrtcov @ capped.sqrtcov.T
    assert covariance[60, 61] == pytest.approx(0.5, abs=0.06)
    with pytest.raises(ValueError, match="only 100 spike-free windows"):  # 25 from each of the 4 columns
        TemporalNoise.from_traces([smooth[:30_000], smooth[30_000:]], max_windows=100)


FORKED_WORKERS_SCRIPT = """
import numpy as np, torch
from spikeinterface.core import generate_ground_truth_recording
from dlsort.denoising import make_denoiser
from dlsort.detection import detect_peaks
from dlsort.features import extract_features
from dlsort.groundtruth import make_probe

torch.set_num_threads(2)
torch.randn(2000, 2000) @ torch.randn(2000, 2000)  # the parent's OpenMP/MKL pools are now running
recording, _ = generate_ground_truth_recording(durations=[6.0], num_units=4, probe=make_probe("staggered", 8), seed=0)
job = dict(n_jobs=2, chunk_duration="1s", progress_bar=False, mp_context="fork")
peaks, _ = detect_peaks(recording, method="threshold", job_kwargs=job)
denoiser = make_denoiser("neural", recording.sampling_frequency, 1.0, 1.5, noise_levels=np.ones(8))
features = extract_features(recording, peaks, denoiser=denoiser, job_kwargs=job)
print(len(features))
"""


def test_workers_forked_after_torch_ran_do_not_deadlock():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FORKED_WORKERS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 0


def test_denoising_node_runs_in_a_spikeinterface_pipeline(tiny_recording):
    from spikeinterface.core.node_pipeline import PeakRetriever, run_node_pipeline

    from dlsort.denoising import DenoisingNode
    from dlsort.detection import detect_peaks
    from dlsort.waveforms import NeighbourhoodWaveforms, build_neighbourhoods

    peaks, _ = detect_peaks(tiny_recording, method="threshold", job_kwargs=JOB)
    neighbourhoods = build_neighbourhoods(tiny_recording.get_channel_locations(), 50.0)
    denoiser = make_denoiser("neural", tiny_recording.sampling_frequency, 1.0, 1.5,
                             noise_levels=np.full(tiny_recording.get_num_channels(), 5.0))
    source = PeakRetriever(tiny_recording, peaks)
    cutter = NeighbourhoodWaveforms(tiny_recording, [source], neighbourhoods, 1.0, 1.5)
    cutter.return_output = True
    raw, denoised = run_node_pipeline(tiny_recording, [source, cutter, DenoisingNode(tiny_recording, [source, cutter],
                                                                                      denoiser)], dict(JOB))
    assert denoised.shape == raw.shape and len(raw) == len(peaks) > 0
    np.testing.assert_allclose(denoised, denoiser(raw, neighbourhoods.indices[peaks["channel_index"]]), atol=1e-5)
    assert not np.allclose(denoised, raw)
    with pytest.raises(TypeError, match="NeighbourhoodWaveforms"):
        DenoisingNode(tiny_recording, [source], denoiser)

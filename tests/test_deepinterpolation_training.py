"""DeepInterpolation end to end: self-supervised training on a recording, then the lazy preprocessor."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import saved_recording

from dlsort.errors import DlsortInputError
from dlsort.groundtruth import make_probe
from dlsort.nn.unet import PerFrameUNet
from dlsort.preprocessing.deepinterpolation import check_probe_family, deepinterpolate, normalisation
from dlsort.training.deepinterpolation import interpolator_card, new_interpolator, train_interpolator
from dlsort.training.noise import shared_data_dir
from dlsort.training.trainer import write_model

FS = 30_000.0


def smooth_signal_plus_white_noise(num_samples: int, num_channels: int, seed: int = 0):
    """Signal shared across frames (Gaussian-smoothed, mixed over channels) plus noise independent per frame."""
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(seed)
    sources = gaussian_filter1d(rng.normal(size=(num_samples, 4)), sigma=6.0, axis=0)
    clean = sources @ rng.normal(size=(4, num_channels))
    clean = (clean / clean.std()).astype("float32")
    noise = rng.normal(size=clean.shape).astype("float32")
    return clean, clean + noise


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deepinterpolation")
    locations = make_probe("np2", 16).contact_positions
    clean, noisy = smooth_signal_plus_white_noise(int(20 * FS), 16)
    recording = saved_recording(folder / "recording", noisy, locations, FS)
    mean, std = normalisation(recording)
    network, report = train_interpolator(recording, num_windows=240, window=128, max_epochs=10, progress_bar=False)
    card = interpolator_card(network, recording, "interp-test", "0.1.0", "test signal", report)
    weights = write_model(folder / "model", network, card)
    return recording, clean, weights, (mean, std), report


def test_training_keeps_the_shared_signal_and_drops_independent_noise(trained):
    recording, clean, weights, (mean, std), report = trained
    assert report.best_validation_loss < report.history[0]["train_loss"]
    denoised = deepinterpolate(recording, weights, mean=mean, std=std)
    inner = slice(1000, 50_000)
    traces = denoised.get_traces(start_frame=inner.start, end_frame=inner.stop)
    noisy_error = np.mean((recording.get_traces(start_frame=inner.start, end_frame=inner.stop) - clean[inner]) ** 2)
    assert np.mean((traces - clean[inner]) ** 2) < 0.5 * noisy_error  # more than 3 dB less noise


def test_any_chunking_gives_the_same_traces_and_the_chain_serialises(trained, tmp_path):
    from spikeinterface.core import load

    recording, _, weights, (mean, std), _ = trained
    denoised = deepinterpolate(recording, weights, mean=mean, std=std)
    whole = denoised.get_traces(start_frame=0, end_frame=10_000)  # blocks of BLOCK_FRAMES inside one chunk
    pieces = np.concatenate([denoised.get_traces(start_frame=a, end_frame=b)
                             for a, b in ((0, 1), (1, 1234), (1234, 6000), (6000, 10_000))])
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
    some = denoised.get_traces(start_frame=0, end_frame=3000, channel_ids=denoised.channel_ids[3:5])
    np.testing.assert_allclose(some, whole[:3000, 3:5], atol=1e-6)
    reloaded = load(denoised.to_dict())
    np.testing.assert_allclose(reloaded.get_traces(start_frame=0, end_frame=3000), whole[:3000], atol=1e-6)


def test_bad_input_is_refused(trained, tmp_path):
    from spikeinterface.core import NumpyRecording

    recording, clean, weights, (mean, std), _ = trained
    at_20k = saved_recording(tmp_path / "20k", clean[:20_000], make_probe("np2", 16).contact_positions, 20_000.0)
    with pytest.raises(DlsortInputError, match="trained at 30000 Hz but the recording is sampled at 20000 Hz"):
        deepinterpolate(at_20k, weights, mean=mean, std=std)
    with pytest.raises(DlsortInputError, match="not a deepinterpolation model"):
        deepinterpolate(recording, "detector-generic@1.0.0", mean=mean, std=std)
    with pytest.raises(DlsortInputError, match="attach a probe"):
        deepinterpolate(NumpyRecording([clean[:3000]], FS), weights, mean=mean, std=std)
    too_short = saved_recording(tmp_path / "short", clean[:64], make_probe("np2", 16).contact_positions, FS)
    with pytest.raises(DlsortInputError, match="frames up to 32 before and after it, so it needs segments of at least "
                                               "65 frames; the recording has a segment of 64"):
        deepinterpolate(too_short, weights, mean=mean, std=std)
    holed = clean[:20_000].copy()
    holed[12_345, 7] = np.nan
    with_nan = deepinterpolate(saved_recording(tmp_path / "nan", holed, make_probe("np2", 16).contact_positions, FS),
                               weights, mean=mean, std=std)
    assert np.isfinite(with_nan.get_traces(start_frame=0, end_frame=12_000)).all()  # chunks away from it run
    with pytest.raises(DlsortInputError, match="NaN or infinite values \\(first at frame 12345, channel index 7\\)"):
        with_nan.get_traces(start_frame=12_000, end_frame=12_340)  # the margin reaches it
    with pytest.raises(DlsortInputError, match="constant"):
        normalisation(NumpyRecording([np.zeros((30_000, 16), "float32")], FS))
    with pytest.raises(DlsortInputError, match="no frame with its full context"):
        train_interpolator(recording, window=64)


def test_a_model_runs_on_another_probe_family_only_when_told(trained, tmp_path):
    from spikeinterface.core import load

    _, clean, weights, (mean, std), _ = trained  # trained on a Neuropixels 2.0 layout
    other = saved_recording(tmp_path / "np1", clean[:30_000], make_probe("np1", 16).contact_positions, FS)
    with pytest.raises(DlsortInputError, match="trained on neuropixels-2.0 probes, but the recording's contacts are "
                                               "laid out as a neuropixels-1.0 probe.*allow_other_probes=True"):
        deepinterpolate(other, weights, mean=mean, std=std)
    transferred = deepinterpolate(other, weights, mean=mean, std=std, allow_other_probes=True)
    traces = transferred.get_traces(start_frame=0, end_frame=3000)
    assert np.abs(traces - other.get_traces(start_frame=0, end_frame=3000)).mean() > 0.1  # the network ran
    reloaded = load(transferred.to_dict())  # the choice is part of the saved chain
    np.testing.assert_allclose(reloaded.get_traces(start_frame=0, end_frame=3000), traces, atol=1e-6)
    check_probe_family({"id": "x", "version": "0", "geometry": {"probe_families": ["any"]}}, other)  # no error


def test_train_command_writes_a_model_the_preprocessor_loads(trained, tmp_path, capsys):
    from conftest import folder_of

    from dlsort.cli import main

    recording, _, _, _, _ = trained
    output = tmp_path / "model"
    command = ["train", "deepinterpolation", "--recording", folder_of(recording), "--output", str(output),
               "--windows", "40", "--epochs", "2", "--quiet", "--id", "interp-cli"]
    assert main([*command, "--readout-layers", "2"]) == 2  # from scratch: one layer, deepened afterwards
    assert "Train one layer first, then deepen it" in capsys.readouterr().err and not output.exists()
    assert main(command) == 0
    assert "interp-cli@0.1.0 written to" in capsys.readouterr().out
    card = json.loads((output / "card.json").read_text())
    assert card["task"] == "deepinterpolation" and card["metrics"]["epochs"] == 2
    assert card["architecture"]["hyperparameters"]["readout_layers"] == 1
    assert card["geometry"]["probe_families"] == ["neuropixels-2.0"]
    denoised = deepinterpolate(recording, output / "weights.safetensors")
    assert np.isfinite(denoised.get_traces(start_frame=0, end_frame=500)).all()


def test_a_deepened_model_keeps_its_weights_and_end_rows_and_corrects_the_inner_rows(trained, tmp_path, capsys):
    from conftest import folder_of
    from safetensors.torch import load_file

    from dlsort.cli import main
    from dlsort.geometry import probe_grid

    recording, _, weights, (mean, std), _ = trained
    command = ["train", "deepinterpolation", "--recording", folder_of(recording), "--windows", "40", "--epochs", "2",
               "--quiet"]
    output = tmp_path / "deeper"
    assert main([*command, "--from", str(weights), "--readout-layers", "3", "--output", str(output)]) == 0
    card = json.loads((output / "card.json").read_text())
    assert card["architecture"]["hyperparameters"]["readout_layers"] == 3
    assert "read-out deepened to 3 layers (only the added ones trained)" in card["training_data"]
    before, after = load_file(weights), load_file(output / "weights.safetensors")
    for key in before:  # the start's weights, frozen
        np.testing.assert_array_equal(after[key], before[key])
    added = [key for key in after if key not in before]
    assert added and all(key.startswith("correction.") for key in added)
    assert after[added[-1]].abs().sum() > 0  # the correction's output layer, zero at the start, was trained

    rows = probe_grid(recording.get_channel_locations()).rows  # 8 rows: 3 and 4 are 3 rows from either end
    start = deepinterpolate(recording, weights, mean=mean, std=std).get_traces(start_frame=0, end_frame=3000)
    deeper = deepinterpolate(recording, output / "weights.safetensors", mean=mean, std=std).get_traces(
        start_frame=0, end_frame=3000)
    inner = np.isin(rows, [3, 4])
    np.testing.assert_allclose(deeper[:, ~inner], start[:, ~inner], atol=1e-5)
    assert np.abs(deeper[:, inner] - start[:, inner]).mean() > 1e-3

    capsys.readouterr()
    for start_model, layers, message in ((output, "4", "only a blind-spot interpolator with a one-layer read-out"),
                                         (weights.parent, "1", "needs readout_layers >= 2, got 1")):
        assert main([*command, "--from", str(start_model / "weights.safetensors"), "--readout-layers", layers,
                     "--output", str(tmp_path / "refused")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_one_network_learns_from_recordings_of_several_geometries(trained, tmp_path):
    recording, clean, _, _, _ = trained
    staggered = make_probe("staggered", 12).contact_positions
    other = saved_recording(tmp_path / "staggered", clean[:300_000, :12] + np.random.default_rng(1).normal(
        size=(300_000, 12)).astype("float32"), staggered, FS)
    network, report = train_interpolator([recording, other], num_windows=120, window=128, max_epochs=3,
                                         progress_bar=False)
    assert report.best_validation_loss < report.history[0]["train_loss"]
    card = interpolator_card(network, [recording, other], "interp-two", "0.1.0", "two probes", report)
    assert card["geometry"]["probe_families"] == ["neuropixels-2.0", "polytrode"]
    weights = write_model(tmp_path / "two", network, card)
    for each in (recording, other):  # grids 8 x 2 and 6 x 3 were padded to 8 x 3 in training; each runs on its own
        traces = deepinterpolate(each, weights).get_traces(start_frame=0, end_frame=2000)
        assert traces.shape == (2000, each.get_num_channels()) and np.isfinite(traces).all()
    at_20k = saved_recording(tmp_path / "20k", clean[:60_000], make_probe("np2", 16).contact_positions, 20_000.0)
    with pytest.raises(DlsortInputError, match="one model serves one rate"):
        train_interpolator([recording, at_20k], window=128)


@pytest.fixture(scope="module")
def trained_unet(trained, tmp_path_factory):
    """A narrow per-frame U-Net (4 filters, 8 + 8 frames) trained on the recording of ``trained``."""
    recording = trained[0]
    network, report = train_interpolator(recording, start_from=PerFrameUNet(pre_frames=8, post_frames=8, filters=4),
                                         num_windows=240, window=64, max_epochs=10, progress_bar=False)
    card = interpolator_card(network, recording, "unet-test", "0.1.0", "test signal", report)
    return write_model(tmp_path_factory.mktemp("unet") / "model", network, card), card


def test_the_per_frame_unet_learns_the_same_objective_and_runs_as_a_preprocessor(trained, trained_unet):
    recording, clean, _, (mean, std), _ = trained
    weights, card = trained_unet
    assert card["architecture"] == {"name": "per-frame-unet", "hyperparameters": {
        "pre_frames": 8, "post_frames": 8, "omission": 1, "filters": 4}}
    assert card["description"].startswith("DeepInterpolation's per-frame U-Net") and "grid" not in card
    assert card["metrics"]["best_validation_loss"] < 0.9  # normalised units: the noise alone is 1 / (1 + 1)
    inner = slice(1000, 50_000)
    traces = deepinterpolate(recording, weights, mean=mean, std=std).get_traces(start_frame=inner.start,
                                                                                end_frame=inner.stop)
    noisy_error = np.mean((recording.get_traces(start_frame=inner.start, end_frame=inner.stop) - clean[inner]) ** 2)
    assert np.mean((traces - clean[inner]) ** 2) < 0.5 * noisy_error


def test_new_networks_are_the_default_sizes_and_refuse_choices_they_do_not_have():
    unet = new_interpolator("per-frame-unet")
    assert unet.hyperparameters == {"pre_frames": 30, "post_frames": 30, "omission": 1, "filters": 64}  # Allen's
    assert new_interpolator().end_rows == "reflect" and new_interpolator(end_rows="zeros").end_rows == "zeros"
    assert new_interpolator().hyperparameters["readout_layers"] == 1
    assert new_interpolator(readout_layers=3).hyperparameters["readout_layers"] == 3
    for choice in ({"end_rows": "reflect"}, {"readout_layers": 2}):
        with pytest.raises(DlsortInputError, match=f"{next(iter(choice))}=.* is a choice of the blind-spot"):
            new_interpolator("per-frame-unet", **choice)
    with pytest.raises(DlsortInputError, match="readout_layers >= 1; got .*, 0"):
        new_interpolator(readout_layers=0)
    with pytest.raises(DlsortInputError, match="unknown DeepInterpolation architecture 'transformer'"):
        new_interpolator("transformer")


def test_train_command_fine_tunes_a_unet_and_keeps_a_checkerboard_grid(trained, trained_unet, tmp_path, capsys):
    from conftest import folder_of
    from safetensors.torch import load_file

    from dlsort.cli import main

    recording = trained[0]
    weights, card = trained_unet
    for channels in (16, 384):  # as a converted Allen model's card says
        write_model(tmp_path / f"checkerboard{channels}", PerFrameUNet(pre_frames=8, post_frames=8, filters=4).eval(),
                    {**card, "id": "unet-checkerboard", "grid": "checkerboard",
                     "geometry": {**card["geometry"], "min_channels": channels, "max_channels": channels}})
    checkerboard = tmp_path / "checkerboard16"
    command = ["train", "deepinterpolation", "--recording", folder_of(recording), "--windows", "40", "--epochs", "1",
               "--quiet"]
    for start, output in ((weights, tmp_path / "tuned"), (checkerboard / "weights.safetensors", tmp_path / "tuned2")):
        assert main([*command, "--from", str(start), "--output", str(output)]) == 0
        tuned = json.loads((output / "card.json").read_text())
        assert tuned["architecture"] == card["architecture"] and "fine-tuned from" in tuned["training_data"]
        before, after = load_file(start), load_file(output / "weights.safetensors")
        assert any(not np.allclose(before[key], after[key]) for key in before)
    assert tuned["grid"] == "checkerboard" and tuned["geometry"]["max_channels"] == 16
    assert "checkerboard" in tuned["description"]
    assert "grid" not in json.loads((tmp_path / "tuned" / "card.json").read_text())
    capsys.readouterr()
    for option in (["--architecture", "per-frame-unet"], ["--end-rows", "zeros"]):
        assert main([*command, "--from", str(weights), *option, "--output", str(tmp_path / "refused")]) == 2
        assert f"{option[0]} is a choice for training from scratch" in capsys.readouterr().err
    assert main([*command, "--from", str(weights), "--readout-layers", "2", "--output", str(tmp_path / "refused")]) == 2
    assert "only a blind-spot interpolator with a one-layer read-out can be deepened" in capsys.readouterr().err
    assert main([*command, "--from", str(tmp_path / "checkerboard384" / "weights.safetensors"), "--output",
                 str(tmp_path / "refused")]) == 2
    assert "reads 384 channels on a checkerboard" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert main(["train", "deepinterpolation", "--recording", folder_of(recording), "--windows", "10", "--epochs",
                 "1", "--quiet", "--architecture", "per-frame-unet", "--output", str(tmp_path / "scratch")]) == 0
    scratch = json.loads((tmp_path / "scratch" / "card.json").read_text())["architecture"]
    assert scratch == {"name": "per-frame-unet", "hyperparameters": new_interpolator("per-frame-unet").hyperparameters}


@pytest.mark.skipif(not (shared_data_dir() / "ibl_np1_noise_temporal_sqrtcov_121.npy").exists(),
                    reason="the shared Neuropixels noise statistics are absent (set DLSORT_SHARED_DATA)")
def test_train_command_without_a_recording_learns_from_synthetic_neuropixels_hybrids(tmp_path, capsys):
    from dlsort.cli import main

    output = tmp_path / "synthetic"
    assert main(["train", "deepinterpolation", "--probes", "np1", "np2", "--output", str(output), "--windows", "40",
                 "--epochs", "1", "--quiet", "--id", "interp-synthetic"]) == 0
    card = json.loads((output / "card.json").read_text())
    assert card["geometry"]["probe_families"] == ["neuropixels-1.0", "neuropixels-2.0"]
    assert "synthetic hybrid recordings" in card["training_data"] and "np1, np2" in card["training_data"]


def test_the_sorter_deepinterpolates_before_detection_and_records_the_model(tiny_recording, tmp_path):
    import spikeinterface.sorters as ss

    from dlsort.models import resolve_model

    network, report = train_interpolator(tiny_recording, num_windows=60, window=128, max_epochs=2, progress_bar=False)
    weights = write_model(tmp_path / "model", network,
                          interpolator_card(network, tiny_recording, "interp-tiny", "0.1.0", "tiny", report))
    runs = {}
    for name, model in (("plain", None), ("interpolated", str(weights))):
        ss.run_sorter("dlsort", tiny_recording, folder=tmp_path / name, n_jobs=1, progress_bar=False,
                      deepinterpolation_model=model)
        runs[name] = json.loads((tmp_path / name / "provenance.json").read_text())
    assert runs["interpolated"]["models"][0] == resolve_model(weights, "deepinterpolation").provenance()
    assert [model["task"] for model in runs["plain"]["models"]] == ["detector", "denoiser"]
    assert runs["interpolated"]["num_peaks"] != runs["plain"]["num_peaks"]  # detection saw other traces
    assert not (tmp_path / "interpolated" / "sorter_output" / "scratch").exists()  # its cached traces are removed


def test_preprocess_writes_the_interpolated_traces_once_to_a_scratch_folder(trained, tmp_path):
    from spikeinterface.core import BinaryFolderRecording

    from dlsort.preprocessing import preprocess

    recording, _, weights, _, _ = trained
    lazy = preprocess(recording, deepinterpolation_model=weights)
    cached = preprocess(recording, deepinterpolation_model=weights, scratch_folder=tmp_path,
                        job_kwargs=dict(n_jobs=1, progress_bar=False))
    assert isinstance(cached, BinaryFolderRecording) and (tmp_path / "deepinterpolated").is_dir()
    np.testing.assert_allclose(cached.get_traces(start_frame=5000, end_frame=9000),
                               lazy.get_traces(start_frame=5000, end_frame=9000), atol=1e-4)

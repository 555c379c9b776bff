"""The per-frame U-Net (DeepInterpolation's unet_single_ephys_1024): blind spot, size, and use in the preprocessor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import saved_recording

from dlsort.errors import DlsortInputError
from dlsort.geometry import checkerboard_grid, probe_grid
from dlsort.groundtruth import make_probe
from dlsort.nn import PerFrameUNet, build_network
from dlsort.preprocessing.deepinterpolation import deepinterpolate
from dlsort.training.trainer import write_model


def tiny_unet(**settings) -> PerFrameUNet:
    torch.manual_seed(0)
    return PerFrameUNet(**{"pre_frames": 4, "post_frames": 3, "omission": 2, "filters": 4, **settings})


def test_each_output_frame_sees_exactly_its_context_frames():
    network = tiny_unet()
    traces = torch.randn(1, 40, 16, 2, requires_grad=True)
    t = 20
    network(traces, torch.ones(16, 2))[0, t, 5, 1].backward()
    seen = torch.nonzero(traces.grad[0].abs().sum(dim=(1, 2)) > 0).flatten().tolist()
    # 4 frames before and 3 after, beyond the blind spot of t and 2 frames on each side
    assert seen == [t - 6, t - 5, t - 4, t - 3, t + 3, t + 4, t + 5]
    assert traces.grad[0, t - 3].abs().sum(dim=1).count_nonzero() > 1  # neighbouring rows inform the output


def test_batching_padding_and_empty_cells_do_not_change_predictions():
    network = tiny_unet(frames_per_batch=7).eval()
    traces, mask = torch.randn(2, 30, 11, 3), torch.ones(11, 3)  # 11 x 3 is padded to 16 x 4 inside
    mask[4, 2] = 0
    output = network(traces, mask)
    assert output.shape == traces.shape and torch.all(output[:, :, 4, 2] == 0)
    network.frames_per_batch = 1000
    torch.testing.assert_close(network(traces, mask), output)
    changed = traces.clone()
    changed[:, :, 4, 2] = 1e3  # garbage in an empty cell changes nothing
    torch.testing.assert_close(network(changed, mask), output)
    network.frames_per_batch = 1
    torch.testing.assert_close(network(traces[1:], mask)[0], output[1])  # batch items are independent


def test_full_size_network_has_the_published_size_and_cost():
    network = PerFrameUNet()
    assert sum(parameter.numel() for parameter in network.parameters()) == 5_253_057
    # per 384 x 2 frame: output positions x input channels x output channels x kernel cells, layer by layer
    encoder = 768 * 60 * 64 * 4 + 192 * 64 * 128 * 3 + 96 * 128 * 256 * 3 + 48 * 256 * 512 * 3 + 24 * 512 * 1024 * 3
    decoder = 48 * 1536 * 512 * 3 + 96 * 768 * 256 * 3 + 192 * 384 * 128 * 3 + 768 * 192 * 64 * 4 + 768 * 64
    assert network.multiply_adds_per_frame(384, 2) == encoder + decoder == 318_554_112
    assert network.multiply_adds_per_frame(380, 1) == encoder + decoder  # padded to 384 x 2


def test_unet_is_built_from_a_model_card():
    network = tiny_unet()
    card = {"name": "per-frame-unet", "hyperparameters": network.hyperparameters}
    rebuilt = build_network(card, network.state_dict())
    traces, mask = torch.randn(1, 20, 16, 2), torch.ones(16, 2)
    torch.testing.assert_close(rebuilt(traces, mask), network.eval()(traces, mask))
    with pytest.raises(DlsortInputError, match="bad hyper-parameters for per-frame-unet"):
        build_network({"name": "per-frame-unet", "hyperparameters": {"pre_frames": 0}})
    with pytest.raises(ValueError, match=r"\(batch, samples, rows, columns\)"):
        network(torch.randn(20, 16, 2), mask)


def write_unet(folder, network: PerFrameUNet, **card_fields) -> Path:
    """``network`` as a deepinterpolation model at 30 kHz, its card completed by ``card_fields``."""
    card = {"id": "unet-test", "task": "deepinterpolation", "version": "0.0.1",
            "architecture": {"name": "per-frame-unet", "hyperparameters": network.hyperparameters},
            "sampling_frequency_hz": 30_000.0, "window_ms": {"before": 0.2, "after": 0.2},
            "geometry": {"probe_families": ["any"]}, "training_data": "untrained", "metrics": {}, "licence": "MIT",
            **card_fields}
    return write_model(folder, network, card)


@pytest.mark.parametrize("layout", ["geometry", "checkerboard"])
def test_unet_runs_inside_deepinterpolate_on_the_grid_its_card_names(tmp_path, layout):
    network = tiny_unet()
    locations = make_probe("staggered", 16).contact_positions
    traces = np.random.default_rng(0).normal(2.0, 3.0, size=(3000, 16)).astype("float32")
    recording = saved_recording(tmp_path, traces, locations)
    weights = write_unet(tmp_path / "model", network, grid=layout)
    mean, std = 2.0, 3.0
    denoised = deepinterpolate(recording, weights, mean=mean, std=std)
    whole = denoised.get_traces()
    grid = probe_grid(locations) if layout == "geometry" else checkerboard_grid(16)
    with torch.no_grad():
        expected = network.eval()(torch.as_tensor(grid.to_grid((traces - mean) / std))[None],
                                  torch.as_tensor(grid.mask))[0].numpy()
    np.testing.assert_allclose(whole, grid.from_grid(expected) * std + mean, atol=1e-4)
    assert np.abs(whole - traces).mean() > 0.1  # it predicts, it does not copy
    for start, end in ((0, 5), (1234, 1300), (2990, 3000)):  # chunks at the edges and inside, with their margins
        np.testing.assert_allclose(denoised.get_traces(start_frame=start, end_frame=end), whole[start:end], atol=1e-5)


def test_checkerboard_grid_is_deepinterpolations_neuropixels_layout():
    grid = checkerboard_grid(384)
    assert grid.shape == (384, 2) and grid.mask.sum() == 384
    assert grid.mask[:, 0].tolist() == [True, False] * 192  # channel c at row c, column c % 2
    assert (grid.rows[7], grid.columns[7]) == (7, 1)
    traces = np.arange(2 * 384, dtype="float32").reshape(2, 384)
    on_grid = grid.to_grid(traces)
    assert on_grid[1, 10, 0] == traces[1, 10] and on_grid[1, 10, 1] == 0 and on_grid[0, 11, 1] == traces[0, 11]
    np.testing.assert_array_equal(grid.from_grid(on_grid), traces)


def test_a_checkerboard_model_refuses_another_channel_count(tmp_path):
    locations = make_probe("staggered", 16).contact_positions
    recording = saved_recording(tmp_path, np.random.default_rng(0).normal(size=(3000, 16)), locations)
    weights = write_unet(tmp_path / "model", tiny_unet(), grid="checkerboard",
                         geometry={"probe_families": ["neuropixels-1.0"], "min_channels": 384, "max_channels": 384})
    with pytest.raises(DlsortInputError, match="reads 384 channels on a checkerboard .* the recording has 16"):
        deepinterpolate(recording, weights, mean=0.0, std=1.0)

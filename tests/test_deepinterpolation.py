"""DeepInterpolation's building blocks: channels on a probe grid, and the blind-spot network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlsort.geometry import probe_grid
from dlsort.groundtruth import make_probe
from dlsort.nn import BlindSpotInterpolator, build_network
from dlsort.training.noise import shared_data_dir


@pytest.mark.parametrize(("kind", "num_channels", "shape"), [
    ("np1", 384, (192, 4)),       # 4 columns, 2 contacts per 20-um row: every other cell empty
    ("np2", 64, (32, 2)),         # 2 columns, full
    ("utah", 100, (10, 10)),      # the square
    ("tetrode", 4, (2, 2)),
    ("staggered", 32, None),      # 3 columns, middle one shifted: rows of both offsets
])
def test_probe_grids_place_every_channel_once_and_round_trip(kind, num_channels, shape):
    locations = make_probe(kind, num_channels).contact_positions
    grid = probe_grid(locations)
    if shape is not None:
        assert grid.shape == shape
    assert grid.mask.sum() == num_channels
    traces = np.random.default_rng(0).normal(size=(7, num_channels)).astype("float32")
    on_grid = grid.to_grid(traces)
    assert on_grid.shape == (7, *grid.shape) and np.all(on_grid[:, ~grid.mask] == 0)
    np.testing.assert_array_equal(grid.from_grid(on_grid), traces)
    # neighbours on the probe are neighbours on the grid: x and y order is kept
    for axis, index in ((0, grid.columns), (1, grid.rows)):
        order = np.argsort(locations[:, axis], kind="stable")
        assert np.all(np.diff(index[order]) >= 0)


def test_np1_grid_is_a_checkerboard_of_real_channels():
    mask = probe_grid(make_probe("np1", 384).contact_positions).mask
    assert mask.sum(axis=1).tolist() == [2] * 192  # two contacts per row
    assert mask[:, [0, 2]].any(axis=1).sum() == 96 and mask[:, [1, 3]].any(axis=1).sum() == 96  # staggered rows


def test_probe_grid_refuses_bad_locations():
    with pytest.raises(ValueError, match=r"channels \[1, 2\] share a grid cell"):
        probe_grid(np.array([[0.0, 0.0], [10.0, 20.0], [10.4, 20.3]]))
    with pytest.raises(ValueError, match="NaN"):
        probe_grid(np.array([[0.0, 0.0], [np.nan, 20.0]]))
    with pytest.raises(ValueError, match=r"\(num_channels, 2\)"):
        probe_grid(np.zeros((3,)))


@pytest.mark.parametrize(("end_rows", "row"), [("zeros", 3), ("reflect", 3), ("reflect", 0)])
def test_no_output_frame_sees_itself_or_its_neighbours(end_rows, row):
    torch.manual_seed(0)
    network = BlindSpotInterpolator(omission=2, end_rows=end_rows)
    traces = torch.randn(1, 120, 6, 4, requires_grad=True)
    mask = torch.ones(6, 4)
    t = 60
    network(traces, mask)[0, t, row, 1].backward()
    seen = traces.grad[0].abs().sum(dim=(1, 2)) > 0
    frames = torch.nonzero(seen).flatten()
    assert not seen[t - 2:t + 3].any()  # the blind spot: t and 2 frames on each side
    assert frames.min() == t - 2 - network.context and frames.max() == t + 2 + network.context
    assert seen[t - 3] and seen[t + 3]  # the nearest frames it may use, it uses
    assert traces.grad[0, t - 3].abs().sum(dim=0).count_nonzero() > 1  # and the neighbouring channels


def rows_read(network: BlindSpotInterpolator, traces: torch.Tensor, t: int, row: int) -> list[int]:
    """Grid rows whose traces the prediction at frame ``t``, row ``row``, column 0 depends on; checks the blind spot."""
    traces = traces.clone().requires_grad_(True)
    network(traces, torch.ones(traces.shape[2:]))[0, t, row, 0].backward()
    assert not traces.grad[0, t - 1:t + 2].any()
    return torch.nonzero(traces.grad[0].abs().sum(dim=(0, 2)) > 0).flatten().tolist()


@pytest.mark.parametrize("readout_layers", [1, 3])
def test_each_readout_layer_reaches_one_row_further_on_inner_rows_and_keeps_the_blind_spot(readout_layers):
    torch.manual_seed(0)
    network = BlindSpotInterpolator(readout_layers=readout_layers, end_rows="reflect")
    traces = torch.randn(1, 100, 12, 2)
    assert rows_read(network, traces, 50, 6) == list(range(6 - readout_layers, 6 + readout_layers + 1))
    # within readout_layers rows of an end only the first layer predicts: one row on each side, the end mirrored
    assert rows_read(network, traces, 50, readout_layers - 1) == list(range(max(0, readout_layers - 2),
                                                                            readout_layers + 1))
    assert rows_read(network, traces, 50, 11) == [10, 11]
    if readout_layers > 1:  # the correction changes the inner rows only
        with torch.no_grad():
            plain = network(traces, torch.ones(12, 2))
            network.correction[-1].bias.add_(1.0)
            moved = network(traces, torch.ones(12, 2)) - plain
        assert torch.allclose(moved[0, :, 3:9], torch.ones(1)) and not moved[0, :, [0, 1, 2, 9, 10, 11]].any()


def test_empty_cells_neither_feed_nor_receive_predictions():
    torch.manual_seed(0)
    network = BlindSpotInterpolator()
    mask = torch.ones(5, 3)
    mask[2, 1] = 0
    traces = torch.randn(2, 80, 5, 3)
    output = network(traces, mask)
    assert output.shape == traces.shape and torch.all(output[:, :, 2, 1] == 0)
    changed = traces.clone()
    changed[:, :, 2, 1] = 1e3  # garbage in an empty cell changes nothing
    torch.testing.assert_close(network(changed, mask), output)


def test_mirrored_end_rows_are_the_rows_inside_seen_beyond_the_ends():
    torch.manual_seed(0)
    mirrored = BlindSpotInterpolator(filters=4, dilations=(1, 2), end_rows="reflect").eval()
    empty = BlindSpotInterpolator(filters=4, dilations=(1, 2)).eval()
    empty.load_state_dict(mirrored.state_dict())  # one set of weights, two ways to end the rows
    traces, mask = torch.randn(1, 50, 5, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 2 + [[1.0, 0.0]])
    with torch.no_grad():
        output = mirrored(traces, mask)
        # the same grid with rows 1 and 3 written out beyond its ends, read with empty rows beyond those
        extended = torch.cat([traces[:, :, 1:2], traces, traces[:, :, 3:4]], dim=2)
        expected = empty(extended, torch.cat([mask[1:2], mask, mask[3:4]]))[:, :, 1:-1]
        torch.testing.assert_close(output, expected)
        plain = empty(traces, mask)
        torch.testing.assert_close(output[:, :, 1:-1], plain[:, :, 1:-1])  # rows inside see no difference
        assert not torch.allclose(output[:, :, [0, -1]], plain[:, :, [0, -1]])
        one_row = mirrored(traces[:, :, :1], mask[:1])  # a single row is repeated beyond both ends
        torch.testing.assert_close(one_row, empty(traces[:, :, [0, 0, 0]], mask[[0, 0, 0]])[:, :, 1:2])


def test_cards_without_end_rows_build_networks_with_empty_rows_beyond_the_ends():
    network = BlindSpotInterpolator(filters=4, dilations=(1, 2))
    card = {"name": "blind-spot-interpolator",
            "hyperparameters": {k: v for k, v in network.hyperparameters.items() if k != "end_rows"}}
    assert build_network(card, network.state_dict()).end_rows == "zeros"  # the 1.0.0 models' cards
    with pytest.raises(ValueError, match="end_rows must be 'zeros' or 'reflect'"):
        BlindSpotInterpolator(end_rows="wrap")


@pytest.mark.parametrize("model_id", ["deepinterpolation-np1", "deepinterpolation-generic"])
def test_shipped_interpolators_1_1_are_1_0_with_mirrored_end_rows(model_id):
    from dlsort.models import load

    old_tensors, old_card, _ = load(f"{model_id}@1.0.0", task="deepinterpolation")
    new_tensors, new_card, _ = load(f"{model_id}@1.1.0", task="deepinterpolation")
    assert old_tensors.keys() == new_tensors.keys()
    for key in old_tensors:
        torch.testing.assert_close(new_tensors[key], old_tensors[key], rtol=0, atol=0)
    assert build_network(old_card["architecture"], old_tensors).end_rows == "zeros"
    assert build_network(new_card["architecture"], new_tensors).end_rows == "reflect"


def test_shipped_interpolator_2_0_is_1_1_with_a_correction_of_its_inner_rows():
    from dlsort.models import load

    base_tensors, _, _ = load("deepinterpolation-np1@1.1.0", task="deepinterpolation")
    tensors, card, _ = load("deepinterpolation-np1@2.0.0", task="deepinterpolation")
    for key in base_tensors:  # frozen while the correction trained
        torch.testing.assert_close(tensors[key], base_tensors[key], rtol=0, atol=0)
    assert sorted({key.split(".")[0] for key in tensors.keys() - base_tensors.keys()}) == ["correction"]
    network = build_network(card["architecture"], tensors)
    assert network.hyperparameters["readout_layers"] == 3 and network.end_rows == "reflect"


def test_interpolator_is_built_from_a_model_card():
    network = BlindSpotInterpolator(filters=4, dilations=(1, 2))
    card = {"name": "blind-spot-interpolator", "hyperparameters": {**network.hyperparameters,
                                                                    "dilations": [1, 2]}}
    rebuilt = build_network(card, network.state_dict())
    traces, mask = torch.randn(1, 40, 3, 2), torch.ones(3, 2)
    torch.testing.assert_close(rebuilt(traces, mask), network.eval()(traces, mask))
    with pytest.raises(ValueError, match="odd spatial_kernel"):
        BlindSpotInterpolator(spatial_kernel=2)
    with pytest.raises(ValueError, match=r"\(batch, samples, rows, columns\)"):
        network(torch.randn(40, 3, 2), mask)


@pytest.mark.skipif(not (shared_data_dir() / "ibl_np1_noise_spatial_sqrtcov_384.npy").exists(),
                    reason="the shared Neuropixels noise statistics are absent (set DLSORT_SHARED_DATA)")
def test_shipped_neuropixels_model_removes_noise_and_keeps_spikes():
    from dlsort.preprocessing import deepinterpolate
    from dlsort.training.hybrid import hybrid_recording

    hybrid = hybrid_recording(make_probe("np1", 32), 12, 3.0, 5.0, seed=3)
    denoised = deepinterpolate(hybrid.recording, "deepinterpolation-np1").get_traces()
    inner = slice(3000, 87_000)
    before = np.mean((hybrid.recording.get_traces()[inner] - hybrid.clean[inner]) ** 2)
    after = np.mean((denoised[inner] - hybrid.clean[inner]) ** 2)
    assert 10 * np.log10(before / after) > 4.0  # the quality benchmark measures 5.4 dB on 64 channels
    clean, kept = hybrid.clean[inner], denoised[inner]
    large = np.abs(clean) > 50  # samples of large spikes
    assert np.sum(kept[large] * np.sign(clean[large])) / np.sum(np.abs(clean[large])) > 0.9

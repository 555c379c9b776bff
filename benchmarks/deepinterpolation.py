"""DeepInterpolation's cost on CPU: multiply-adds per output sample and the real-time factor of the lazy preprocessor.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/deepinterpolation.py [--seconds 10] [--threads 2] [--readout-layers N]

For a 32-channel staggered probe and a 384-channel Neuropixels 1.0 probe (generated recordings,
saved first), builds ``deepinterpolate`` with an untrained blind-spot interpolator of the size
``dlsort train deepinterpolation`` trains (``new_interpolator``; with ``--readout-layers N``, the read-out
of a network deepened to N layers, as ``deepinterpolation-np1@2.0.0`` with 3; speed does not depend on the
weights) and times ``get_traces`` over ``--seconds`` of the recording in 1-s chunks, on ``--threads`` torch
threads, after one warm-up chunk. Prints the multiply-adds per output sample (per channel and frame) next to
DeepInterpolation's per-frame U-Net (``PerFrameUNet``, 318.6 M per 384-channel frame, counted from
its layers), and the real-time factor (recording seconds per wall second). Run it with nothing else
on the machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

UNET_CHANNELS = 384  # DeepInterpolation's unet_single_ephys_1024 reads one 384-channel frame on a 384 x 2 grid


def multiply_adds(module) -> int:
    """Multiply-adds per position (cell and frame) of every convolution in ``module``."""
    import math

    from torch import nn

    return sum(layer.in_channels * layer.out_channels * math.prod(layer.kernel_size)
               for layer in module.modules() if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d))


def multiply_adds_per_output_sample(network, grid) -> float:
    """One forward pass per channel and frame: the temporal stacks run on occupied cells, the read-out (and its
    correction, computed on every row before the inner ones are kept) on all cells."""
    stacks = multiply_adds(network.forward_stack) + multiply_adds(network.backward_stack)
    readout = multiply_adds(network) - stacks
    return (stacks * grid.mask.sum() + readout * grid.mask.size) / grid.mask.sum()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    import torch

    from dlsort.geometry import probe_grid
    from dlsort.groundtruth import GroundTruthCase, generate_case
    from dlsort.nn import PerFrameUNet
    from dlsort.preprocessing import deepinterpolate
    from dlsort.training.deepinterpolation import interpolator_card, new_interpolator
    from dlsort.training.trainer import TrainingReport, write_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unet-frames", type=int, default=300,
                        help="frames the per-frame U-Net is timed on (it is ~170x slower)")
    parser.add_argument("--readout-layers", type=int, help="grid layers in the blind-spot interpolator's read-out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network, unet = new_interpolator(readout_layers=args.readout_layers), PerFrameUNet().eval()
    unet_per_sample = PerFrameUNet().multiply_adds_per_frame(UNET_CHANNELS, 2) / UNET_CHANNELS
    print(f"blind-spot interpolator {network.hyperparameters}: {multiply_adds(network)} multiply-adds per grid cell "
          "and frame (the temporal stacks skip empty cells)")
    with tempfile.TemporaryDirectory() as tmp:
        for case in (GroundTruthCase("DI32", "32-ch staggered", "staggered", 32, 10, args.seconds + 2, seed=0),
                     GroundTruthCase("DI384", "Neuropixels 1.0", "np1", 384, 60, args.seconds + 2, seed=0)):
            recording, _ = generate_case(case)
            recording = recording.save(folder=Path(tmp) / case.name, n_jobs=2, progress_bar=False)
            grid = probe_grid(recording.get_channel_locations())
            card = interpolator_card(network, recording, "speed-test", "0.0.0", "untrained", TrainingReport())
            weights = write_model(Path(tmp) / f"{case.name}-model", network, card)
            interpolated = deepinterpolate(recording, weights, mean=0.0, std=1.0)
            fs = int(recording.sampling_frequency)
            interpolated.get_traces(start_frame=0, end_frame=fs)  # warm-up
            started = time.perf_counter()
            for second in range(1, int(args.seconds) + 1):
                interpolated.get_traces(start_frame=second * fs, end_frame=(second + 1) * fs)
            wall = time.perf_counter() - started
            per_sample = multiply_adds_per_output_sample(network, grid)
            ratio = unet_per_sample / per_sample
            print(f"{case.num_channels:>4} channels (grid {grid.shape[0]} x {grid.shape[1]}): {per_sample / 1e3:.1f} k "
                  f"multiply-adds per output sample ({ratio:.0f}x fewer than the per-frame U-Net's "
                  f"{unet_per_sample / 1e3:.0f} k); real-time factor {int(args.seconds) / wall:.2f} ({wall:.1f} s for "
                  f"{int(args.seconds)} s, {args.threads} threads)")
            mask = torch.as_tensor(grid.mask)
            frames = torch.as_tensor(grid.to_grid(recording.get_traces(end_frame=args.unet_frames)))[None]
            with torch.no_grad():
                unet(frames[:, :8], mask)  # warm-up
                started = time.perf_counter()
                unet(frames, mask)
            wall = time.perf_counter() - started
            print(f"{'':>4} per-frame U-Net on the same grid: real-time factor {args.unet_frames / fs / wall:.4f} "
                  f"({wall:.1f} s for {args.unet_frames} frames)")


if __name__ == "__main__":
    main()

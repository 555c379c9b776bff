"""Time a fine-tune of the shipped denoiser on a recording, as ``dlsort train denoiser --recording`` runs it.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/finetune.py [--minutes 10]

The recording is the lazy 64-channel Neuropixels 1.0 ground-truth recording of ``memory.py``
(never written to disk). Prints the time to fit the noise model, the training time and epochs,
the total, and the held-out errors (network, raw, temporal PCA) of the fine-tuned model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import make_recording  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    import torch

    from dlsort.models import load
    from dlsort.nn import build_network
    from dlsort.training.cli import FINE_TUNE_EPOCHS, FINE_TUNE_EXAMPLES
    from dlsort.training.denoiser import train_denoiser
    from dlsort.training.synthesis import recording_noise

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)  # the CLI's default --threads
    start = time.perf_counter()
    noise = recording_noise(make_recording(args.minutes), args.minutes)
    noise_s = time.perf_counter() - start
    tensors, card, _ = load("denoiser-generic", task="denoiser")
    _, report, metrics = train_denoiser(noise, start_from=build_network(card["architecture"], tensors),
                                        num_examples=FINE_TUNE_EXAMPLES, max_epochs=FINE_TUNE_EPOCHS,
                                        progress_bar=False)
    overall = metrics[-1]
    print(f"{args.minutes:g}-minute recording: noise model {noise_s:.1f} s, training {report.seconds:.1f} s "
          f"({report.epochs} epochs), total {time.perf_counter() - start:.1f} s; held-out MSE "
          f"{overall['mse_network']:.3f} (raw {overall['mse_raw']:.3f}, temporal PCA {overall['mse_pca']:.3f})")


if __name__ == "__main__":
    main()

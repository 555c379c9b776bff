"""Time a fine-tune of a shipped network on a recording, as ``dlsort train denoiser|detector --recording`` runs it.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/finetune.py [--minutes 10] [--tasks denoiser detector] [--denoiser-bootstrap]

The recording is the lazy 64-channel Neuropixels 1.0 ground-truth recording of ``memory.py``
(never written to disk). Prints, per network, the time to fit the noise model and to run the
bootstrap sort that gives the recording's own templates (the detector's, and with
``--denoiser-bootstrap`` the denoiser's), the training time and epochs, the
total, and the held-out metrics of the fine-tuned model (denoiser: errors of the network, raw
and temporal PCA; detector: recall and precision of the network and of threshold detection on
held-out synthetic patches of the recording's probe).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import make_recording  # noqa: E402


def fine_tune(task: str, noise, start: tuple, templates) -> str:
    """Fine-tune ``start`` (network, card) with the CLI's fine-tuning defaults; a summary of the held-out metrics."""
    from dlsort.training.bootstrap import bootstrap_waveforms
    from dlsort.training.cli import SIZES
    from dlsort.training.denoiser import train_denoiser
    from dlsort.training.detector import DEFAULT_GEOMETRY, evaluate_detector, train_detector

    sizes = SIZES[task]["fine-tune"]
    start_from, card = start
    if task == "denoiser":
        waveforms = None if templates is None else bootstrap_waveforms(templates, card["window_ms"]["before"],
                                                                       card["window_ms"]["after"])
        _, report, metrics = train_denoiser(noise.temporal, start_from=start_from, num_examples=sizes["examples"],
                                            max_epochs=sizes["epochs"], progress_bar=False,
                                            recording_waveforms=waveforms)
        overall = metrics[-1]
        summary = (f"held-out MSE {overall['mse_network']:.3f} (raw {overall['mse_raw']:.3f}, temporal PCA "
                   f"{overall['mse_pca']:.3f})")
    else:
        network, report, held_out = train_detector(
            noise.temporal, noise.spatial, start_from=start_from, locations=noise.locations, templates=templates,
            num_patches=sizes["patches"], num_examples=sizes["examples"], max_epochs=sizes["epochs"],
            progress_bar=False)
        _, rows = evaluate_detector(network, held_out, DEFAULT_GEOMETRY)
        summary = "; ".join(f"{row['detector']}: recall {row['recall']:.3f}, precision {row['precision']:.3f}"
                            for row in rows)
    return f"training {report.seconds:.1f} s ({report.epochs} epochs); {summary}"


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    import torch

    from dlsort.models import load
    from dlsort.nn import build_network
    from dlsort.training.bootstrap import bootstrap_templates
    from dlsort.training.cli import BOOTSTRAP_MINUTES
    from dlsort.training.noise import recording_noise

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--tasks", nargs="+", choices=("denoiser", "detector"), default=["denoiser", "detector"])
    parser.add_argument("--denoiser-bootstrap", action="store_true",
                        help="fine-tune the denoiser on a bootstrap sort's shapes too (dlsort train denoiser "
                             "--bootstrap-minutes 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)  # the CLI's default --threads
    for task in args.tasks:
        start = time.perf_counter()
        recording = make_recording(args.minutes)
        noise = recording_noise(recording, args.minutes)
        noise_s = time.perf_counter() - start
        templates, bootstrap = None, ""
        if task == "detector" or args.denoiser_bootstrap:
            templates = bootstrap_templates(recording, BOOTSTRAP_MINUTES)
            bootstrap = (f"bootstrap sort of {BOOTSTRAP_MINUTES:g} min {time.perf_counter() - start - noise_s:.1f} s "
                         f"({len(templates.templates)} units), ")
        tensors, card, _ = load(f"{task}-generic", task=task)
        summary = fine_tune(task, noise, (build_network(card["architecture"], tensors), card), templates)
        print(f"{task}, {args.minutes:g}-minute recording: noise model {noise_s:.1f} s, {bootstrap}{summary}; total "
              f"{time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()

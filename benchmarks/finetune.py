"""Time a fine-tune of a shipped network on a recording, as ``dlsort train denoiser|detector --recording`` runs it.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/finetune.py [--minutes 10] [--tasks denoiser detector] [--denoiser-bootstrap]

The recording is the lazy 64-channel Neuropixels 1.0 ground-truth recording of ``memory.py``
(never written to disk). Prints, per network, the time to fit the noise model and to run the
bootstrap sort that gives the recording's own templates (the detector's, and with
``--denoiser-bootstrap`` the denoiser's), the training time and epochs, the
total, and the held-out metrics of the fine-tuned model (denoiser: errors of the network, raw
and temporal PCA; detector: recall and precision of the fine-tuned network, of the shipped one it
started from, each at its precision-matched operating point, and of threshold detection at 5, on
synthetic patches of the recording's probe in its noise: the training's held-out patches, half of
them with the bootstrap sort's units, and ``GENERATED_PATCHES`` patches of generated units only).

The two patch sets score differently: a recording's own units reach contacts more than 50 um
from their main channel, where the score counts a detection as a false peak (for every detector
alike), so precision on the held-out patches stays low and the precision-matched operating point
high; the generated units' footprints are smaller.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import make_recording  # noqa: E402

GENERATED_PATCHES = 20


def fine_tune(task: str, noise, start: tuple, templates) -> tuple[str, float]:
    """Fine-tune ``start`` (network, card) with the CLI's fine-tuning defaults.

    Returns a summary of the held-out metrics and the seconds spent on the comparisons the CLI
    does not run (the shipped detector's scores, the patches of generated units).
    """
    from dlsort.training.bootstrap import bootstrap_waveforms
    from dlsort.training.cli import SIZES
    from dlsort.training.denoiser import train_denoiser
    from dlsort.training.detector import DEFAULT_GEOMETRY, evaluate_detector, train_detector, training_patches

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
        extra_s = 0.0
    else:
        shipped = copy.deepcopy(start_from)  # training changes start_from in place
        network, report, held_out = train_detector(
            noise.temporal, noise.spatial, start_from=start_from, locations=noise.locations, templates=templates,
            num_patches=sizes["patches"], num_examples=sizes["examples"], max_epochs=sizes["epochs"],
            progress_bar=False)
        start_s, cli_s = time.perf_counter(), 0.0
        generated = training_patches(noise.temporal, noise.spatial, GENERATED_PATCHES, seed=1,
                                     locations=noise.locations)
        parts = []
        for label, patches in (("held-out patches", held_out), ("patches of generated units", generated)):
            scores = {}
            for name, detector in (("fine-tuned", network), ("shipped", shipped)):
                call_s = time.perf_counter()
                _, rows = evaluate_detector(detector, patches, DEFAULT_GEOMETRY)
                if patches is held_out and detector is network:  # the CLI runs this one: its card's calibration
                    cli_s = time.perf_counter() - call_s
                scores[name] = rows[0]
            scores["threshold 5"] = rows[1]
            parts.append(f"{label}: " + ", ".join(
                f"{name} recall {row['recall']:.3f} (SNR 3-5 {row['recall_by_snr']['3-5']:.3f}) at precision "
                f"{row['precision']:.3f}" for name, row in scores.items()))
        summary = "; ".join(parts)
        extra_s = time.perf_counter() - start_s - cli_s
    return f"training {report.seconds:.1f} s ({report.epochs} epochs); {summary}", extra_s


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
        summary, extra_s = fine_tune(task, noise, (build_network(card["architecture"], tensors), card), templates)
        print(f"{task}, {args.minutes:g}-minute recording: noise model {noise_s:.1f} s, {bootstrap}{summary}; total "
              f"{time.perf_counter() - start - extra_s:.1f} s (the comparisons with the shipped network and on "
              "generated units excluded)", flush=True)


if __name__ == "__main__":
    main()

"""The sorter with and without DeepInterpolation: well-detected units on ground-truth cases.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/deepinterpolation_sorting.py [--cases S M L] [--windows 1000] [--epochs 20]
        [--workdir benchmarks/work] [--output docs/benchmarks.md]

For each case (saved once in the work directory, as ``run_benchmark.py`` does) a blind-spot
interpolator is trained on the case's own recording with ``dlsort train deepinterpolation``
(self-supervised: no ground truth), then ``dlsort`` sorts the recording with default parameters,
once without and once with ``deepinterpolation_model`` naming that model, each with ``n_jobs=2``.
Training time, sorting wall time and the ground-truth evaluation (well detected = accuracy >=
0.8) go to ``<workdir>/deepinterpolation_sorting/<case>.json`` and the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import dlsort_source, write_report  # noqa: E402
from run_benchmark import case_folder, prepare_case, sorter_params  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def sort_and_evaluate(recording, gt_sorting, snrs, folder: Path, **params) -> dict:
    """Run dlsort on ``recording`` into ``folder`` and compare it with the ground truth."""
    from spikeinterface.sorters import run_sorter

    from dlsort.evaluation import evaluate

    started = time.perf_counter()
    sorting = run_sorter("dlsort", recording, folder=folder, remove_existing_folder=True, verbose=False,
                         **sorter_params("dlsort"), **params)
    wall = time.perf_counter() - started
    evaluation = evaluate(gt_sorting, sorting, snrs=snrs).as_dict()
    evaluation.pop("per_unit")
    return {"wall_time_s": round(wall, 1), "evaluation": evaluation}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    import numpy as np
    from spikeinterface.core import load

    import dlsort  # noqa: F401  (registers the sorter)
    from dlsort.cli import main as dlsort_main

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["S", "M", "L"])
    parser.add_argument("--windows", type=int, default=1000, help="training windows (dlsort train --windows)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (dlsort train --epochs)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    results = args.workdir / "deepinterpolation_sorting"
    results.mkdir(parents=True, exist_ok=True)
    for case in args.cases:
        prepare_case(case, args.workdir)
        folder = case_folder(args.workdir, case)
        recording, gt_sorting = load(folder / "recording"), load(folder / "gt_sorting")
        snrs = np.load(folder / "snrs.npy")
        record = {"case": case, "dlsort_git": dlsort_source(),
                  "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        model = folder / "deepinterpolation"
        started = time.perf_counter()
        dlsort_main(["train", "deepinterpolation", "--recording", str(folder / "recording"), "--output", str(model),
                     "--id", f"di-{case.lower()}", "--version", "0.0.1", "--windows", str(args.windows), "--epochs",
                     str(args.epochs), "--overwrite", "--quiet"])
        record["training_s"] = round(time.perf_counter() - started, 1)
        record["training"] = {"windows": args.windows, "epochs": args.epochs}
        record["plain"] = sort_and_evaluate(recording, gt_sorting, snrs, folder / "sorters" / "dlsort-plain")
        record["deepinterpolation"] = sort_and_evaluate(
            recording, gt_sorting, snrs, folder / "sorters" / "dlsort-deepinterpolation",
            deepinterpolation_model=str(model / "weights.safetensors"))
        (results / f"{case}.json").write_text(json.dumps(record, indent=1))
        command = "python benchmarks/deepinterpolation_sorting.py" + (
            f" --cases {' '.join(args.cases)}" if args.cases != ["S", "M", "L"] else "") + (
            f" --windows {args.windows} --epochs {args.epochs}" if (args.windows, args.epochs) != (1000, 20) else "")
        write_report(args.workdir, args.output, deepinterpolation_sorting_command=command)
        for run in ("plain", "deepinterpolation"):
            evaluation = record[run]["evaluation"]
            print(f"{case} {run:>17}: {evaluation['well_detected']}/{evaluation['num_gt_units']} well detected, "
                  f"accuracy {evaluation['accuracy']:.3f}, {record[run]['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()

"""Generalization across probe families: shipped weights, weights fine-tuned on the recording, and the peers.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/generalization.py [--cases N1 NP2 LIN P4 T20 U MEA]
        [--peers spykingcircus2 tridesclous2 lupin] [--workdir benchmarks/work]
        [--output docs/benchmarks.md] [--timeout-s 900] [--keep-done]

For each case of ``dlsort.groundtruth.PROBE_FAMILY_CASES`` (one generated recording per probe
family, saved once into the work directory as ``run_benchmark.py`` does), in this order:

1. dlsort with its defaults, that is with the shipped networks;
2. ``dlsort train detector --recording REC`` and ``dlsort train denoiser --recording REC``, each
   in its own process, timed as a user would see them (start-up, noise fit, the detector's
   bootstrap sort, training);
3. dlsort with the two fine-tuned networks (``detection_model``, ``denoising_model``);
4. every peer.

Every sorter runs alone in its own subprocess with ``n_jobs=2`` (``run_benchmark.run_in_subprocess``);
its record is stored under ``<workdir>/<case>/results/``. The case's summary goes to
``<workdir>/generalization/<case>.json`` and the section "Generalization across probe families"
of the report is rewritten in place after every case. ``--keep-done`` reuses finished runs and
fine-tuned networks already in the work directory (to resume an interrupted benchmark).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import generalization_section, rewrite_section_from  # noqa: E402
from run_benchmark import add_run_arguments, case_folder, prepare_case, run_or_reuse, subprocess_env  # noqa: E402

DEFAULT_PEERS = ["spykingcircus2", "tridesclous2", "lupin"]
FINE_TUNED_TASKS = {"detector": "detection_model", "denoiser": "denoising_model"}


def fine_tune(case: str, task: str, workdir: Path, keep_done: bool) -> dict:
    """Fine-tune the shipped ``task`` network on the case's recording with the CLI and time it.

    Parameters
    ----------
    case : str
    task : {"detector", "denoiser"}
    workdir : Path
    keep_done : bool
        Reuse a network fine-tuned by an earlier run (its stored timing) instead of training again, when its
        weights are still in the work directory (a fresh clone keeps the timing, not the weights).

    Returns
    -------
    dict
        ``{"task", "weights", "seconds", "status"}`` (and ``"error"`` when the command failed).
    """
    folder = case_folder(workdir, case)
    output = folder / "fine-tuned" / task
    timing = output / "timing.json"
    if keep_done and timing.exists() and (output / "weights.safetensors").exists():
        return json.loads(timing.read_text())
    log_path = folder / "logs" / f"train-{task}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "dlsort.cli", "train", task, "--recording", str(folder / "recording"),
               "--output", str(output), "--overwrite", "--quiet"]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env()).returncode
    result = {"task": task, "weights": str(output / "weights.safetensors"), "seconds": time.perf_counter() - start,
              "status": "ok" if returncode == 0 else "failed"}
    if returncode != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        result["error"] = lines[-1] if lines else f"exit code {returncode}"
    else:
        timing.write_text(json.dumps(result, indent=1))
    return result


def summary_of(record: dict) -> dict:
    """The fields of a result record the generalization table reads."""
    evaluation = record.get("evaluation") or {}
    keys = ("num_gt_units", "num_units", "well_detected", "false_positive_units", "accuracy", "precision", "recall")
    return {"sorter": record["sorter"], "status": record["status"], "wall_time_s": record.get("wall_time_s"),
            "error": record.get("error"), "dlsort_git": record.get("dlsort_git"),
            "sorter_version": record.get("sorter_version"), **{key: evaluation.get(key) for key in keys}}


def run_case(case: str, peers: list[str], workdir: Path, timeout_s: float, keep_done: bool, command: str) -> dict:
    """Shipped, fine-tuned and peer runs of one case; returns (and stores) its summary (``command`` names the run)."""
    from dlsort.groundtruth import PROBE_FAMILY_CASES

    spec = PROBE_FAMILY_CASES[case]
    print(f"[{time.strftime('%H:%M:%S')}] case {case}: preparing", flush=True)
    prepare_case(case, workdir)
    shipped = run_or_reuse(case, "dlsort", workdir, timeout_s, keep_done)
    tuned = {task: fine_tune(case, task, workdir, keep_done) for task in FINE_TUNED_TASKS}
    summary = {
        "case": case, "command": command, "description": spec.description, "probe": spec.probe,
        "num_channels": spec.num_channels, "num_units": spec.num_units, "duration_s": spec.duration_s,
        "sampling_frequency": spec.sampling_frequency,
        "started_utc": shipped.get("started_utc"), "fine_tuning": tuned, "shipped": summary_of(shipped),
    }
    if all(result["status"] == "ok" for result in tuned.values()):
        models = ",".join(f"{FINE_TUNED_TASKS[task]}={result['weights']}" for task, result in tuned.items())
        summary["fine_tuned"] = summary_of(run_or_reuse(case, f"dlsort:{models}", workdir, timeout_s, keep_done))
    summary["peers"] = [summary_of(run_or_reuse(case, peer, workdir, timeout_s, keep_done)) for peer in peers]
    path = workdir / "generalization" / f"{case}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    from dlsort.groundtruth import PROBE_FAMILY_CASES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(PROBE_FAMILY_CASES), choices=list(PROBE_FAMILY_CASES))
    parser.add_argument("--peers", nargs="+", default=DEFAULT_PEERS)
    add_run_arguments(parser, keep_done=True)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    command = "python benchmarks/generalization.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for case in [] if args.report_only else args.cases:
        run_case(case, args.peers, workdir, args.timeout_s, args.keep_done, command)
        rewrite_section_from(workdir, "generalization", args.output, generalization_section)
    rewrite_section_from(workdir, "generalization", args.output, generalization_section)


if __name__ == "__main__":
    main()

"""Ground-truth benchmark of dlsort against its SpikeInterface peers.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/run_benchmark.py [--cases S M D]
        [--sorters dlsort spykingcircus2 tridesclous2 lupin mountainsort5 kilosort4]
        [--workdir benchmarks/work] [--output docs/benchmarks.md] [--timeout-s 900]

For each case of ``dlsort.groundtruth.BENCHMARK_CASES`` the recording is generated and saved
once into the work directory (reused when already there), the ground-truth SNRs are computed
once, then every sorter runs alone, in its own subprocess, with ``n_jobs=2``; a crash or a run
longer than ``--timeout-s`` is recorded as a failed row instead of stopping the benchmark.
Each (case, sorter) result is stored as ``<workdir>/<case>/results/<sorter>.json`` and the
markdown report is rewritten after every sorter, so partial results are never lost.

A sorter may carry extra parameters, ``name:key=value[,key=value]`` (for example
``dlsort:motion_correction=dredge_fast``); it is then stored and reported under that spec.
``--report-only`` rewrites the report from the JSON files already in the work directory;
``--reevaluate`` first scores again every finished run of ``--cases`` from its stored sorter folder
(wall times kept), so that records made before a change to ``dlsort.evaluation`` gain its new fields.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import dlsort_source, one_line, write_report  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_SORTERS = ["dlsort", "spykingcircus2", "tridesclous2", "lupin", "mountainsort5", "kilosort4"]
N_JOBS = 2


def parse_sorter_spec(spec: str) -> tuple[str, dict]:
    """Split a sorter spec ``name[:key=value[,key=value...]]`` into the sorter name and extra parameters.

    Values are read as JSON when they parse (numbers, true/false/null), else kept as strings, e.g.
    ``dlsort:motion_correction=dredge_fast`` -> ``("dlsort", {"motion_correction": "dredge_fast"})``.
    """
    name, _, rest = spec.partition(":")
    extra = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except ValueError:
            extra[key] = value
    return name, extra


def sorter_params(spec: str) -> dict:
    """Parameters that make a sorter use 2 workers and stay quiet, plus the spec's extra parameters.

    Parameters
    ----------
    spec : str
        SpikeInterface sorter name, optionally with extra parameters (``parse_sorter_spec``).

    Returns
    -------
    dict
        Keyword arguments for ``run_sorter`` on top of the sorter's defaults.
    """
    sorter, extra = parse_sorter_spec(spec)
    if sorter in ("spykingcircus2", "tridesclous2", "lupin"):
        params = {"job_kwargs": {"n_jobs": N_JOBS, "progress_bar": False}}
    elif sorter == "kilosort4":
        params = {"n_jobs": N_JOBS, "progress_bar": False, "torch_device": "cpu"}
    else:  # dlsort, mountainsort5
        params = {"n_jobs": N_JOBS, "progress_bar": False}
    return {**params, **extra}


def case_folder(workdir: Path, case: str) -> Path:
    """Folder of one case inside the work directory."""
    return workdir / case


def spec_name(sorter: str) -> str:
    """File-name form of a sorter spec (its record, log and output folder): a ``/`` in a model path becomes ``%2F``."""
    return sorter.replace("/", "%2F")


def prepare_case(case: str, workdir: Path) -> None:
    """Generate, save and measure the SNRs of ``case`` unless already done.

    Parameters
    ----------
    case : str
        Key of ``dlsort.groundtruth.ALL_CASES``.
    workdir : Path
        Work directory; writes ``<case>/recording``, ``<case>/gt_sorting`` and ``<case>/snrs.npy``.
    """
    import numpy as np
    from spikeinterface.core import load

    from dlsort.evaluation import ground_truth_snrs
    from dlsort.groundtruth import ALL_CASES, generate_case

    folder = case_folder(workdir, case)
    done = folder / "prepared.json"
    if done.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    recording, gt_sorting = generate_case(ALL_CASES[case])
    recording = recording.save(folder=folder / "recording", n_jobs=N_JOBS, progress_bar=False, overwrite=True)
    gt_sorting.save(folder=folder / "gt_sorting", overwrite=True)
    snrs = ground_truth_snrs(recording, load(folder / "gt_sorting"))
    np.save(folder / "snrs.npy", snrs)
    info = {"duration_s": recording.get_total_duration(), "num_channels": recording.get_num_channels()}
    done.write_text(json.dumps(info))


def run_one(case: str, sorter: str, workdir: Path) -> dict:
    """Run one sorter on one saved case and evaluate it (called in a subprocess).

    Parameters
    ----------
    case, sorter : str
    workdir : Path

    Returns
    -------
    dict
        The result record (also written to ``<case>/results/<sorter>.json``).
    """
    import numpy as np
    from spikeinterface.core import load
    from spikeinterface.sorters import run_sorter, sorter_dict

    import dlsort  # noqa: F401  (registers the sorter)
    from dlsort.evaluation import evaluate

    folder = case_folder(workdir, case)
    recording = load(folder / "recording")
    has_truth = (folder / "gt_sorting").is_dir()  # a real recording has none: the record then has no evaluation
    record = base_record(case, sorter, recording.get_total_duration())
    try:
        name = parse_sorter_spec(sorter)[0]
        record["sorter_version"] = str(sorter_dict[name].get_sorter_version())
        save_record(record, workdir)  # status "running": the parent completes it on a timeout or crash
        start = time.perf_counter()
        sorting = run_sorter(
            name, recording, folder=folder / "sorters" / spec_name(sorter), remove_existing_folder=True,
            verbose=False, raise_error=True, **sorter_params(sorter),
        )
        record["wall_time_s"] = time.perf_counter() - start
        if has_truth:
            record["evaluation"] = evaluate(load(folder / "gt_sorting"), sorting,
                                            snrs=np.load(folder / "snrs.npy")).as_dict()
        record["status"] = "ok"
    except Exception as error:  # recorded, never raised: one bad sorter must not stop the others
        traceback.print_exc()
        record["status"] = "failed"
        record["error"] = one_line(f"{type(error).__name__}: {error}")
    save_record(record, workdir)
    return record


def reevaluate(case: str, workdir: Path) -> list[str]:
    """Score every finished run of ``case`` again from its sorter folder; return the sorters re-scored.

    Parameters
    ----------
    case : str
    workdir : Path
    """
    import numpy as np
    from spikeinterface.core import load
    from spikeinterface.sorters import read_sorter_folder

    import dlsort  # noqa: F401  (registers the sorter, so that its folders can be read)
    from dlsort.evaluation import evaluate

    folder = case_folder(workdir, case)
    gt_sorting = load(folder / "gt_sorting")
    snrs = np.load(folder / "snrs.npy")
    done = []
    for path in sorted((folder / "results").glob("*.json")):
        record = read_record(path)
        sorter_folder = folder / "sorters" / path.stem
        if not record or record["status"] != "ok" or not sorter_folder.is_dir():
            continue
        sorting = read_sorter_folder(sorter_folder, register_recording=False)
        record["evaluation"] = evaluate(gt_sorting, sorting, snrs=snrs).as_dict()
        record["reevaluated_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        save_record(record, workdir)
        done.append(record["sorter"])
    return done


def base_record(case: str, sorter: str, duration_s: float) -> dict:
    """Skeleton of a result record."""
    return {
        "case": case,
        "sorter": sorter,
        "duration_s": duration_s,
        "status": "running",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sorter_params": sorter_params(sorter),
        "dlsort_git": dlsort_source(),
    }


def save_record(record: dict, workdir: Path) -> Path:
    """Write a result record as JSON and return its path."""
    path = case_folder(workdir, record["case"]) / "results" / f"{spec_name(record['sorter'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def subprocess_env() -> dict:
    """This process's environment with the repository on ``PYTHONPATH``, for the benchmarks' subprocesses."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO_ROOT)]))}


def run_in_subprocess(case: str, sorter: str, workdir: Path, timeout_s: float) -> dict:
    """Run ``run_one`` in a fresh interpreter, kill it after ``timeout_s`` and return its record.

    Parameters
    ----------
    case, sorter : str
    workdir : Path
    timeout_s : float

    Returns
    -------
    dict
        The record the subprocess wrote, or a "failed"/"timed out" record written here.
    """
    duration = json.loads((case_folder(workdir, case) / "prepared.json").read_text())["duration_s"]
    result_path = case_folder(workdir, case) / "results" / f"{spec_name(sorter)}.json"
    result_path.unlink(missing_ok=True)
    log_path = case_folder(workdir, case) / "logs" / f"{spec_name(sorter)}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--run-one", case, sorter, "--workdir", str(workdir)]
    started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(),
                                   start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the sorter's own worker processes too
            process.wait()
            record = read_record(result_path) or base_record(case, sorter, duration)
            record.update(status="timed out", wall_time_s=time.perf_counter() - start, started_utc=started_utc,
                          error=f"timed out after {timeout_s:g} s (killed)")
            save_record(record, workdir)
            return record
    record = read_record(result_path)
    if record and record["status"] != "running":
        return record
    record = record or base_record(case, sorter, duration)
    record.update(status="failed", started_utc=started_utc,
                  error=f"subprocess exited with code {returncode}: {last_line(log_path)}")
    save_record(record, workdir)
    return record


def run_or_reuse(case: str, spec: str, workdir: Path, timeout_s: float, keep_done: bool) -> dict:
    """The record of ``spec`` on ``case``: run now, or an earlier finished one with ``keep_done``."""
    stored = read_record(case_folder(workdir, case) / "results" / f"{spec_name(spec)}.json") if keep_done else None
    if stored and stored["status"] == "ok":
        return stored
    print(f"[{time.strftime('%H:%M:%S')}] case {case}: {spec}", flush=True)
    record = run_in_subprocess(case, spec, workdir, timeout_s)
    print(f"    {record['status']} {record.get('wall_time_s', float('nan')):.1f} s {record.get('error', '')}",
          flush=True)
    return record


def read_record(path: Path) -> dict | None:
    """The result record stored at ``path``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_line(path: Path) -> str:
    """Last non-empty line of a text file (the usual place of a fatal error)."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else "(no output)"


def add_run_arguments(parser: argparse.ArgumentParser, keep_done: bool = False) -> None:
    """The options every sorter benchmark takes: ``--workdir``, ``--output``, ``--timeout-s``, ``--report-only``
    and, with ``keep_done``, ``--keep-done``."""
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from stored results")
    if keep_done:
        parser.add_argument("--keep-done", action="store_true",
                            help="reuse finished runs (and fine-tuned networks) already in the work directory")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["S", "M", "D"])
    parser.add_argument("--sorters", nargs="+", default=ALL_SORTERS,
                        help="sorter names, optionally with parameters: dlsort:motion_correction=dredge_fast")
    add_run_arguments(parser)
    parser.add_argument("--reevaluate", action="store_true",
                        help="score the finished runs of --cases again from their sorter folders, then report")
    parser.add_argument("--run-one", nargs=2, metavar=("CASE", "SORTER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if args.run_one:
        run_one(*args.run_one, workdir)
        return
    command = "python benchmarks/run_benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.reevaluate:
        for case in args.cases:
            print(f"[{time.strftime('%H:%M:%S')}] case {case}: re-scored {', '.join(reevaluate(case, workdir))}")
        command = None
    elif args.report_only:
        command = None
    else:
        for case in args.cases:
            print(f"[{time.strftime('%H:%M:%S')}] case {case}: preparing", flush=True)
            prepare_case(case, workdir)
            for sorter in args.sorters:
                run_or_reuse(case, sorter, workdir, args.timeout_s, keep_done=False)
                write_report(workdir, args.output, benchmark_command=command)
    write_report(workdir, args.output, benchmark_command=command)


if __name__ == "__main__":
    main()

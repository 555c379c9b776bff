"""Real data and hybrid recordings on realistic noise: units, amplitudes and quality metrics beside the peers'.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/real_data.py [--cases REAL HN]
        [--sorters dlsort spykingcircus2 tridesclous2 lupin mountainsort5] [--workdir benchmarks/work]
        [--output docs/benchmarks.md] [--timeout-s 900] [--keep-done]

Cases: ``REAL``, the real 10-channel Neuropixels 1.0 snippet of the shared data (0.33 s, no ground
truth; dlsort runs with 0.1-s chunks, shorter than the recording), and the hybrid cases of
``dlsort.groundtruth.HYBRID_CASES`` (generated spikes on noise with real Neuropixels 1.0
statistics, so that accuracy is known too). Every sorter runs alone in its own subprocess with
``n_jobs=2`` (``run_benchmark.run_in_subprocess``); its sorting is then analysed as ``dlsort report``
does (``dlsort.report.analyze_sorting``: SpikeInterface's quality metrics on the band-passed,
referenced recording) and summarised per sorter into ``<workdir>/real_data/<case>.json``; the section
"Real data and hybrids on Neuropixels noise" of the report is rewritten in place after every case.
Needs the shared data (``DLSORT_SHARED_DATA`` or ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import real_data_section, rewrite_section_from  # noqa: E402
from run_benchmark import (  # noqa: E402
    N_JOBS,
    add_run_arguments,
    case_folder,
    parse_sorter_spec,
    prepare_case,
    run_or_reuse,
    spec_name,
)

REAL_CASE = "REAL"
REAL_DESCRIPTION = "the real 10-ch Neuropixels 1.0 snippet (cortex-lab, 0.33 s, no ground truth)"
DEFAULT_SORTERS = ["dlsort", "spykingcircus2", "tridesclous2", "lupin", "mountainsort5"]


def prepare_real_snippet(workdir: Path) -> None:
    """Save the shared data's real snippet (uV, with its probe) as the ``REAL`` case unless already there."""
    from probeinterface import Probe
    from spikeinterface.core import NumpyRecording

    from dlsort.training.hybrid import neuropixels_snippet

    folder = case_folder(workdir, REAL_CASE)
    done = folder / "prepared.json"
    if done.exists():
        return
    traces, locations = neuropixels_snippet()
    probe = Probe(ndim=2, si_units="um")
    probe.set_contacts(positions=locations, shapes="square", shape_params={"width": 12})
    probe.set_device_channel_indices(list(range(len(locations))))
    recording = NumpyRecording(traces, sampling_frequency=30_000.0)
    recording.set_probe(probe, in_place=True)
    recording = recording.save(folder=folder / "recording", overwrite=True)
    done.write_text(json.dumps({"duration_s": recording.get_total_duration(),
                                "num_channels": recording.get_num_channels()}))


def sorter_spec(case: str, sorter: str) -> str:
    """The spec a sorter runs with on ``case``: dlsort's chunks must fit in the 0.33-s real snippet."""
    if case != REAL_CASE or parse_sorter_spec(sorter)[0] != "dlsort":
        return sorter
    return f"{sorter}{',' if ':' in sorter else ':'}chunk_duration=0.1s"


def quality_summary(case: str, spec: str, workdir: Path) -> dict:
    """Units, amplitudes and quality metrics of one finished sorting (``dlsort.report.analyze_sorting``)."""
    import numpy as np
    from spikeinterface.core import load
    from spikeinterface.sorters import read_sorter_folder

    import dlsort  # noqa: F401  (registers the sorter, so that its folders can be read)
    from dlsort.report import analyze_sorting, quality_table

    folder = case_folder(workdir, case)
    recording = load(folder / "recording")
    sorting = read_sorter_folder(folder / "sorters" / spec_name(spec), register_recording=False)
    summary = {"units": int(sorting.get_num_units())}
    if sorting.get_num_units() == 0:
        return summary
    table = quality_table(analyze_sorting(recording, sorting, job_kwargs={"n_jobs": N_JOBS, "progress_bar": False}))
    summary.update(
        passing_allen=int((table["flags"] == "").sum()),
        median_amplitude_uv=float(np.median(table["amplitude_uv"])),
        median_snr=float(np.median(table["snr"])),
        median_isi_violations_ratio=float(np.nanmedian(table["isi_violations_ratio"])),
        median_presence_ratio=float(np.nanmedian(table["presence_ratio"])),
        median_firing_rate_hz=float(np.median(table["firing_rate"])),
        per_unit={column: [None if value != value else float(value) for value in table[column]]
                  for column in ("amplitude_uv", "snr", "isi_violations_ratio", "presence_ratio", "firing_rate")},
    )
    return summary


def stored_quality(case: str, run: dict, workdir: Path) -> dict | None:
    """The quality summary an earlier ``real_data.py`` stored for this very run (same spec, same start), or None.

    A reused record (``--keep-done``) in a fresh clone has no sorter output folder to analyse again.
    """
    path = workdir / "real_data" / f"{case}.json"
    if not path.exists():
        return None
    for stored in json.loads(path.read_text())["runs"]:
        if (stored["spec"], stored.get("started_utc")) == (run["spec"], run["started_utc"]) and "quality" in stored:
            return stored["quality"]
    return None


def with_stored_runs(runs: list[dict], path: Path) -> list[dict]:
    """``runs`` followed by the runs of the summary at ``path`` whose spec is not among them.

    A run of some sorters only (an ablation, say) keeps the others' runs and quality in the case's
    summary: a reused record (``--keep-done``) has no sorter output folder to analyse again.
    """
    if not path.exists():
        return runs
    ran = {run["spec"] for run in runs}
    return runs + [stored for stored in json.loads(path.read_text())["runs"] if stored["spec"] not in ran]


def run_case(case: str, sorters: list[str], workdir: Path, timeout_s: float, keep_done: bool, command: str) -> dict:
    """Run and analyse every sorter on one case; returns (and stores) the case's summary."""
    from dlsort.groundtruth import HYBRID_CASES

    print(f"[{time.strftime('%H:%M:%S')}] case {case}: preparing", flush=True)
    if case == REAL_CASE:
        prepare_real_snippet(workdir)
    else:
        prepare_case(case, workdir)
    prepared = json.loads((case_folder(workdir, case) / "prepared.json").read_text())
    runs = []
    for sorter in sorters:
        spec = sorter_spec(case, sorter)
        record = run_or_reuse(case, spec, workdir, timeout_s, keep_done)
        run = {"sorter": parse_sorter_spec(spec)[0], "spec": spec, "status": record["status"],
               "error": record.get("error"), "wall_time_s": record.get("wall_time_s"),
               "sorter_version": record.get("sorter_version"), "dlsort_git": record.get("dlsort_git"),
               "started_utc": record.get("started_utc")}
        if record.get("evaluation"):
            run["evaluation"] = {key: record["evaluation"][key] for key in
                                 ("num_gt_units", "well_detected", "false_positive_units", "accuracy")}
        if record["status"] == "ok":
            run["quality"] = stored_quality(case, run, workdir) or quality_summary(case, spec, workdir)
        runs.append(run)
    description = REAL_DESCRIPTION if case == REAL_CASE else HYBRID_CASES[case].description
    path = workdir / "real_data" / f"{case}.json"
    summary = {"case": case, "command": command, "description": description, **prepared,
               "runs": with_stored_runs(runs, path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    from dlsort.groundtruth import HYBRID_CASES

    cases = [REAL_CASE, *HYBRID_CASES]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=cases, choices=cases)
    parser.add_argument("--sorters", nargs="+", default=DEFAULT_SORTERS)
    add_run_arguments(parser, keep_done=True)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    command = "python benchmarks/real_data.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for case in [] if args.report_only else args.cases:
        run_case(case, args.sorters, workdir, args.timeout_s, args.keep_done, command)
        rewrite_section_from(workdir, "real_data", args.output, real_data_section)
    rewrite_section_from(workdir, "real_data", args.output, real_data_section)


if __name__ == "__main__":
    main()

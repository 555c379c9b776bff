"""Peak memory of dlsort against recording length.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/memory.py [--minutes 1 5 20] [--channels 64] [--workdir benchmarks/work]
        [--output docs/benchmarks.md]

Each length runs in a fresh subprocess that builds a lazy Neuropixels 1.0 ground-truth recording
(``--channels`` channels, 40 units per 64 channels, 30 kHz, seeded; never written to disk), calls
``dlsort.pipeline.run_pipeline`` on it with ``n_jobs=2, chunk_duration="1s"`` and a scratch folder
under the work directory (as the sorter gives it one; removed afterwards), and reports
``ru_maxrss`` of itself and of its (process) workers, the wall time, where the preprocessed traces
were cached, and the peak RSS of the process tree (RSS and PSS) sampled every 0.2 s, split by
pipeline stage. Results go to ``<workdir>/memory/<minutes>min.json`` (64 channels) or
``<channels>ch-<minutes>min.json`` and the section "Peak memory vs recording length" of the report.
Linux only (reads ``/proc``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import dlsort_source, one_line, write_report  # noqa: E402
from run_benchmark import subprocess_env  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_KWARGS = {"n_jobs": 2, "chunk_duration": "1s", "progress_bar": False}
# Functions of dlsort.pipeline that are timed and memory-profiled as stages (wrapped at run time).
STAGES = [
    "resolve_motion_correction", "preprocess", "cache_preprocessed", "motion_corrected", "get_noise_levels",
    "detect_peaks", "sample_peaks_per_channel", "build_neighbourhoods", "extract_features", "cluster",
    "estimate_merged_templates", "merge_similar", "templates_from_features", "drop_weaker_halves",
    "estimate_templates", "clean_templates", "match_templates", "remove_ghosts_and_duplicates", "_to_sorting",
]


def _proc_field(path: str, field: str) -> int:
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 if it has gone)."""
    return _proc_field(f"/proc/{pid}/status", "VmRSS:")


def pss_kib(pid: int) -> int:
    """Proportional set size in KiB: pages shared by n processes count 1/n each, so sums over processes are real."""
    return _proc_field(f"/proc/{pid}/smaps_rollup", "Pss:")


def command_name(pid: int) -> str:
    """Short command line of a process ("" if it has gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """Process ids of every live descendant of ``pid``."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


class MemorySampler:
    """Background thread that samples the RSS of this process tree and keeps the peak per stage.

    Attributes
    ----------
    stage : str
        Label the next samples are attributed to.
    stages : dict
        Stage -> {"peak_total_kib", "peak_self_kib", "time_s"}.
    peak_total_kib : int
        Highest sampled RSS of this process plus its descendants.
    peak_pss_kib : int
        Highest sampled PSS (shared pages divided among their sharers) of the same processes.
    peak_stage : str
        Stage during which that peak was sampled.
    peak_processes : list of list
        [pid, RSS in KiB, command] of every descendant alive at that peak.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.stage = "setup"
        self.stages: dict[str, dict] = {}
        self.peak_total_kib = 0
        self.peak_pss_kib = 0
        self.peak_stage = "setup"
        self.peak_processes: list[list] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """Take one sample now and attribute it to the current stage."""
        me = os.getpid()
        own = rss_kib(me)
        children = [(pid, rss_kib(pid)) for pid in descendants(me)]
        total = own + sum(rss for _, rss in children)
        pss = pss_kib(me) + sum(pss_kib(pid) for pid, _ in children)
        entry = self.stages.setdefault(self.stage, {
            "peak_total_kib": 0, "peak_self_kib": 0, "peak_pss_kib": 0, "time_s": 0.0, "max_descendants": 0,
        })
        entry["peak_total_kib"] = max(entry["peak_total_kib"], total)
        entry["peak_pss_kib"] = max(entry["peak_pss_kib"], pss)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        entry["peak_self_kib"] = max(entry["peak_self_kib"], own)
        entry["max_descendants"] = max(entry.get("max_descendants", 0), len(children))
        if total > self.peak_total_kib:
            self.peak_total_kib, self.peak_stage = total, self.stage
            self.peak_processes = [[pid, rss, command_name(pid)] for pid, rss in children]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def wrap(self, name: str, function):
        """Return ``function`` instrumented so that its calls count as stage ``name``."""

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            previous, self.stage = self.stage, name
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.sample()
                self.stages[name]["time_s"] += time.perf_counter() - start
                self.stage = previous

        return wrapper


UNITS_PER_64_CHANNELS = 40


def make_recording(minutes: float, channels: int = 64, seed: int = 42):
    """Lazy Neuropixels 1.0 ground-truth recording of ``minutes`` minutes, 40 units per 64 channels.

    Parameters
    ----------
    minutes : float
    channels : int, default: 64
    seed : int

    Returns
    -------
    BaseRecording
    """
    from spikeinterface.core.generate import generate_ground_truth_recording

    from dlsort.groundtruth import SAMPLING_FREQUENCY, make_probe

    recording, _ = generate_ground_truth_recording(
        durations=[60.0 * minutes],
        sampling_frequency=SAMPLING_FREQUENCY,
        num_units=round(UNITS_PER_64_CHANNELS * channels / 64),
        probe=make_probe("np1", channels),
        generate_sorting_kwargs=dict(firing_rates=(2.0, 10.0), refractory_period_ms=4.0),
        noise_kwargs=dict(noise_levels=5.0, strategy="tile_pregenerated"),
        generate_unit_locations_kwargs=dict(margin_um=10.0, minimum_z=5.0, maximum_z=45.0, minimum_distance=20),
        seed=seed,
    )
    return recording


def record_path(workdir: Path, minutes: float, channels: int) -> Path:
    """Where the record of one run goes (64-channel records keep their original name)."""
    prefix = "" if channels == 64 else f"{channels}ch-"
    return workdir / "memory" / f"{prefix}{minutes:g}min.json"


def run_one(minutes: float, channels: int, workdir: Path) -> dict:
    """Sort ``minutes`` of lazy recording in this process and record time and memory.

    Parameters
    ----------
    minutes : float
    channels : int
    workdir : Path

    Returns
    -------
    dict
        The record (also written to ``record_path(workdir, minutes, channels)``).
    """
    import dlsort.pipeline as pipeline
    from dlsort.params import validate_params

    record = {"minutes": minutes, "num_channels": channels, "status": "running", "job_kwargs": JOB_KWARGS,
              "dlsort_git": dlsort_source(),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    sampler = MemorySampler()
    for name in STAGES:
        if hasattr(pipeline, name):
            setattr(pipeline, name, sampler.wrap(name, getattr(pipeline, name)))
    params = validate_params({key: JOB_KWARGS[key] for key in ("n_jobs", "chunk_duration", "progress_bar")})
    path = record_path(workdir, minutes, channels)
    scratch = path.with_suffix(".scratch")
    sampler.start()
    try:
        recording = make_recording(minutes, channels)
        record["maxrss_self_before_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        result = pipeline.run_pipeline(recording, params, JOB_KWARGS, scratch_folder=scratch)
        record["wall_time_s"] = time.perf_counter() - start
        record.update(status="ok", num_peaks=int(result.num_peaks), num_units=int(result.sorting.get_num_units()),
                      num_spikes=int(result.sorting.count_total_num_spikes()),
                      preprocessing_cache=result.preprocessing_cache,
                      preprocessed_gib=recording.get_total_memory_size() / 2**30)
    except Exception as error:
        import traceback

        traceback.print_exc()
        record.update(status="failed", error=one_line(f"{type(error).__name__}: {error}"))
    finally:
        sampler.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    record.update(
        maxrss_self_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        maxrss_children_kib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        sampled_peak_total_kib=sampler.peak_total_kib,
        sampled_peak_pss_kib=sampler.peak_pss_kib,
        peak_stage=sampler.peak_stage,
        peak_processes=sampler.peak_processes,
        stages=sampler.stages,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def run_in_subprocess(minutes: float, channels: int, workdir: Path) -> dict:
    """Run ``run_one`` in a fresh interpreter and return its record."""
    path = record_path(workdir, minutes, channels)
    path.unlink(missing_ok=True)
    log_path = path.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        returncode = subprocess.run([sys.executable, __file__, "--run-one", f"{minutes:g}", "--channels", str(channels),
                                     "--workdir", str(workdir)],
                                    stdout=log, stderr=subprocess.STDOUT, env=subprocess_env()).returncode
    if path.exists():
        return json.loads(path.read_text())
    record = {"minutes": minutes, "num_channels": channels, "status": "failed",
              "error": f"subprocess exited with code {returncode}"}
    path.write_text(json.dumps(record))
    return record


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", nargs="+", type=float, default=[1.0, 5.0, 20.0])
    parser.add_argument("--channels", type=int, default=64, help="Neuropixels 1.0 channels (40 units per 64)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--run-one", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if args.run_one is not None:
        run_one(args.run_one, args.channels, workdir)
        return
    command = "python benchmarks/memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for minutes in args.minutes:
        print(f"[{time.strftime('%H:%M:%S')}] {args.channels} channels, {minutes:g} min", flush=True)
        record = run_in_subprocess(minutes, args.channels, workdir)
        print(f"    {record['status']} {record.get('wall_time_s', float('nan')):.1f} s "
              f"peak {record.get('sampled_peak_total_kib', 0) / 1024:.0f} MiB {record.get('error', '')}", flush=True)
        write_report(workdir, args.output, memory_command=command)


if __name__ == "__main__":
    main()

"""Peak detection against ground-truth spikes: recall per unit-SNR bin and precision, per threshold.

Usage (from the repository root; the cases' saved recordings come from ``run_benchmark.py``)::

    PYTHONPATH=. python benchmarks/detection.py [--cases S M] [--thresholds 4 5 6]

Each case's saved recording is preprocessed as dlsort does by default, and peaks are detected
with ``dlsort.detection.detect_peaks`` (the neural detector will be added as a method). A peak
matches a ground-truth spike within 0.4 ms and 50 um of the unit's main channel
(``dlsort.detection_scores``). Results go to ``<workdir>/detection/<case>.json`` and the "Spike
detection" section of the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import dlsort_source, write_report  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_KWARGS = {"n_jobs": 2, "chunk_duration": "1s", "progress_bar": False}


def run_case(case: str, thresholds: list[float], workdir: Path) -> dict:
    """Detect at every threshold on ``case`` and score against its ground truth."""
    from spikeinterface.core import get_noise_levels, load

    from dlsort.detection import detect_peaks
    from dlsort.detection_scores import ground_truth_main_channels, score_detection
    from dlsort.evaluation import SNR_BINS, snr_bin_labels
    from dlsort.params import DEFAULT_PARAMS
    from dlsort.preprocessing import preprocess

    folder = workdir / case
    recording, gt_sorting = load(folder / "recording"), load(folder / "gt_sorting")
    snrs = np.load(folder / "snrs.npy")
    p = DEFAULT_PARAMS
    rec = preprocess(recording, p["freq_min"], p["freq_max"], p["common_reference"], p["motion_correction"],
                     JOB_KWARGS)
    noise_levels = get_noise_levels(rec, return_in_uV=False, random_slices_kwargs=dict(seed=0), n_jobs=2,
                                    progress_bar=False)
    main_channels = ground_truth_main_channels(recording, gt_sorting)
    bins = np.digitize(snrs, SNR_BINS[1:-1])
    rows = []
    for threshold in thresholds:
        start = time.perf_counter()
        peaks = detect_peaks(rec, method="threshold", detect_threshold=threshold, peak_sign=p["peak_sign"],
                             exclude_sweep_ms=p["exclude_sweep_ms"], radius_um=p["detection_radius_um"],
                             noise_levels=noise_levels, job_kwargs=JOB_KWARGS)
        seconds = time.perf_counter() - start
        scores = score_detection(peaks, gt_sorting, main_channels, rec.get_channel_locations())
        by_snr = {label: float(np.mean(scores.recall[bins == index]))
                  for index, label in enumerate(snr_bin_labels()) if np.any(bins == index)}
        rows.append({"detector": f"threshold {threshold:g}", "recall": float(np.mean(scores.recall)),
                     "precision": scores.precision, "num_peaks": scores.num_peaks, "recall_by_snr": by_snr,
                     "seconds": seconds})
    record = {"case": case, "rows": rows, "dlsort_git": dlsort_source(),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = workdir / "detection" / f"{case}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["S", "M"])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[4.0, 5.0, 6.0])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    for case in args.cases:
        if not (args.workdir / case / "recording").exists():
            raise SystemExit(f"case {case} is not prepared: run `python benchmarks/run_benchmark.py --cases {case}`")
        record = run_case(case, args.thresholds, args.workdir)
        for row in record["rows"]:
            print(f"{case} {row['detector']}: recall {row['recall']:.3f}, precision {row['precision']:.3f}, "
                  f"{row['num_peaks']} peaks", flush=True)
    write_report(args.workdir, args.output, detection_command="python benchmarks/detection.py " + " ".join(
        ["--cases", *args.cases, "--thresholds", *[f"{t:g}" for t in args.thresholds]]))


if __name__ == "__main__":
    main()

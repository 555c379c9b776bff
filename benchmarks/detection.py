"""Peak detection against ground-truth spikes: recall per unit-SNR bin and precision, per detector.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/detection.py [--cases S M HN T20 NP2 U M20] [--thresholds 4 5 6] \
        [--probabilities 0.9 0.95] [--modes candidates dense] [--candidate-thresholds 3.5 3]
        [--models detector-generic my-model/weights.safetensors]

Cases are those of ``run_benchmark.py`` (S, M, D), the probe families and sampling rate the
shipped networks never saw (``dlsort.groundtruth.GENERALIZATION_CASES``) and the hybrid on
realistic Neuropixels noise (HN, ``dlsort.groundtruth.HYBRID_CASES``); each is generated and
saved in the work directory on first use. Each recording is preprocessed as dlsort does by
default, and peaks are detected with ``dlsort.detection.detect_peaks``: the threshold detector
at each threshold and the neural detector at each probability and mode. A peak matches a
ground-truth spike within 0.4 ms and 50 um of the unit's main channel
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
from run_benchmark import prepare_case  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_KWARGS = {"n_jobs": 2, "chunk_duration": "1s", "progress_bar": False}


def run_case(case: str, thresholds: list[float], neural: list[dict], models: list[str], workdir: Path) -> dict:
    """Detect with every configuration on ``case`` and score against its ground truth.

    ``neural`` lists the neural configurations (``probability``, ``mode``, ``candidate_threshold``), each run
    with every detection network of ``models`` (rows name the model when there are several).
    """
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
    configurations = [(f"threshold {threshold:g}", dict(method="threshold", detect_threshold=threshold))
                      for threshold in thresholds]
    for model in models:
        name = f"[{model_name(model)}] " if len(models) > 1 else ""
        for config in neural:
            probability = config["probability"]
            label = f"neural {name}p>={'card' if probability is None else f'{probability:g}'} {config['mode']}"
            if config["mode"] == "candidates":
                label += f" (from {config['candidate_threshold']:g})"
            configurations.append((label, dict(method="neural", model=model, **config)))
    rows = []
    for label, kwargs in configurations:
        start = time.perf_counter()
        peaks, _ = detect_peaks(rec, peak_sign=p["peak_sign"], exclude_sweep_ms=p["exclude_sweep_ms"],
                                radius_um=p["detection_radius_um"], noise_levels=noise_levels, job_kwargs=JOB_KWARGS,
                                **kwargs)
        seconds = time.perf_counter() - start
        scores = score_detection(peaks, gt_sorting, main_channels, rec.get_channel_locations())
        by_snr = {bin_label: float(np.mean(scores.recall[bins == index]))
                  for index, bin_label in enumerate(snr_bin_labels()) if np.any(bins == index)}
        rows.append({"detector": label, "recall": float(np.mean(scores.recall)),
                     "precision": scores.precision, "num_peaks": scores.num_peaks, "recall_by_snr": by_snr,
                     "seconds": seconds})
    record = {"case": case, "rows": rows, "sample_channels": int(rec.get_num_samples() * rec.get_num_channels()),
              "dlsort_git": dlsort_source(),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = workdir / "detection" / f"{case}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def model_name(model: str) -> str:
    """A short name for a model: its catalog id, or the folder holding its weight file."""
    path = Path(model)
    return path.parent.name if path.suffix == ".safetensors" else model


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["S", "M"])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[4.0, 5.0, 6.0])
    parser.add_argument("--probabilities", nargs="+", type=float, default=[],
                        help="neural detection probabilities besides the model card's operating point")
    parser.add_argument("--modes", nargs="+", choices=("candidates", "dense"), default=["candidates", "dense"])
    parser.add_argument("--candidate-thresholds", nargs="+", type=float, default=[3.5],
                        help="thresholds (noise levels) from which candidates are proposed, in candidates mode")
    parser.add_argument("--models", nargs="+", default=["detector-generic"],
                        help="detection networks (catalog ids or .safetensors files)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    for case in args.cases:
        prepare_case(case, args.workdir)
        # (dense mode proposes no candidates: one run, whatever the threshold)
        neural = [dict(probability=probability, mode=mode, candidate_threshold=candidate_threshold)
                  for probability in [None, *args.probabilities] for mode in args.modes
                  for candidate_threshold in args.candidate_thresholds[:1 if mode == "dense" else None]]
        record = run_case(case, args.thresholds, neural, args.models, args.workdir)
        for row in record["rows"]:
            print(f"{case} {row['detector']}: recall {row['recall']:.3f}, precision {row['precision']:.3f}, "
                  f"{row['num_peaks']} peaks", flush=True)
    write_report(args.workdir, args.output, detection_command="python benchmarks/detection.py " + " ".join(
        ["--cases", *args.cases, "--thresholds", *[f"{t:g}" for t in args.thresholds],
         *(["--probabilities", *[f"{p:g}" for p in args.probabilities]] if args.probabilities else []),
         "--modes", *args.modes,
         "--candidate-thresholds", *[f"{t:g}" for t in args.candidate_thresholds], "--models", *args.models]))


if __name__ == "__main__":
    main()

"""Features for clustering: autoencoder embedding vs temporal PCA of the same dimension, on ground-truth spikes.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/features.py [--cases S M D] [--duration SECONDS] [--model MODEL]
        [--denoising neural|none] [--scaling-case M] [--workdir benchmarks/work] [--output docs/benchmarks.md]

The peaks are the true spikes of each case (``dlsort.groundtruth``), on the main channel of their
unit's template, so that only the features and the clustering are measured. Both feature sets go
through the same preprocessing, the same denoising and the sorter's clustering stage with its
defaults (``dlsort.clustering.cluster``, scored, then the template merge, scored again); the
temporal PCA keeps as many components as the autoencoder's embedding has dimensions. Scores: the
adjusted Rand index between true units and clusters (noise, label -1, counts as one cluster) and,
per true unit, the accuracy of its best cluster (matched / (unit + cluster - matched) spikes).
``split_test`` asks whether a split step could find the clusters that hold two true units.

On ``--scaling-case`` the clustering is also timed on 16 to 384 channels' worth of that case's
spikes (``clustering_scaling``), on the whole probe and tile by tile.

``--model`` is a catalog id, ``id@version`` or weights path; without it an autoencoder is first
trained on synthetic data with the shared Neuropixels noise (``--train-*`` sizes) and written to
``<workdir>/features/model``. Results go to ``<workdir>/features/results.json`` and the section
"Features and clustering on ground-truth spikes" of ``--output`` is rewritten in place. The
clustering of each feature set is also run with both HDBSCAN implementations (``implementations``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import dlsort_source, features_section, replace_section  # noqa: E402

from dlsort.evaluation import cluster_accuracies, ground_truth_peaks  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB = {"n_jobs": 1, "progress_bar": False}


def score(labels: np.ndarray, truth: np.ndarray) -> dict:
    """Scores of cluster ``labels`` against ``truth``."""
    from sklearn.metrics import adjusted_rand_score

    accuracy = cluster_accuracies(truth, labels)
    return {"ari": float(adjusted_rand_score(truth, labels)), "clusters": int(labels.max() + 1),
            "noise_fraction": float(np.mean(labels < 0)), "mean_unit_accuracy": float(accuracy.mean()),
            "units_accuracy_ge_0.8": int(np.sum(accuracy >= 0.8))}


def clustering_stage(features, peaks: np.ndarray, recording, truth: np.ndarray) -> dict:
    """The sorter's clustering stage with its defaults: HDBSCAN (scored), then the template merge (scored)."""
    from dlsort.clustering import cluster
    from dlsort.params import DEFAULT_PARAMS
    from dlsort.templates import RefractoryCheck, merge_similar, templates_from_features

    start = time.perf_counter()
    labels = cluster(features, peaks, min_cluster_size=DEFAULT_PARAMS["min_cluster_size"],
                     min_samples=DEFAULT_PARAMS["min_samples"], location_scale_um=DEFAULT_PARAMS["location_scale_um"],
                     region_um=DEFAULT_PARAMS["clustering_region_um"],
                     split_components=DEFAULT_PARAMS["split_components"],
                     footprint_components=DEFAULT_PARAMS["footprint_components"])
    seconds = time.perf_counter() - start
    refractory = RefractoryCheck.of_peaks(peaks, recording, DEFAULT_PARAMS["merge_refractory_ms"])
    merged = merge_similar(templates_from_features(features, peaks, labels, recording), labels,
                           similarity_threshold=DEFAULT_PARAMS["merge_similarity"], refractory=refractory)
    return {"clustering_seconds": round(seconds, 2), "hdbscan": score(labels, truth),
            "merged": score(merged, truth), "split_test": split_test(features, labels, truth),
            "implementations": implementations(features, peaks, truth)}


def implementations(features, peaks: np.ndarray, truth: np.ndarray) -> dict:
    """HDBSCAN from the hdbscan package against scikit-learn's, on the same points: ARI and seconds.

    The stage's own settings, whole probe at once (no tiles), so that only the implementation differs.
    """
    from dlsort.clustering import CLUSTERING_METHODS, cluster
    from dlsort.params import DEFAULT_PARAMS

    rows = {}
    for method in CLUSTERING_METHODS:
        start = time.perf_counter()
        labels = cluster(features, peaks, method=method, min_cluster_size=DEFAULT_PARAMS["min_cluster_size"],
                         min_samples=DEFAULT_PARAMS["min_samples"],
                         location_scale_um=DEFAULT_PARAMS["location_scale_um"])
        rows[method] = {"seconds": round(time.perf_counter() - start, 2), **score(labels, truth)}
    return rows


def split_test(features, labels: np.ndarray, truth: np.ndarray) -> dict:
    """Could a split step find the clusters that hold two units? ``discriminant_bimodality`` of each cluster.

    A split step (``split_bimodality``) works if the clusters holding two true units (the smaller
    one >= 10 % of the cluster) score above the pure ones.
    """
    from dlsort.clustering import discriminant_bimodality

    points = features.waveform_features()
    rows = []
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        score, halves = discriminant_bimodality(points[members])
        if min(np.sum(halves == 0), np.sum(halves == 1)) < 3:
            continue
        units = np.sort(np.bincount(truth[members]))[::-1]
        mixed = len(units) > 1 and units[1] >= 0.1 * units[0]
        rows.append((mixed, score))
    pure = [value for mixed, value in rows if not mixed]
    return {"mixed_clusters": [round(value, 3) for mixed, value in rows if mixed],
            "pure_clusters": len(pure), "pure_median": float(np.median(pure)) if pure else None,
            "pure_above_0.5": int(np.sum(np.array(pure) > 0.5))}


def tiled(features, peaks: np.ndarray, truth: np.ndarray, copies: int, span_um: float):
    """``copies`` of the features laid end to end along the probe, ``span_um`` apart, as distinct units."""
    from dlsort.features import PeakFeatures

    shift = np.repeat(np.arange(copies), len(peaks))
    locations = np.tile(features.locations, (copies, 1))
    locations[:, 1] += shift * span_um
    learned = None if features.spike_embedding is None else np.tile(features.spike_embedding, (copies, 1))
    copied = PeakFeatures(np.tile(features.embedding, (copies, 1, 1)), locations, features.neighbourhoods,
                          spike_embedding=learned)
    return copied, np.tile(peaks, copies), np.tile(truth, copies) + shift * (truth.max() + 1)


def clustering_scaling(features, peaks: np.ndarray, truth: np.ndarray, span_um: float,
                       num_channels: int) -> list[dict]:
    """Clustering time and ARI on 16 to 384 channels' worth of spikes, whole probe and tile by tile.

    The 16-channel set is the spikes located on the lowest quarter of the probe; larger ones lay
    copies of the case end to end (each copy's units distinct), so the spikes per channel stay
    the case's own.
    """
    from dlsort.clustering import cluster
    from dlsort.params import DEFAULT_PARAMS

    quarter = np.flatnonzero(features.locations[:, 1] - features.locations[:, 1].min() < span_um / 4)
    sets = {num_channels // 4: (features.subset(quarter), peaks[quarter], truth[quarter])}
    for copies in (1, 2, 6):
        sets[num_channels * copies] = tiled(features, peaks, truth, copies, span_um)
    rows = []
    for channels, (subset, subset_peaks, subset_truth) in sets.items():
        row = {"channels": channels, "spikes": int(len(subset_peaks))}
        for name, region in (("whole", 0.0), ("regions", DEFAULT_PARAMS["clustering_region_um"])):
            start = time.perf_counter()
            labels = cluster(subset, subset_peaks, region_um=region)
            row[name] = {"region_um": region, "seconds": round(time.perf_counter() - start, 2),
                         **score(labels, subset_truth)}
        rows.append(row)
    return rows


def run_case(case, model: Path, denoising: str, duration: float | None, scaling: bool = False) -> dict:
    """Scores of both feature methods on one case."""
    from spikeinterface.core import get_noise_levels

    from dlsort.denoising import make_denoiser
    from dlsort.features import extract_features
    from dlsort.groundtruth import generate_case
    from dlsort.params import DEFAULT_PARAMS
    from dlsort.preprocessing import preprocess
    from dlsort.spike_encoder import make_spike_encoder
    from dlsort.waveforms import build_neighbourhoods

    if duration is not None:
        case = dataclasses.replace(case, duration_s=duration)
    raw, sorting = generate_case(case)
    recording = preprocess(raw, DEFAULT_PARAMS["freq_min"], DEFAULT_PARAMS["freq_max"],
                           DEFAULT_PARAMS["common_reference"])
    window = dict(ms_before=DEFAULT_PARAMS["ms_before"], ms_after=DEFAULT_PARAMS["ms_after"])
    peaks, truth = ground_truth_peaks(recording, sorting, **window)
    noise_levels = get_noise_levels(recording, return_in_uV=False, random_slices_kwargs=dict(seed=0), **JOB)
    neighbourhoods = build_neighbourhoods(recording.get_channel_locations(), DEFAULT_PARAMS["neighbourhood_radius_um"])
    denoiser = make_denoiser(denoising, recording.sampling_frequency, noise_levels=noise_levels, **window)
    encoder = make_spike_encoder(model, recording.sampling_frequency, recording.get_channel_locations(),
                                 neighbourhoods, noise_levels=noise_levels, **window)
    common = dict(neighbourhoods=neighbourhoods, n_components=encoder.embedding_dim, denoiser=denoiser, seed=0,
                  job_kwargs=JOB, **window)
    import hdbscan  # noqa: F401  (imported before the first clustering is timed)
    import sklearn.cluster  # noqa: F401

    rows = {}
    for method, extra in (("tpca", {}), ("autoencoder", {"encoder": encoder})):
        start = time.perf_counter()
        features = extract_features(recording, peaks, method=method, **common, **extra)
        rows[method] = {"features_seconds": round(time.perf_counter() - start, 2),
                        **clustering_stage(features, peaks, recording, truth)}
        if scaling:
            depths = np.unique(recording.get_channel_locations()[:, 1])
            span = float(np.ptp(depths) + np.median(np.diff(depths)))  # the probe's length, one row pitch past the end
            rows[method]["scaling"] = clustering_scaling(features, peaks, truth, span, recording.get_num_channels())
    return {"case": case.name, "description": case.description, "duration_s": case.duration_s,
            "num_spikes": int(len(peaks)), "num_units": int(truth.max() + 1), "dimension": encoder.embedding_dim,
            **rows}


def trained_model(folder: Path, scenes: int, examples: int, epochs: int) -> Path:
    """Train an autoencoder on synthetic data with the shared Neuropixels noise; its weights path."""
    from dlsort.training.autoencoder import autoencoder_card, train_autoencoder
    from dlsort.training.noise import SpatialNoise, TemporalNoise
    from dlsort.training.trainer import write_model

    temporal, spatial = TemporalNoise.from_shared_data(), SpatialNoise.from_shared_data()
    network, report = train_autoencoder(temporal, spatial, num_scenes=scenes, num_examples=examples,
                                        max_epochs=epochs)
    card = autoencoder_card(network, "autoencoder-benchmark", "0.1.0", f"synthetic spikes in {temporal.source}",
                            75.0, 1.0, 1.5, report)
    return write_model(folder, network, card)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    from dlsort.groundtruth import BENCHMARK_CASES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["S", "M", "D"], choices=sorted(BENCHMARK_CASES))
    parser.add_argument("--duration", type=float, help="seconds of each case (default: the case's own)")
    parser.add_argument("--model", help="autoencoder: catalog id, id@version or weights path (default: train one)")
    parser.add_argument("--denoising", choices=("neural", "none"), default="neural",
                        help="waveform denoising before both feature methods (default: the sorter's, neural)")
    parser.add_argument("--scaling-case", default="M", choices=sorted(BENCHMARK_CASES),
                        help="case whose spikes time the clustering from 16 to 384 channels (default: M)")
    parser.add_argument("--train-scenes", type=int, default=100)
    parser.add_argument("--train-examples", type=int, default=60_000)
    parser.add_argument("--train-epochs", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md",
                        help="report whose features section is rewritten in place")
    args = parser.parse_args(argv)
    folder = args.workdir / "features"
    model = args.model or trained_model(folder / "model", args.train_scenes, args.train_examples, args.train_epochs)
    command = "PYTHONPATH=. python benchmarks/features.py " + " ".join(sys.argv[1:] if argv is None else argv)
    record = {"command": command, "model": str(model), "denoising": args.denoising, "dlsort_git": dlsort_source(),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "cases": [run_case(BENCHMARK_CASES[name], model, args.denoising, args.duration,
                                 scaling=name == args.scaling_case) for name in args.cases]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(record, indent=1))
    replace_section(args.output, features_section(record))
    for row in record["cases"]:
        print(f"{row['case']} ({row['num_spikes']} spikes, {row['num_units']} units, dimension {row['dimension']}): "
              + "; ".join(f"{method} ARI {row[method]['hdbscan']['ari']:.3f} (merged "
                          f"{row[method]['merged']['ari']:.3f}), {row[method]['merged']['units_accuracy_ge_0.8']} "
                          f"units >= 0.8 after the merge"
                          for method in ("tpca", "autoencoder")))


if __name__ == "__main__":
    main()

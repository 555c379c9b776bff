"""Waveform denoising: error to the clean spike for raw, temporal-PCA and network outputs, and throughput.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/denoising.py [--model denoiser-generic] [--workdir benchmarks/work]
        [--output docs/benchmarks.md]

Held-out examples: 20 000 synthetic spikes from 200 units of a seed the shipped network was not
trained on (``dlsort.training.synthesis``), in noise with the temporal covariance of a real
Neuropixels 1.0 recording (``../shared/data``, or ``DLSORT_SHARED_DATA``). Temporal PCA keeps 5
components fitted on the same noisy waveforms (as the sorter fits it on a recording's spikes).
Throughput: waveforms per second through the network on CPU with 1 and 2 torch threads.

Against a neighbourhood denoiser (``--neighbourhood-model``, the reconstruction of a neighbourhood
autoencoder, ``denoising_method="neighbourhood"``): 20 000 held-out neighbourhood snippets of
synthetic probe patches (``dlsort.training.autoencoder``: scenes of a seed no shipped network was
trained on, noise with the real temporal and spatial Neuropixels statistics, the patches' own
spikes colliding), every channel of every snippet scored as one waveform, binned by the SNR of
that channel's clean waveform; the same table for the centre channels alone.
Results go to ``<workdir>/denoising/results.json`` and the "Waveform denoising" section of the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import dlsort_source, write_report  # noqa: E402

from dlsort.denoising import DEFAULT_DENOISERS  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def throughput(network, waveforms, threads: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` waveforms per second through ``network`` with ``threads`` torch threads."""
    import torch

    from dlsort.training.denoiser import denoise_array

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            denoise_array(network, waveforms)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return len(waveforms) / best


def neighbourhood_comparison(single_channel, model: str, noise, num: int = 20_000) -> dict:
    """Errors of raw, temporal PCA, the single-channel network and a neighbourhood network on neighbourhood snippets.

    Returns
    -------
    dict
        ``model`` (provenance), ``rows`` (every channel) and ``rows_centre`` (centre channels), as
        ``dlsort.training.denoiser.error_table`` with outputs ``raw``, ``pca``, ``network`` and
        ``neighbourhood``, and ``snippets_per_second`` of the neighbourhood network on 2 threads.
    """
    import numpy as np
    import torch

    from dlsort.models import load
    from dlsort.nn import build_network
    from dlsort.spike_encoder import autoencoder_radius
    from dlsort.training.autoencoder import autoencoder_examples, training_scenes
    from dlsort.training.denoiser import denoise_array, error_table, pca_denoise
    from dlsort.training.noise import SpatialNoise

    tensors, card, model_file = load(model, task="autoencoder")
    network = build_network(card["architecture"], tensors).eval()
    scenes = training_scenes(noise, SpatialNoise.from_shared_data(), 60, seed=31339)
    examples = autoencoder_examples(scenes, num, autoencoder_radius(card, model_file.id), seed=31340)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            reconstructed = np.concatenate([network(*(torch.as_tensor(array[part:part + 4096])
                                                      for array in examples.inputs)).numpy()
                                            for part in range(0, num, 4096)])
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    valid = examples.mask > 0
    noisy, clean = examples.snippets[valid], examples.clean[valid]
    outputs = {"raw": noisy, "pca": pca_denoise(noisy, noisy), "network": denoise_array(single_channel, noisy),
               "neighbourhood": reconstructed[valid]}
    depth = -clean.min(axis=1)
    centre = np.zeros_like(valid)
    centre[:, 0] = True
    centre = centre[valid]
    return {"model": model_file.provenance(), "rows": error_table(outputs, clean, depth),
            "rows_centre": error_table({name: out[centre] for name, out in outputs.items()}, clean[centre],
                                       depth[centre]),
            "snippets_per_second": num / seconds}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    from dlsort.denoising import make_denoiser
    from dlsort.training.denoiser import evaluate_denoiser
    from dlsort.training.noise import TemporalNoise
    from dlsort.training.synthesis import denoising_examples, waveform_library

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="denoiser-generic")
    parser.add_argument("--neighbourhood-model", default=DEFAULT_DENOISERS["neighbourhood"][0])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    denoiser = make_denoiser("neural", 30_000.0, 1.0, 1.5, noise_levels=[1.0], model=args.model)
    noise = TemporalNoise.from_shared_data()
    examples = denoising_examples(waveform_library(200, 1.0, 1.5, seed=31337), noise, 20_000, seed=31338)
    record = {
        "model": denoiser.models[0],
        "noise": noise.source,
        "dlsort_git": dlsort_source(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": evaluate_denoiser(denoiser.network, examples, examples.noisy),
        "waveforms_per_second": {str(threads): throughput(denoiser.network, examples.noisy, threads)
                                 for threads in (1, 2)},
        "num_samples": int(examples.noisy.shape[1]),
        "neighbourhood": neighbourhood_comparison(denoiser.network, args.neighbourhood_model, noise),
    }
    path = args.workdir / "denoising" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    command = "python benchmarks/denoising.py" + (f" --model {args.model}" if args.model != "denoiser-generic" else "")
    if args.neighbourhood_model != DEFAULT_DENOISERS["neighbourhood"][0]:
        command += f" --neighbourhood-model {args.neighbourhood_model}"
    write_report(args.workdir, args.output, denoising_command=command)
    overall = record["rows"][-1]
    print(f"MSE network {overall['mse_network']:.3f}, raw {overall['mse_raw']:.3f}, PCA {overall['mse_pca']:.3f}; "
          f"{record['waveforms_per_second']['2']:.0f} waveforms/s on 2 threads")


if __name__ == "__main__":
    main()

"""DeepInterpolation's denoising on hybrid recordings, beside linear filters: dB gained, amplitude kept, waveform shape.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/deepinterpolation_quality.py [--seconds 60] [--models ID_OR_FILE ...]
        [--no-self-training] [--results NAME] [--workdir benchmarks/work] [--output docs/benchmarks.md]

Hybrid recordings (``dlsort.training.hybrid``: SpikeInterface's ground-truth spikes, noise-free, added
to noise) whose clean part is known:

- ``NP 5 uV``: 64 channels of Neuropixels 1.0, 40 units, synthetic noise with the temporal and
  spatial correlation of real Neuropixels 1.0 noise (``../shared/data``), 5 uV rms;
- ``NP 10 uV``: the same spikes with the noise doubled (low SNR);
- ``NP2 5 uV``: 64 channels of a Neuropixels 2.0 layout (2 columns), same noise;
- ``real snippet``: the real 10-channel Neuropixels 1.0 snippet of ``../shared/data`` (0.33 s),
  tiled end to end ``SNIPPET_REPEATS`` times so that enough spikes are scored, with spikes added,
  scaled so that their SNR matches the 5-uV case.

Each method filters the whole recording; the scores use the second half (DeepInterpolation is
trained, self-supervised, on the first half of the same recording, as a user would run
``dlsort train deepinterpolation`` on theirs; on the snippet, whose halves share their noise, the
model of ``NP 5 uV`` is applied instead), unless ``--no-self-training``; every model of ``--models`` (the
shipped ones, for example; a model file is named by its card's id@version) is applied to every case as
well. Results go to ``<workdir>/deepinterpolation/<NAME>.json`` (``--results``, default ``results``); the report merges
every such file case by case, so a later run can add models to an earlier one's table. Scores: noise
reduction = 10 log10 of the mean squared error to the clean signal before over after; amplitude kept
= the filtered value at each clean spike's peak (main channel) over the clean peak, summed over
spikes; waveform correlation = Pearson correlation of the filtered and clean main-channel waveform
(-1 to +2 ms), averaged over spikes. Amplitude and correlation use spikes whose clean peak exceeds 3
noise standard deviations.
Linear filters: Gaussian low-pass with -3 dB cut-off at 2 to 6 kHz, and a Wiener filter whose
noise spectrum is fitted on the recording's own spike-free stretches. Each DeepInterpolation output
is also scored after a 6-kHz Gaussian low-pass (``AFTER_DEEPINTERPOLATION_HZ``; SpikeInterface's
``gaussian_filter(freq_min=None, freq_max=6000 / sqrt(ln 2))``, about 7.2 kHz, is the same filter):
the network predicts each frame's expected value given the frames around it, and noise correlated
across the blind spot (Neuropixels noise: 0.31 at 2 frames, 0.21 at 3) is part of that expectation,
so the network reproduces it along with the signal; part of it lies above the spike band.
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
FS = 30_000.0
GAUSSIAN_CUTOFFS_HZ = (2000, 3000, 4000, 5000, 6000)
AFTER_DEEPINTERPOLATION_HZ = 6000  # the top of the spike band the sorter keeps (see the module docstring)
SPIKE_WINDOW = (-30, 60)  # samples around the clean peak: -1 to +2 ms
SNIPPET_REPEATS = 10  # 0.33 s of real noise alone held 8 scorable spikes; tiled, about ten times as many


def gaussian_lowpass(traces: np.ndarray, cutoff_hz: float, fs: float = FS) -> np.ndarray:
    """Gaussian low-pass along time; ``cutoff_hz`` is where the gain falls to 1/sqrt(2) (-3 dB)."""
    from scipy.ndimage import gaussian_filter1d

    sigma_samples = np.sqrt(np.log(2)) / (2 * np.pi * cutoff_hz) * fs
    return gaussian_filter1d(traces, sigma_samples, axis=0, mode="nearest")


def wiener_filter(traces: np.ndarray, lags: int = 60) -> np.ndarray:
    """Zero-phase Wiener filter per channel, its noise spectrum fitted on the recording's spike-free windows.

    Gain ``max(0, 1 - noise / total)`` at each frequency, from autocovariances up to ``lags``
    samples (Bartlett-tapered) of the channel (total) and of its spike-free windows (noise, the
    temporal noise model of ``dlsort.training.noise``), both in units of the channel's noise level.
    """
    from dlsort.training.noise import TemporalNoise

    levels = np.median(np.abs(traces - np.median(traces, axis=0)), axis=0) / 0.6744897501960817
    standardized = traces / levels
    noise_model = TemporalNoise.from_traces([standardized], length=2 * lags + 1)
    covariance = noise_model.sqrtcov @ noise_model.sqrtcov.T
    noise_autocov = np.array([np.mean(np.diagonal(covariance, k)) for k in range(lags + 1)])
    taper = 1 - np.arange(lags + 1) / (lags + 1)
    num_samples = traces.shape[0]
    frequencies = np.fft.rfftfreq(num_samples)

    def spectrum(autocov: np.ndarray) -> np.ndarray:
        tapered = autocov * taper
        return tapered[0] + 2 * np.cos(2 * np.pi * np.outer(frequencies, np.arange(1, lags + 1))) @ tapered[1:]

    noise_spectrum = spectrum(noise_autocov)
    filtered = np.empty_like(traces)
    for channel in range(traces.shape[1]):
        x = standardized[:, channel] - standardized[:, channel].mean()
        autocov = np.array([x[: num_samples - k] @ x[k:] / num_samples for k in range(lags + 1)])
        gain = np.clip(1 - noise_spectrum / np.maximum(spectrum(autocov), 1e-12), 0.0, 1.0)
        filtered[:, channel] = np.fft.irfft(np.fft.rfft(x) * gain, n=num_samples) * levels[channel]
    return filtered + traces.mean(axis=0)


def spike_peaks(clean: np.ndarray, spike_frames: np.ndarray, noise_levels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Main channel and peak frame of every spike whose clean peak exceeds 3 noise levels, away from the edges."""
    before, after = SPIKE_WINDOW
    frames, channels = [], []
    for frame in spike_frames:
        if frame + 2 * before < 0 or frame + 2 * after > len(clean):
            continue
        window = np.abs(clean[frame + before: frame + after])
        peak, channel = np.unravel_index(np.argmax(window), window.shape)
        if window[peak, channel] > 3 * noise_levels[channel]:
            frames.append(frame + before + peak)
            channels.append(channel)
    return np.asarray(frames, dtype=int), np.asarray(channels, dtype=int)


def scores(filtered: np.ndarray, noisy: np.ndarray, clean: np.ndarray, frames: np.ndarray,
           channels: np.ndarray) -> dict:
    """Noise reduction (dB), amplitude kept and mean waveform correlation of ``filtered`` (see the module)."""
    before, after = SPIKE_WINDOW
    gain_db = 10 * np.log10(np.mean((noisy - clean) ** 2) / np.mean((filtered - clean) ** 2))
    peaks = clean[frames, channels]
    kept = float(np.sum(filtered[frames, channels] * np.sign(peaks)) / np.sum(np.abs(peaks)))
    offsets = np.arange(before, after)
    rows = frames[:, None] + offsets[None]
    correlation = [np.corrcoef(filtered[row, channel], clean[row, channel])[0, 1] for row, channel in
                   zip(rows, channels)]
    return {"noise_reduction_db": float(gain_db), "amplitude_kept": kept,
            "waveform_correlation": float(np.mean(correlation)), "spikes": int(len(frames))}


def model_label(model: str) -> str:
    """How a ``--models`` entry is named in the tables: a catalog id as given, a model file by its card's id@version."""
    card = Path(model).parent / "card.json"
    if Path(model).is_file() and card.is_file():
        card = json.loads(card.read_text())
        return f"{card['id']}@{card['version']}"
    return model


def deepinterpolated(recording, training_part, model_path: Path | None, folder: Path) -> tuple[np.ndarray, dict]:
    """``recording`` through DeepInterpolation, trained on ``training_part`` unless ``model_path`` is given."""
    from dlsort.preprocessing.deepinterpolation import deepinterpolate
    from dlsort.training.deepinterpolation import interpolator_card, train_interpolator
    from dlsort.training.trainer import write_model

    info = {}
    if model_path is None:
        window = 256 if training_part.get_num_samples() >= 20 * 256 else 128
        network, report = train_interpolator(training_part, window=window, progress_bar=False)
        card = interpolator_card(network, training_part, "di-benchmark", "0.0.0", "the benchmark recording", report)
        model_path = write_model(folder, network, card)
        info = {"training_seconds": round(report.seconds, 1), "epochs": report.epochs,
                "best_validation_loss": report.best_validation_loss}
    started = time.perf_counter()
    # every model runs on every case, the layouts it never saw included (the NP2 case measures that transfer)
    traces = deepinterpolate(recording, model_path, allow_other_probes=True).get_traces()
    info["inference_seconds"] = round(time.perf_counter() - started, 1)
    return traces, {**info, "model": str(model_path)}


def evaluate_case(name: str, hybrid, folder: Path, models: dict[str, Path | str], self_training: bool
                  ) -> tuple[dict, Path | None]:
    """Every method on one hybrid recording; returns its record and the self-trained model.

    ``models`` maps a label ("model of NP 5 uV", a catalog id) to a model applied unchanged.
    """
    recording, clean = hybrid.recording, hybrid.clean
    noisy = recording.get_traces()
    half = noisy.shape[0] // 2
    scored = slice(half, noisy.shape[0])
    noise_levels = np.median(np.abs(noisy - clean), axis=0) / 0.6744897501960817
    spike_frames = np.concatenate([hybrid.sorting.get_unit_spike_train(unit) for unit in hybrid.sorting.unit_ids])
    frames, channels = spike_peaks(clean[scored], np.sort(spike_frames[spike_frames >= half]) - half, noise_levels)

    def score(filtered: np.ndarray) -> dict:
        return scores(filtered[scored], noisy[scored], clean[scored], frames, channels)

    methods = {f"Gaussian {cutoff / 1000:g} kHz": score(gaussian_lowpass(noisy, cutoff))
               for cutoff in GAUSSIAN_CUTOFFS_HZ}
    methods["Wiener (fitted on the recording)"] = score(wiener_filter(noisy))
    runs = {}
    own_model = None

    def score_deepinterpolation(label: str, traces: np.ndarray) -> None:
        methods[f"DeepInterpolation, {label}"] = score(traces)
        methods[f"DeepInterpolation, {label}, then Gaussian {AFTER_DEEPINTERPOLATION_HZ / 1000:g} kHz"] = score(
            gaussian_lowpass(traces, AFTER_DEEPINTERPOLATION_HZ))

    if self_training and half >= 20 * 256:  # enough frames to train on the first half
        traces, runs["self"] = deepinterpolated(recording, recording.frame_slice(0, half), None, folder / "self")
        score_deepinterpolation("trained on the first half", traces)
        own_model = Path(runs["self"]["model"])
    for label, model in models.items():
        traces, runs[label] = deepinterpolated(recording, None, model, folder)
        score_deepinterpolation(label, traces)
    linear = [m for m in methods if not m.startswith("DeepInterpolation")]
    best_linear = max(linear, key=lambda m: methods[m]["noise_reduction_db"])
    record = {"case": name, "noise": hybrid.noise_source, "channels": int(noisy.shape[1]),
              "seconds": round(noisy.shape[0] / FS, 2), "methods": methods, "best_linear": best_linear,
              "deepinterpolation_runs": runs}
    return record, own_model


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    import torch

    from dlsort.groundtruth import make_probe
    from dlsort.training.hybrid import hybrid_recording, neuropixels_noise, neuropixels_snippet

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the synthetic-noise hybrids")
    parser.add_argument("--models", nargs="*", default=[], help="models applied unchanged to every case")
    parser.add_argument("--no-self-training", dest="self_training", action="store_false",
                        help="skip training a model on each case's first half")
    parser.add_argument("--results", default="results", help="name of the results file in the work directory")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    folder = args.workdir / "deepinterpolation"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    probe = make_probe("np1", 64)
    quiet = hybrid_recording(probe, 40, args.seconds, 5.0, seed=7)
    models = {model_label(model): model for model in args.models}
    record, base_model = evaluate_case("NP 5 uV", quiet, folder / "np5", models, args.self_training)
    records = [record]
    if base_model is not None:
        models["model of NP 5 uV"] = base_model
    noise = neuropixels_noise(np.random.default_rng(8), quiet.clean.shape[0], probe.contact_positions, 10.0)
    loud = hybrid_recording(probe, 40, args.seconds, noise, seed=7, noise_source="NP noise 10 uV rms")
    records.append(evaluate_case("NP 10 uV", loud, folder / "np10", models, args.self_training)[0])
    two_columns = hybrid_recording(make_probe("np2", 64), 40, args.seconds, 5.0, seed=10)
    records.append(evaluate_case("NP2 5 uV", two_columns, folder / "np2", models, args.self_training)[0])
    snippet, locations = neuropixels_snippet()
    from probeinterface import Probe

    snippet_probe = Probe(ndim=2, si_units="um")
    snippet_probe.set_contacts(positions=locations, shapes="square", shape_params={"width": 12})
    snippet_probe.set_device_channel_indices(np.arange(len(locations)))
    level = float(np.median(np.abs(snippet), axis=0).mean() / 0.6744897501960817)
    tiled = np.tile(snippet, (SNIPPET_REPEATS, 1))
    real = hybrid_recording(snippet_probe, 6, tiled.shape[0] / FS, tiled, seed=9, spike_scale=level / 5.0,
                            noise_source=f"the real Neuropixels snippet ({level:.1f} uV noise level, "
                                         f"{snippet.shape[0] / FS:.2f} s tiled {SNIPPET_REPEATS} times)")
    records.append(evaluate_case("real snippet", real, folder / "snippet", models, self_training=False)[0])
    result = {"dlsort_git": dlsort_source(), "started_utc": started, "cases": records}
    (folder / f"{args.results}.json").write_text(json.dumps(result, indent=1))
    command = " ".join(["python benchmarks/deepinterpolation_quality.py"]
                       + ([f"--seconds {args.seconds:g}"] if args.seconds != 60.0 else [])
                       + ([f"--models {' '.join(args.models)}"] if args.models else [])
                       + ([] if args.self_training else ["--no-self-training"])
                       + ([f"--results {args.results}"] if args.results != "results" else []))
    write_report(args.workdir, args.output, deepinterpolation_command=command)
    for record in records:
        for method, values in record["methods"].items():
            print(f"{record['case']:>13} | {method:<46} | {values['noise_reduction_db']:5.2f} dB | "
                  f"amplitude {values['amplitude_kept']:.2f} | correlation {values['waveform_correlation']:.3f}")


if __name__ == "__main__":
    main()

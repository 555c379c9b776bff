"""Markdown report of the benchmark results stored in a work directory (``docs/benchmarks.md``).

Both ``run_benchmark.py`` and ``memory.py`` call ``write_report`` after every run, so the report
always shows whatever has finished. It reads:

- ``<workdir>/<case>/prepared.json`` and ``<workdir>/<case>/results/<sorter>.json``;
- ``<workdir>/memory/<minutes>min.json``;
- ``<workdir>/commands.json`` (the commands that produced them).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np

CASE_ORDER = ["S", "M", "D", "L", "H"]
SORTER_ORDER = ["dlsort", "spykingcircus2", "tridesclous2", "lupin", "mountainsort5", "kilosort4"]
REFERENCE_SORTER = "spykingcircus2"
NOTES_MARKER = "<!-- Hand-written notes below this line are kept when the tables are regenerated. -->"


def one_line(text: str, limit: int = 300) -> str:
    """Collapse ``text`` to one table-safe line of at most ``limit`` characters."""
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_json_files(paths) -> list[dict]:
    """Parse every JSON file of ``paths`` (unreadable ones are skipped)."""
    records = []
    for path in sorted(paths):
        try:
            records.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            continue
    return records


def package_version(name: str) -> str:
    """Installed version of a distribution, or "not installed"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit(repo: Path) -> str:
    """Short commit of the checkout plus "+changes" when the work tree differs from it."""
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "dlsort"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + (" + uncommitted changes in dlsort/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dlsort_source() -> str:
    """Which dlsort is imported: the ``SNAPSHOT`` label beside a copied package, else its checkout's commit."""
    import dlsort

    root = Path(dlsort.__file__).resolve().parents[1]
    label = root / "SNAPSHOT"
    return label.read_text().strip() if label.exists() else git_commit(root)


def record_commands(workdir: Path, **commands: str | None) -> dict:
    """Add ``commands`` (e.g. ``benchmark="python ..."``) to ``<workdir>/commands.json`` and return all.

    Returns
    -------
    dict
        Key -> list of the distinct commands run, oldest first.
    """
    path = workdir / "commands.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored = {key: [value] if isinstance(value, str) else value for key, value in stored.items()}
    for key, value in commands.items():
        if value and value not in stored.setdefault(key, []):
            stored[key].append(value)
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=1))
    return stored


def fmt(value, digits: int = 2) -> str:
    """Format a number for a table cell ("—" for missing)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def case_table(records: list[dict]) -> list[str]:
    """Markdown table lines for the results of one case."""
    from dlsort.evaluation import snr_bin_labels

    bins = snr_bin_labels()
    header = ["sorter", "wall time (s)", "real-time factor", f"time / {REFERENCE_SORTER}", "units found",
              "well detected", "accuracy", "precision", "recall", "false-positive units"]
    header += [f"SNR {label}" for label in bins] + ["status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    reference = next((r for r in records if r["sorter"] == REFERENCE_SORTER and r["status"] == "ok"), None)
    order = {name: i for i, name in enumerate(SORTER_ORDER)}
    for record in sorted(records, key=lambda r: (order.get(r["sorter"].split(":")[0], len(order)), r["sorter"])):
        ok = record["status"] == "ok"
        wall = record.get("wall_time_s")
        evaluation = record.get("evaluation") or {}
        cells = [f"{record['sorter']} {record.get('sorter_version', '')}".strip(),
                 fmt(wall, 1), fmt(wall / record["duration_s"] if ok else None),
                 fmt(wall / reference["wall_time_s"] if ok and reference else None)]
        if ok:
            total = evaluation["num_gt_units"]
            cells += [fmt(evaluation["num_units"]), f"{evaluation['well_detected']}/{total}",
                      fmt(evaluation["accuracy"]), fmt(evaluation["precision"]), fmt(evaluation["recall"]),
                      fmt(evaluation["false_positive_units"])]
            by_snr = evaluation.get("well_detected_by_snr", {})
            cells += [f"{by_snr[b][0]}/{by_snr[b][1]}" if b in by_snr else "—" for b in bins]
            cells.append("ok")
        else:
            cells += ["—"] * (6 + len(bins))
            cells.append(f"**{record['status']}**: {one_line(record.get('error', ''))}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def default_runs(case_records: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """Finished runs with default parameters: case -> sorter name -> record (spec rows like ``dlsort:x=1`` left out)."""
    return {case: {r["sorter"]: r for r in records if ":" not in r["sorter"] and r["status"] == "ok"}
            for case, records in case_records.items()}


def ordered_sorters(names) -> list[str]:
    """Sorter names in ``SORTER_ORDER`` (unknown names last, alphabetically)."""
    order = {name: i for i, name in enumerate(SORTER_ORDER)}
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def scoreboard_section(case_records: dict[str, list[dict]], figures: Path | None = None) -> list[str]:
    """Every sorter with default parameters on every case: well-detected units, mean accuracy, time ratio.

    Below the table, dlsort against the best peer on each case (issue 8's accuracy target), and the
    accuracy-vs-SNR and speed figures when ``figures`` (a folder) is given.
    """
    runs = default_runs(case_records)
    cases = [case for case in CASE_ORDER if runs.get(case)]
    lines = ["## All cases with default parameters", ""]
    if not cases:
        return lines + ["Not run yet.", ""]
    sorters = ordered_sorters({name for case in cases for name in runs[case]})
    lines += [
        "Well-detected units (mean accuracy) per case, their sum over the cases every sorter finished, and wall "
        f"time / {REFERENCE_SORTER}'s on the same case (`—`: not run or did not finish).",
        "",
        "| sorter | " + " | ".join(cases) + " | well detected, sum | " + " | ".join(f"time {c}" for c in cases) + " |",
        "|" + "---|" * (2 + 2 * len(cases)),
    ]
    for sorter in sorters:
        cells, total = [], 0
        for case in cases:
            evaluation = runs[case][sorter]["evaluation"] if sorter in runs[case] else None
            cells.append(f"{evaluation['well_detected']}/{evaluation['num_gt_units']} ({evaluation['accuracy']:.3f})"
                         if evaluation else "—")
            total += evaluation["well_detected"] if evaluation else 0
        complete = all(sorter in runs[case] for case in cases)
        ratios = [fmt(runs[c][sorter]["wall_time_s"] / runs[c][REFERENCE_SORTER]["wall_time_s"])
                  if sorter in runs[c] and REFERENCE_SORTER in runs[c] else "—" for c in cases]
        lines.append(f"| {sorter} | " + " | ".join(cells) + f" | {total if complete else '—'} | "
                     + " | ".join(ratios) + " |")
    lines += [""] + target_lines(runs, cases) + [""]
    if figures is not None:
        plot_accuracy_vs_snr(runs, cases, figures / ACCURACY_FIGURE)
        plot_speed(runs, cases, figures / SPEED_FIGURE)
        lines += [f"![Accuracy of every ground-truth unit against its SNR, per case]({ACCURACY_FIGURE})", "",
                  f"![Wall time of every sorter per case]({SPEED_FIGURE})", ""]
    return lines + misses_lines(runs, cases)


def target_lines(runs: dict[str, dict[str, dict]], cases: list[str]) -> list[str]:
    """dlsort against the best peer on each case: well-detected units and mean accuracy."""
    lines = []
    wins = 0
    for case in cases:
        peers = {name: r["evaluation"] for name, r in runs[case].items() if name != "dlsort"}
        if "dlsort" not in runs[case] or not peers:
            continue
        ours = runs[case]["dlsort"]["evaluation"]
        most = max(peer["well_detected"] for peer in peers.values())
        best = max(peer["accuracy"] for peer in peers.values())
        wins += ours["well_detected"] - most
        lines.append(f"- {case}: dlsort {ours['well_detected']} well detected vs {most} "
                     f"({', '.join(name for name, peer in peers.items() if peer['well_detected'] == most)}); "
                     f"mean accuracy {ours['accuracy']:.3f} vs {best:.3f} "
                     f"({', '.join(name for name, peer in peers.items() if peer['accuracy'] == best)}).")
    if lines:
        lines.append(f"- Summed over these cases, dlsort finds {wins:+d} well-detected units against the best peer "
                     "of each case.")
    return lines


def misses_lines(runs: dict[str, dict[str, dict]], cases: list[str]) -> list[str]:
    """Every ground-truth unit that dlsort misses and some peer finds, with dlsort's reason."""
    lines = ["Ground-truth units that dlsort misses (accuracy < 0.8) and a peer finds, with why dlsort missed "
             "them (`dlsort.evaluation.diagnose_misses`):", "",
             "| case | unit | SNR | dlsort accuracy | why dlsort missed it | peers that find it (accuracy) |",
             "|---|---|---|---|---|---|"]
    found = False
    for case in cases:
        if "dlsort" not in runs[case]:
            continue
        ours = runs[case]["dlsort"]["evaluation"]["per_unit"]
        for unit, result in ours.items():
            peers = {name: r["evaluation"]["per_unit"][unit]["accuracy"] for name, r in runs[case].items()
                     if name != "dlsort" and r["evaluation"]["per_unit"][unit]["accuracy"] >= 0.8}
            if result["accuracy"] >= 0.8 or not peers:
                continue
            found = True
            finders = ", ".join(f"{name} ({accuracy:.2f})" for name, accuracy in peers.items())
            lines.append(f"| {case} | {unit} | {fmt(result['snr'], 1)} | {result['accuracy']:.2f} | "
                         f"{result.get('miss') or '— (evaluated before reasons were recorded)'} | {finders} |")
    return lines + ([""] if found else ["| — | none | | | | |", ""])


ACCURACY_FIGURE = "benchmark_accuracy_snr.png"
SPEED_FIGURE = "benchmark_speed.png"


def plot_accuracy_vs_snr(runs: dict[str, dict[str, dict]], cases: list[str], path: Path) -> None:
    """Per-unit accuracy against ground-truth SNR, one panel per case, one colour per sorter."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sorters = ordered_sorters({name for case in cases for name in runs[case]})
    colours = {name: f"C{i}" for i, name in enumerate(sorters)}
    figure, axes = plt.subplots(1, len(cases), figsize=(3.6 * len(cases), 3.6), sharey=True, squeeze=False)
    for axis, case in zip(axes[0], cases):
        for name, record in runs[case].items():
            units = record["evaluation"]["per_unit"].values()
            snrs = np.array([unit["snr"] for unit in units], dtype=float)
            accuracies = np.array([unit["accuracy"] for unit in units])
            style = {"s": 28, "zorder": 3, "marker": "o"} if name == "dlsort" else {"s": 14, "alpha": 0.7,
                                                                                   "marker": "x"}
            axis.scatter(snrs, accuracies, color=colours[name], label=name, linewidth=1, **style)
        axis.axhline(0.8, color="0.5", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([1, 2, 3, 5, 10, 20, 50]))
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set(title=f"case {case}", xlabel="ground-truth SNR")
    axes[0, 0].set_ylabel("accuracy")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_speed(runs: dict[str, dict[str, dict]], cases: list[str], path: Path) -> None:
    """Wall time of every sorter with default parameters, grouped by case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sorters = ordered_sorters({name for case in cases for name in runs[case]})
    width = 0.8 / len(sorters)
    figure, axis = plt.subplots(figsize=(1.2 + 1.6 * len(cases), 3.6))
    for index, name in enumerate(sorters):
        times = [runs[case][name]["wall_time_s"] if name in runs[case] else np.nan for case in cases]
        axis.bar(np.arange(len(cases)) + (index - (len(sorters) - 1) / 2) * width, times, width, label=name,
                 color=f"C{index}")
    axis.set_xticks(np.arange(len(cases)), [f"case {case}" for case in cases])
    axis.set_ylabel("wall time (s), 2 cores")
    axis.legend(fontsize=7, ncols=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def memory_table(records: list[dict]) -> list[str]:
    """Markdown tables (summary and per stage) for the peak-memory runs."""
    if not records:
        return ["Not run yet."]
    records = sorted(records, key=lambda r: (r.get("num_channels", 64), r["minutes"]))
    mib = 1024.0
    header = ["channels", "recording length (min)", "status", "preprocessed traces cached", "wall time (s)",
              "real-time factor", "peak RSS main process (MiB)",
              "peak RSS largest worker (MiB)", "peak RSS main + workers, sampled (MiB)",
              "peak PSS main + workers, sampled (MiB)", "stage at the peak",
              "peaks detected", "units found"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        ok = r["status"] == "ok"
        lines.append("| " + " | ".join([
            str(r.get("num_channels", 64)), f"{r['minutes']:g}",
            r["status"] if ok else f"**{r['status']}**: {one_line(r.get('error', ''))}",
            f"{r['preprocessing_cache'] or 'no'} ({r['preprocessed_gib']:.1f} GiB)" if "preprocessed_gib" in r else "—",
            fmt(r.get("wall_time_s"), 1), fmt(r["wall_time_s"] / (60 * r["minutes"]) if ok else None),
            fmt(r["maxrss_self_kib"] / mib if ok else None, 0), fmt(r["maxrss_children_kib"] / mib if ok else None, 0),
            fmt(r["sampled_peak_total_kib"] / mib if ok else None, 0),
            fmt(r["sampled_peak_pss_kib"] / mib if ok and "sampled_peak_pss_kib" in r else None, 0),
            r.get("peak_stage", "—"),
            fmt(r.get("num_peaks")), fmt(r.get("num_units")),
        ]) + " |")
    stages = []
    for r in records:
        for stage in r.get("stages", {}):
            if stage not in stages:
                stages.append(stage)
    if stages:
        lines += ["", "Per stage: sampled peak RSS / peak PSS of the main process plus its workers (MiB) / "
                  "time in the stage (s).", ""]
        header = ["stage"] + [f"{r.get('num_channels', 64)} ch, {r['minutes']:g} min" for r in records]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for stage in stages:
            cells = [stage]
            for r in records:
                s = r.get("stages", {}).get(stage)
                pss = f"{s['peak_pss_kib'] / mib:.0f}" if s and "peak_pss_kib" in s else "—"
                cells.append(f"{s['peak_total_kib'] / mib:.0f} / {pss} / {s['time_s']:.1f}" if s else "—")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def denoising_section(record: dict | None) -> list[str]:
    """The "Waveform denoising" section from ``benchmarks/denoising.py``'s result."""
    lines = ["## Waveform denoising", ""]
    if record is None:
        return lines + ["Not run yet.", ""]
    speeds = record["waveforms_per_second"]
    lines += [
        f"Model `{record['model']['id']}` (sha256 `{record['model']['sha256'][:16]}...`) on 20 000 held-out "
        f"synthetic spikes (units of a seed it was not trained on) in {record['noise']}, window of "
        f"{record['num_samples']} samples at 30 kHz. Mean squared error to the clean spike in noise-variance "
        "units; temporal PCA keeps 5 components fitted on the same noisy waveforms. SNR = the clean spike's "
        "trough in noise standard deviations (one channel). 30 % of the examples carry a second, shifted spike that "
        "is not part of the target (a collision), which is why the raw error exceeds the noise variance of 1.",
        "",
        "| SNR | waveforms | MSE raw | MSE temporal PCA | MSE network | network / raw | network / PCA |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(f"| {row['snr']} | {row['count']} | {row['mse_raw']:.3f} | {row['mse_pca']:.3f} | "
                     f"{row['mse_network']:.3f} | {row['network_over_raw']:.2f} | {row['network_over_pca']:.2f} |")
    lines += ["", f"Throughput on this CPU: {speeds['1']:,.0f} waveforms/s with 1 torch thread, "
              f"{speeds['2']:,.0f} with 2 (one waveform = one channel of one spike).", ""]
    neighbourhood = record.get("neighbourhood")
    if neighbourhood is not None:
        lines += [
            f"Against a neighbourhood denoiser, `{neighbourhood['model']['id']}` "
            "(`denoising_method=\"neighbourhood\"`: "
            "the neighbourhood autoencoder's reconstruction of the whole snippet), on 20 000 held-out neighbourhood "
            "snippets of synthetic probe patches (a seed no shipped network was trained on; real Neuropixels temporal "
            "and spatial noise statistics; the patches' own spikes collide), every channel scored as one waveform "
            "and binned by the SNR of that channel's clean waveform; the centre channels alone in the second table. "
            f"The neighbourhood network ran at {neighbourhood['snippets_per_second']:,.0f} snippets/s on 2 threads.",
            "",
        ]
        tables = (("every channel", neighbourhood["rows"]), ("centre channels", neighbourhood["rows_centre"]))
        for title, rows in tables:
            lines += [f"| SNR ({title}) | waveforms | MSE raw | MSE temporal PCA | MSE single-channel network | "
                      "MSE neighbourhood network | neighbourhood / single-channel |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {row['snr']} | {row['count']} | {row['mse_raw']:.3f} | {row['mse_pca']:.3f} | "
                      f"{row['mse_network']:.3f} | {row['mse_neighbourhood']:.3f} | "
                      f"{row['mse_neighbourhood'] / row['mse_network']:.2f} |" for row in rows]
            lines.append("")
    return lines


def merged_cases(records: list[dict]) -> list[dict]:
    """The cases of several ``deepinterpolation_quality.py`` runs, each case's methods and runs merged (later wins)."""
    cases: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: r["started_utc"]):
        for case in record["cases"]:
            merged = cases.setdefault(case["case"], {**case, "methods": {}, "deepinterpolation_runs": {}})
            merged["methods"].update(case["methods"])
            merged["deepinterpolation_runs"].update(case["deepinterpolation_runs"])
    return list(cases.values())


DEEPINTERPOLATION_GOAL_DB = 3.0  # issue 4: this much more than the best linear filter ...
DEEPINTERPOLATION_GOAL_AMPLITUDE = 0.9  # ... both keeping at least this share of the spike amplitude


def deepinterpolation_goal(case: dict) -> str:
    """Whether one case meets DeepInterpolation's denoising goal, as a sentence.

    Compares the DeepInterpolation row and the linear-filter row with the most noise reduction
    among those keeping at least ``DEEPINTERPOLATION_GOAL_AMPLITUDE`` of the spike amplitude.
    """
    keeping = {method: values["noise_reduction_db"] for method, values in case["methods"].items()
               if values["amplitude_kept"] >= DEEPINTERPOLATION_GOAL_AMPLITUDE}
    best = {}
    for kind, is_network in (("linear", False), ("DeepInterpolation", True)):
        candidates = [method for method in keeping if method.startswith("DeepInterpolation") == is_network]
        best[kind] = max(candidates, key=keeping.get, default=None)
    goal = (f"Goal (DeepInterpolation >= {DEEPINTERPOLATION_GOAL_DB:g} dB above the best linear filter, both keeping "
            f">= {DEEPINTERPOLATION_GOAL_AMPLITUDE:.0%} of the amplitude): ")
    if best["DeepInterpolation"] is None:
        return goal + "**not met**: no DeepInterpolation row keeps that much."
    if best["linear"] is None:
        return goal + "no linear filter keeps that much, so there is nothing to compare with."
    gain = keeping[best["DeepInterpolation"]] - keeping[best["linear"]]
    verdict = "met" if gain >= DEEPINTERPOLATION_GOAL_DB else "**not met**"
    return goal + (f"{best['DeepInterpolation']}, {keeping[best['DeepInterpolation']]:.2f} dB, against "
                   f"{best['linear']}, {keeping[best['linear']]:.2f} dB: {gain:+.2f} dB, {verdict}.")


def deepinterpolation_section(records: list[dict]) -> list[str]:
    """The "DeepInterpolation denoising" section from ``benchmarks/deepinterpolation_quality.py``'s results."""
    lines = ["## DeepInterpolation denoising on hybrid recordings", ""]
    if not records:
        return lines + ["Not run yet.", ""]
    lines += [
        "Ground-truth spikes (SpikeInterface's generator, noise-free) added to noise; every method filters the whole "
        "recording and is scored on its second half against the clean spikes (the module docstring of "
        "`benchmarks/deepinterpolation_quality.py` defines the scores). DeepInterpolation is the blind-spot "
        "interpolator trained self-supervised on the first half of the same recording (as `dlsort train "
        "deepinterpolation` does), or a model applied unchanged: the first case's, a shipped one, or the per-frame "
        "U-Net trained with the Neuropixels 1.0 recipe (`deepinterpolation-unet-np1`, notes of the twenty-third "
        "session). Each "
        "DeepInterpolation output is also scored after a 6-kHz Gaussian low-pass (\"then Gaussian 6 kHz\"), which "
        "removes part of the noise the network reproduces because it is correlated across the blind spot.",
        "",
    ]
    for case in merged_cases(records):
        lines += [f"### {case['case']}: {case['channels']} channels, {case['seconds']:g} s, {case['noise']}", "",
                  "| method | noise reduction (dB) | amplitude kept | waveform correlation |", "|---|---|---|---|"]
        for method, values in case["methods"].items():
            name = f"**{method}** (best linear)" if method == case["best_linear"] else method
            lines.append(f"| {name} | {values['noise_reduction_db']:.2f} | {values['amplitude_kept']:.2f} | "
                         f"{values['waveform_correlation']:.3f} |")
        spikes = next(iter(case["methods"].values()))["spikes"]
        runs = "; ".join(f"{key}: " + ", ".join(f"{name.replace('_', ' ')} {value:.3g}" for name, value in run.items()
                                                if name != "model")
                         for key, run in case["deepinterpolation_runs"].items())
        lines += ["", f"{spikes} spikes scored (clean peak above 3 noise levels). DeepInterpolation runs ('self': "
                  f"trained on the first half, else the model applied unchanged; seconds on 2 cores): "
                  f"{runs or 'none'}.", "", deepinterpolation_goal(case), ""]
    return lines


def deepinterpolation_sorting_section(records: list[dict]) -> list[str]:
    """The sorter with and without DeepInterpolation, from ``benchmarks/deepinterpolation_sorting.py``'s results."""
    lines = ["## The sorter with and without DeepInterpolation", ""]
    if not records:
        return lines + ["Not run yet.", ""]
    lines += [
        "dlsort with default parameters, without and with `deepinterpolation_model` naming a blind-spot interpolator "
        "trained (`dlsort train deepinterpolation`, self-supervised) on the case's own recording; well detected = "
        "accuracy >= 0.8; `a/b` per SNR bin as in the case tables.",
        "",
        "| case | training (s) | well detected without / with | mean accuracy without / with | "
        "wall time (s) without / with | well detected per SNR bin without | with |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in sorted(records, key=lambda r: r["case"]):
        plain, interpolated = record["plain"], record["deepinterpolation"]
        bins = [", ".join(f"{key}: {found}/{total}" for key, (found, total) in
                          run["evaluation"]["well_detected_by_snr"].items())
                for run in (plain, interpolated)]
        lines.append(f"| {record['case']} | {record['training_s']:.0f} | {plain['evaluation']['well_detected']} / "
                     f"{interpolated['evaluation']['well_detected']} | {plain['evaluation']['accuracy']:.3f} / "
                     f"{interpolated['evaluation']['accuracy']:.3f} | {plain['wall_time_s']:.0f} / "
                     f"{interpolated['wall_time_s']:.0f} | {bins[0]} | {bins[1]} |")
    return lines + [""]


def features_section(record: dict | None) -> list[str]:
    """Autoencoder vs temporal PCA features and the clustering's scaling, from ``benchmarks/features.py``'s results."""
    lines = ["## Features and clustering on ground-truth spikes", ""]
    if record is None:
        return lines + ["Not run yet.", ""]
    lines += [
        f"`{record.get('command', 'benchmarks/features.py')}` (dlsort {record['dlsort_git']}, "
        f"{record['started_utc']}): the true spikes of each "
        f"case on their unit's main channel, both feature methods after the same preprocessing and "
        f"`{record['denoising']}` waveform denoising, then the sorter's clustering stage with its defaults (HDBSCAN, "
        f"then the template merge). Autoencoder: `{record['model']}`; temporal PCA with as many components as its "
        "embedding. ARI: adjusted Rand index (noise counts as one cluster); units >= 0.8: true units whose best "
        "cluster has accuracy >= 0.8 after the merge; seconds per 100 000 spikes on this machine.",
        "",
        "| case | spikes | units | ARI tPCA (HDBSCAN / merged) | ARI autoencoder (HDBSCAN / merged) | "
        "units >= 0.8 tPCA / autoencoder | mean unit accuracy tPCA / autoencoder | features s/100k tPCA / "
        "autoencoder | clustering s/100k tPCA / autoencoder |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in record["cases"]:
        tpca, learned = case["tpca"], case["autoencoder"]
        per_100k = 1e5 / max(case["num_spikes"], 1)

        lines.append(
            f"| {case['case']} | {case['num_spikes']} | {case['num_units']} | {tpca['hdbscan']['ari']:.3f} / "
            f"{tpca['merged']['ari']:.3f} | {learned['hdbscan']['ari']:.3f} / {learned['merged']['ari']:.3f} | "
            f"{tpca['merged']['units_accuracy_ge_0.8']} / {learned['merged']['units_accuracy_ge_0.8']} | "
            f"{tpca['merged']['mean_unit_accuracy']:.3f} / {learned['merged']['mean_unit_accuracy']:.3f} | "
            f"{tpca['features_seconds'] * per_100k:.0f} / {learned['features_seconds'] * per_100k:.0f} | "
            f"{tpca['clustering_seconds'] * per_100k:.1f} / {learned['clustering_seconds'] * per_100k:.1f} |")
    tests = [(case["case"], method, case[method]["split_test"]) for case in record["cases"]
             for method in ("tpca", "autoencoder") if "split_test" in case[method]]
    if tests:
        lines += [
            "",
            "Could a split step find the clusters that hold two true units (the smaller >= 10 %)? Each cluster is cut "
            "in two by k-means on its clustering features and the bimodality of its members along the two halves' "
            "Fisher discriminant scored (1 - dip / lower mode of the smoothed histogram; 0 = unimodal). A split "
            "step works only if the mixed clusters score above the pure ones.",
            "",
            "| case | features | mixed clusters: bimodality | pure clusters | pure: median bimodality | "
            "pure above 0.5 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {case} | {method} | {', '.join(f'{value:.2f}' for value in test['mixed_clusters']) or '-'} | "
                  f"{test['pure_clusters']} | {fmt(test['pure_median'])} | {test['pure_above_0.5']} |"
                  for case, method, test in tests]
    compared = [(case["case"], method, case[method]["implementations"]) for case in record["cases"]
                for method in ("tpca", "autoencoder") if "implementations" in case[method]]
    if compared:
        lines += [
            "",
            "HDBSCAN implementations (`clustering_method`): the hdbscan package against scikit-learn's, on the same "
            "points with the stage's settings, the whole probe at once, before the merge.",
            "",
            "| case | features | ARI hdbscan / scikit-learn | mean unit accuracy hdbscan / scikit-learn | "
            "seconds hdbscan / scikit-learn |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {case} | {method} | {rows['hdbscan']['ari']:.3f} / {rows['sklearn-hdbscan']['ari']:.3f} | "
                  f"{rows['hdbscan']['mean_unit_accuracy']:.3f} / {rows['sklearn-hdbscan']['mean_unit_accuracy']:.3f} "
                  f"| {rows['hdbscan']['seconds']:.2f} / {rows['sklearn-hdbscan']['seconds']:.2f} |"
                  for case, method, rows in compared]
    scaled = [(case["case"], method, case[method]["scaling"]) for case in record["cases"]
              for method in ("tpca", "autoencoder") if "scaling" in case[method]]
    if scaled:
        lines += [
            "",
            "Clustering time as the probe grows: the spikes located on the lowest quarter of the case's probe, then "
            "1, 2 and 6 copies of the case laid end to end (each copy's units distinct), clustered on the whole probe "
            "at once and tile by tile (`clustering_region_um`). ARI falls with the copies for both because the noise "
            "label pools spikes of ever more units; the mean unit accuracy does not.",
            "",
            "| case | features | channels | spikes | seconds whole / tiles | mean unit accuracy whole / tiles |",
            "|---|---|---|---|---|---|",
        ]
        for case, method, rows in scaled:
            lines += [f"| {case} | {method} | {row['channels']} | {row['spikes']} | {row['whole']['seconds']:.2f} / "
                      f"{row['regions']['seconds']:.2f} | {row['whole']['mean_unit_accuracy']:.3f} / "
                      f"{row['regions']['mean_unit_accuracy']:.3f} |" for row in rows]
    return lines + [""]


DETECTION_FIGURE = "detection_recall.png"


FINE_TUNING_BUDGET_S = 180.0  # issue 8: fine-tuning in under 3 minutes on 2 cores
SHIPPED_GAP = 0.03  # issue 8: shipped weights within 0.03 mean accuracy of fine-tuned ones


def _units_cell(summary: dict | None) -> str:
    """``well/total (mean accuracy)`` of a run summary, or its status."""
    if not summary:
        return "—"
    if summary["status"] != "ok":
        return f"**{summary['status']}**"
    return f"{summary['well_detected']}/{summary['num_gt_units']} ({summary['accuracy']:.3f})"


def generalization_section(records: list[dict]) -> list[str]:
    """The "Generalization across probe families" section from ``benchmarks/generalization.py``'s summaries."""
    from dlsort.groundtruth import PROBE_FAMILY_CASES

    lines = ["## Generalization across probe families", ""]
    if not records:
        return lines + ["Not run yet.", ""]
    by_case = {record["case"]: record for record in records}
    ordered = [by_case[case] for case in PROBE_FAMILY_CASES if case in by_case]
    commits = sorted({r["shipped"]["dlsort_git"] for r in ordered if r["shipped"].get("dlsort_git")})
    lines += [f"- `{command}`" for command in dict.fromkeys(r["command"] for r in ordered)]
    lines += [
        "",
        f"dlsort {'; '.join(commits)}, runs started {min(r['started_utc'] or '' for r in ordered)} to "
        f"{max(r['started_utc'] or '' for r in ordered)} (UTC). One generated recording per probe family "
        "(`dlsort.groundtruth.PROBE_FAMILY_CASES`, 5 uV noise). *Shipped*: dlsort's defaults. *Fine-tuned*: the "
        "detector and the denoiser fine-tuned on the recording itself (`dlsort train detector|denoiser --recording`, "
        "each from the shipped network, in its own process; the time is both commands' wall time, start-up and the "
        "detector's bootstrap sort included), then dlsort with them. Cells: well-detected units (accuracy >= 0.8) / "
        "ground-truth units (mean accuracy). Best peer: most well-detected units, then mean accuracy, among "
        "the peers that ran. Time: dlsort (shipped) wall time / spykingcircus2's on the same recording.",
        "",
        "| case | probe | channels | rate (kHz) | shipped | fine-tuned | mean accuracy shipped - fine-tuned | "
        "fine-tuning (s) | best peer | time / spykingcircus2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    within, fast, at_least_peer = [], [], []
    for record in ordered:
        shipped, tuned = record["shipped"], record.get("fine_tuned")
        peers = [peer for peer in record["peers"] if peer["status"] == "ok"]
        best = max(peers, key=lambda peer: (peer["well_detected"], peer["accuracy"]), default=None)
        circus = next((peer for peer in peers if peer["sorter"] == REFERENCE_SORTER), None)
        tuning = record["fine_tuning"]
        seconds = sum(result["seconds"] for result in tuning.values())
        failed = [task for task, result in tuning.items() if result["status"] != "ok"]
        gap = None
        if shipped["status"] == "ok" and tuned and tuned["status"] == "ok":
            gap = shipped["accuracy"] - tuned["accuracy"]
            within.append(gap >= -SHIPPED_GAP)
        if not failed:
            fast.append(seconds < FINE_TUNING_BUDGET_S)
        if shipped["status"] == "ok" and best:
            at_least_peer.append(shipped["well_detected"] >= best["well_detected"])
        cells = [
            record["case"], record["description"], str(record["num_channels"]),
            f"{record['sampling_frequency'] / 1000:g}", _units_cell(shipped), _units_cell(tuned),
            "—" if gap is None else f"{round(gap, 3) + 0.0:+.3f}",  # + 0.0: no "-0.000"
            f"**failed** ({', '.join(failed)})" if failed else
            f"{seconds:.0f} ({' + '.join(format(result['seconds'], '.0f') for result in tuning.values())})",
            f"{_units_cell(best)} {best['sorter']}" if best else "—",
            fmt(shipped["wall_time_s"] / circus["wall_time_s"]) if circus and shipped["status"] == "ok" else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- Shipped weights within {SHIPPED_GAP} mean accuracy of fine-tuned ones (or better): "
        f"{sum(within)} of {len(within)} cases.",
        f"- Fine-tuning both networks in under {FINE_TUNING_BUDGET_S:.0f} s: {sum(fast)} of {len(fast)} cases.",
        f"- dlsort (shipped) finds at least as many well-detected units as the best peer: {sum(at_least_peer)} of "
        f"{len(at_least_peer)} cases.",
        "",
    ]
    return lines


def real_data_section(records: list[dict]) -> list[str]:
    """The "Real data and hybrids on Neuropixels noise" section from ``benchmarks/real_data.py``'s summaries."""
    lines = ["## Real data and hybrids on Neuropixels noise", ""]
    if not records:
        return lines + ["Not run yet.", ""]
    runs = [run for record in records for run in record["runs"]]
    commits = sorted({run["dlsort_git"] for run in runs if run["sorter"] == "dlsort" and run.get("dlsort_git")})
    starts = sorted(run["started_utc"] for run in runs if run.get("started_utc"))
    lines += [f"- `{command}`" for command in dict.fromkeys(record["command"] for record in records)]
    lines += [
        "",
        f"dlsort {'; '.join(commits)}, runs started {starts[0] if starts else '—'} to "
        f"{starts[-1] if starts else '—'} (UTC). Each sorting analysed as `dlsort report` does "
        "(`dlsort.report.analyze_sorting`: SpikeInterface's quality metrics on the band-passed, common-median "
        "referenced recording, 500 spikes per unit). Passing: units within the Allen Brain Observatory's criteria "
        "(ISI violations ratio < 0.5, presence ratio > 0.9, amplitude cutoff < 0.1). Amplitude: the template's "
        "largest absolute value. Medians over a sorter's units. Well detected: accuracy >= 0.8 against the "
        "hybrid's ground truth (mean accuracy over its units).",
        "",
    ]
    for record in records:
        lines += [f"### {record['case']}: {record['description']}", "",
                  f"{record['num_channels']} channels, {record['duration_s']:.3g} s.", "",
                  "| sorter | wall time (s) | units | well detected | passing | median amplitude (uV) | "
                  "median SNR | median ISI violations ratio | median presence ratio | median firing rate (Hz) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        order = {name: i for i, name in enumerate(SORTER_ORDER)}
        for run in sorted(record["runs"], key=lambda run: order.get(run["sorter"], len(order))):
            name = f"{run['spec']} {run.get('sorter_version') or ''}".strip()
            if run["status"] != "ok":
                lines.append(f"| {name} | — | **{run['status']}**: {one_line(run.get('error') or '', 150)} "
                             "| — | — | — | — | — | — | — |")
                continue
            quality, evaluation = run["quality"], run.get("evaluation")
            truth = (f"{evaluation['well_detected']}/{evaluation['num_gt_units']} ({evaluation['accuracy']:.3f})"
                     if evaluation else "—")
            cells = [name, fmt(run["wall_time_s"], 1), str(quality["units"]), truth,
                     f"{quality.get('passing_allen', 0)}/{quality['units']}",
                     fmt(quality.get("median_amplitude_uv"), 1), fmt(quality.get("median_snr"), 1),
                     fmt(quality.get("median_isi_violations_ratio")), fmt(quality.get("median_presence_ratio")),
                     fmt(quality.get("median_firing_rate_hz"), 1)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def rewrite_section_from(workdir: Path, folder: str, output: Path, section) -> None:
    """Rewrite one section of ``output`` in place from the JSON summaries in ``<workdir>/<folder>``.

    Parameters
    ----------
    workdir : Path
    folder : str
        Sub-folder of the work directory holding one summary per case.
    output : Path
        The markdown report.
    section : callable
        Builds the section's lines from the list of summaries (e.g. ``generalization_section``).
    """
    replace_section(output, section(load_json_files((Path(workdir) / folder).glob("*.json"))))


def replace_section(output: Path, section: list[str]) -> None:
    """Rewrite one ``## `` section of the report in place, leaving every other section as it is.

    Parameters
    ----------
    output : Path
        The markdown report; created (with the notes marker) when missing.
    section : list of str
        The section's lines, its ``## `` heading first. A section of that heading is replaced; a new
        one goes before the hand-written notes.
    """
    heading = section[0]
    text = output.read_text() if output.exists() else f"# Benchmarks\n\n{NOTES_MARKER}\n"
    lines = text.split("\n")
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ") or lines[i] == NOTES_MARKER), len(lines))
    else:
        start = end = lines.index(NOTES_MARKER) if NOTES_MARKER in lines else len(lines)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines[:start] + section + lines[end:]))


def plot_detection(records: list[dict], path: Path) -> None:
    """Recall per unit-SNR bin of every detector, one panel per case, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlsort.evaluation import snr_bin_labels

    labels = snr_bin_labels()
    records = sorted(records, key=lambda r: r["case"])
    columns = min(3, len(records))
    rows = -(-len(records) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 4.0 * rows), sharey=True, squeeze=False)
    for axis in axes.flat[len(records):]:
        axis.set_visible(False)
    for axis, record in zip(axes.flat, records):
        for row in record["rows"]:
            present = [label for label in labels if label in row["recall_by_snr"]]
            style = "-o" if row["detector"].startswith("neural") else "--s"
            axis.plot(present, [row["recall_by_snr"][label] for label in present], style, markersize=4,
                      label=f"{row['detector']} (precision {row['precision']:.2f})")
        axis.set_title(record["case"])
        axis.set_xlabel("unit SNR")
        axis.tick_params(axis="x", labelrotation=45)
        axis.set_ylim(0, 1.02)
        axis.legend(fontsize=6, loc="lower right")
    for axis in axes[:, 0]:
        axis.set_ylabel("recall")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def detection_section(records: list[dict], figure: Path | None = None) -> list[str]:
    """The "Spike detection" section from ``benchmarks/detection.py``'s results (and its figure, given a path)."""
    from dlsort.evaluation import snr_bin_labels

    lines = ["## Spike detection", ""]
    if not records:
        return lines + ["Not run yet.", ""]
    if figure is not None:
        plot_detection(records, figure)
        lines += [f"![Recall per unit-SNR bin of every detector, per case]({figure.name})", ""]
    labels = snr_bin_labels()
    lines += [
        "Detected peaks against ground-truth spikes on the cases' saved recordings, preprocessed as dlsort does "
        "by default. A peak matches a spike within 0.4 ms and 50 um of the unit's main channel; recall is the "
        "mean over units (per unit-SNR bin in the last columns), precision the fraction of peaks that match a "
        "spike.",
        "",
        "| case | detector | peaks | recall | precision | " + " | ".join(f"recall SNR {b}" for b in labels)
        + " | time (s) | M samples x ch / s |",
        "|" + "---|" * (7 + len(labels)),
    ]
    for record in sorted(records, key=lambda r: r["case"]):
        for row in record["rows"]:
            cells = [fmt(row["recall_by_snr"].get(label), 3) if label in row["recall_by_snr"] else "—"
                     for label in labels]
            size = record.get("sample_channels")
            throughput = fmt(size / row["seconds"] / 1e6, 1) if size else "—"
            lines.append(f"| {record['case']} | {row['detector']} | {row['num_peaks']} | {row['recall']:.3f} | "
                         f"{row['precision']:.3f} | " + " | ".join(cells) + f" | {row['seconds']:.1f} | {throughput} |")
    return lines + [""]


def write_report(workdir: Path, output: Path, benchmark_command: str | None = None,
                 memory_command: str | None = None, denoising_command: str | None = None,
                 detection_command: str | None = None, deepinterpolation_command: str | None = None,
                 deepinterpolation_sorting_command: str | None = None) -> None:
    """Rewrite ``output`` from every result stored in ``workdir``.

    Parameters
    ----------
    workdir : Path
        The benchmark work directory.
    output : Path
        The markdown file to write.
    benchmark_command, memory_command, denoising_command, detection_command : str or None
        Commands to record (kept from earlier calls when None).
    deepinterpolation_command, deepinterpolation_sorting_command : str or None
        Likewise.
    """
    from dlsort.groundtruth import BENCHMARK_CASES

    workdir = Path(workdir)
    commands = record_commands(workdir, benchmark=benchmark_command, memory=memory_command,
                               denoising=denoising_command, detection=detection_command,
                               deepinterpolation=deepinterpolation_command,
                               deepinterpolation_sorting=deepinterpolation_sorting_command)
    repo = Path(__file__).resolve().parents[1]
    case_records = {case: load_json_files((workdir / case / "results").glob("*.json")) for case in CASE_ORDER}
    memory_records = load_json_files((workdir / "memory").glob("*min.json"))
    all_records = [r for records in case_records.values() for r in records] + memory_records
    starts = sorted(r["started_utc"] for r in all_records if "started_utc" in r)
    dlsort_records = [r for r in all_records if r.get("sorter", "dlsort").startswith("dlsort")]
    dlsort_commits = sorted({r["dlsort_git"] for r in dlsort_records if r.get("dlsort_git")})
    versions = {}
    for records in case_records.values():
        for r in records:
            if r.get("sorter_version"):
                versions[r["sorter"]] = r["sorter_version"]

    lines = [
        "# Benchmarks",
        "",
        "Generated by `benchmarks/run_benchmark.py` and `benchmarks/memory.py` (tables are rewritten after every run; "
        "a case or sorter missing below has not been run yet).",
        "",
        "## How this was produced",
        "",
        "Commands (from the repository root, with `PYTHONPATH` naming the dlsort under test, `.` for the source tree; "
        "the dlsort rows and the memory table below used a frozen copy, see the notes at the end):",
        "",
    ]
    lines += [f"- `{command}`" for key in ("memory", "benchmark", "denoising", "detection", "deepinterpolation",
                                                          "deepinterpolation_sorting")
              for command in commands.get(key, [])]
    lines += [
        "",
        f"- Date (UTC): {starts[0] if starts else '—'} to {starts[-1] if starts else '—'} "
        "(start of the first and last run).",
        f"- Machine: {os.cpu_count()} cores, CPU only (no GPU), 24 GiB RAM, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}. Every sorter ran alone, one at a time, in its own subprocess, with "
        "`n_jobs=2`. Timings are noisy: another engineer ran the test suite on the same 2 cores during these runs, "
        "so compare sorters through the ratio columns and repeat before trusting differences below ~30 %.",
        f"- Versions: spikeinterface {package_version('spikeinterface')}, dlsort "
        f"{versions.get('dlsort', package_version('dlsort'))} (git {'; '.join(dlsort_commits) or git_commit(repo)}), "
        f"numpy {package_version('numpy')}, "
        f"torch {package_version('torch')}, hdbscan {package_version('hdbscan')}, mountainsort5 "
        f"{package_version('mountainsort5')}, kilosort {package_version('kilosort')}; spykingcircus2, tridesclous2 and "
        "lupin are built into spikeinterface (their own version numbers are in the sorter column).",
        "- Accuracy: `dlsort.evaluation.evaluate` (SpikeInterface `compare_sorter_to_ground_truth`, delta 0.4 ms, "
        "well detected = accuracy >= 0.8; mean accuracy/precision/recall over ground-truth units, "
        "missed units count 0). "
        "SNR bins use the ground-truth templates' peak SNR on the saved recording (`ground_truth_snrs`); a cell "
        "`a/b` means a well-detected units out of b ground-truth units in that bin.",
        "- Real-time factor = wall time of the `run_sorter` call / recording duration "
        "(below 1 = faster than real time). "
        f"`time / {REFERENCE_SORTER}` = wall time / {REFERENCE_SORTER}'s wall time on the same case "
        "in this work directory.",
        "- Sorter parameters: defaults, plus `job_kwargs=dict(n_jobs=2, progress_bar=False)` for spykingcircus2, "
        "tridesclous2 and lupin, `n_jobs=2, progress_bar=False` for dlsort and mountainsort5, and also "
        "`torch_device=\"cpu\"` for kilosort4. A row named `sorter:key=value` ran with that parameter "
        "added. A run longer than the timeout is killed and reported as timed out.",
        "",
    ]
    lines += scoreboard_section(case_records, output.parent)
    lines += ["## Ground-truth cases", ""]
    for case in CASE_ORDER:
        spec = BENCHMARK_CASES[case]
        lines += [f"### Case {case}: {spec.description}", ""]
        lines += [f"{spec.num_channels} channels, {spec.num_units} units, {spec.duration_s:g} s at 30 kHz, "
                  f"drift +-{spec.drift_um:g} um, seed {spec.seed}.", ""]
        lines += case_table(case_records[case]) if case_records[case] else ["Not run yet."]
        lines.append("")
    lines += [
        "## Peak memory vs recording length",
        "",
        "dlsort (`dlsort.pipeline.run_pipeline`, default parameters, `n_jobs=2`, `chunk_duration=\"1s\"`, a scratch "
        "folder for a disk cache as the sorter gives it) on a lazy (never saved) Neuropixels 1.0 recording from "
        "`generate_ground_truth_recording` (40 units per 64 channels, 30 kHz, noise 5 uV `tile_pregenerated`, "
        "seed 42), each length in a fresh process. The cache column says where `cache_preprocessing=\"auto\"` "
        "put the preprocessed float32 traces (their size in brackets). "
        "`ru_maxrss` of the process (RUSAGE_SELF) and of its largest waited-for worker (RUSAGE_CHILDREN is the "
        "maximum over children, not a sum); the sampled column adds the RSS of the main process and all its "
        "live descendants every 0.2 s (an upper bound of what the machine holds: pages shared between the forked "
        "workers and the main process, such as the torch and numpy libraries, are counted once per process); the "
        "PSS column sums the proportional set sizes of the same processes (a page shared by n processes counts "
        "1/n in each), which is what they hold together.",
        "",
    ]
    lines += memory_table(memory_records)
    denoising = load_json_files([workdir / "denoising" / "results.json"])
    lines += [""] + denoising_section(denoising[0] if denoising else None)
    lines += detection_section(load_json_files((workdir / "detection").glob("*.json")),
                               output.parent / DETECTION_FIGURE)
    lines += deepinterpolation_section(load_json_files((workdir / "deepinterpolation").glob("*.json")))
    lines += deepinterpolation_sorting_section(load_json_files((workdir / "deepinterpolation_sorting").glob("*.json")))
    features = load_json_files([workdir / "features" / "results.json"])
    lines += features_section(features[0] if features else None)
    lines += generalization_section(load_json_files((workdir / "generalization").glob("*.json")))
    lines += real_data_section(load_json_files((workdir / "real_data").glob("*.json")))
    lines += [NOTES_MARKER]
    notes = ""
    if output.exists() and NOTES_MARKER in output.read_text():
        old, notes = output.read_text().split(NOTES_MARKER, 1)
        lines = keep_sections_not_run(lines, old.split("\n"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + (notes or "\n"))


NOT_RUN = "Not run yet."


def _sections(lines: list[str]) -> dict[str, tuple[int, int, int]]:
    """Heading line (``## `` or ``### ``) -> (first, direct end, end) line indices of its body.

    The direct body stops at the next heading; the whole body of a ``## `` section runs on over its
    ``### `` subsections to the next ``## `` heading.
    """
    starts = [i for i, line in enumerate(lines) if line.startswith(("## ", "### "))] + [len(lines)]
    out = {}
    for start, direct_end in zip(starts, starts[1:]):
        end = direct_end
        if lines[start].startswith("## "):
            end = next((i for i in starts[1:] if i > start and (i == len(lines) or lines[i].startswith("## "))),
                       len(lines))
        out[lines[start]] = (start + 1, direct_end, end)
    return out


def keep_sections_not_run(lines: list[str], old: list[str]) -> list[str]:
    """``lines`` with every section that says ``NOT_RUN`` given the old report's body of that heading instead.

    The report is regenerated from the work directory, which holds only the results run (or tracked)
    there: a section whose results are absent keeps what the report said, rather than losing it. A
    ``## `` section that is not run keeps its old ``### `` subsections too.
    """
    previous = _sections(old)
    out = list(lines)
    for heading, (first, direct_end, end) in sorted(_sections(lines).items(), key=lambda item: -item[1][0]):
        if NOT_RUN in lines[first:direct_end] and heading in previous:
            old_first, old_direct_end, old_end = previous[heading]
            if NOT_RUN not in old[old_first:old_direct_end]:
                out[first:end] = old[old_first:old_end]
    return out

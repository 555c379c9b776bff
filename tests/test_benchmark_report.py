"""The benchmark report: the summary over cases (dlsort against the best peer, the units it misses), the
generalization table, DeepInterpolation's denoising goal, and rewriting one section in place."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from report import NOTES_MARKER, generalization_section, replace_section, scoreboard_section  # noqa: E402


def record(case: str, sorter: str, accuracies: dict, wall_time_s: float, miss: str | None = None) -> dict:
    """A finished benchmark run whose units have the given accuracies (SNR 10 each)."""
    per_unit = {unit: {"snr": 10.0, "accuracy": accuracy, "precision": 1.0, "recall": accuracy,
                       "miss": miss if accuracy < 0.8 else None} for unit, accuracy in accuracies.items()}
    well = sum(accuracy >= 0.8 for accuracy in accuracies.values())
    evaluation = {"num_gt_units": len(accuracies), "well_detected": well,
                  "accuracy": sum(accuracies.values()) / len(accuracies), "per_unit": per_unit}
    return {"case": case, "sorter": sorter, "status": "ok", "wall_time_s": wall_time_s, "evaluation": evaluation}


def test_scoreboard_compares_with_the_best_peer_and_lists_units_a_peer_finds(tmp_path):
    cases = {
        "S": [record("S", "dlsort", {"0": 1.0, "1": 0.5}, 30.0, miss="split into units 3, 4"),
              record("S", "spykingcircus2", {"0": 0.9, "1": 0.9}, 60.0),
              record("S", "dlsort:curation=false", {"0": 0.1, "1": 0.1}, 10.0)],  # not a default run
        "M": [record("M", "dlsort", {"0": 1.0, "1": 1.0}, 40.0),
              record("M", "spykingcircus2", {"0": 1.0, "1": 0.2}, 50.0),
              record("M", "lupin", {"0": 0.3, "1": 0.2}, 90.0)],
    }
    lines = "\n".join(scoreboard_section(cases, figures=tmp_path))

    assert "| dlsort | 1/2 (0.750) | 2/2 (1.000) | 3 | 0.50 | 0.80 |" in lines
    assert "| lupin | — | 0/2 (0.250) | — | — | 1.80 |" in lines
    assert "- S: dlsort 1 well detected vs 2 (spykingcircus2)" in lines
    assert "finds +0 well-detected units against the best peer" in lines
    assert "| S | 1 | 10.0 | 0.50 | split into units 3, 4 | spykingcircus2 (0.90) |" in lines
    assert "curation=false" not in lines
    assert (tmp_path / "benchmark_accuracy_snr.png").stat().st_size > 10_000
    assert (tmp_path / "benchmark_speed.png").stat().st_size > 5_000


def run(sorter: str, well: int, accuracy: float, wall_time_s: float = 10.0, status: str = "ok") -> dict:
    """A generalization run summary with ``well`` of 10 units well detected."""
    return {"sorter": sorter, "status": status, "wall_time_s": wall_time_s, "num_gt_units": 10,
            "well_detected": well, "accuracy": accuracy, "dlsort_git": "abc"}


def generalization(case: str, shipped: dict, tuned: dict | None, seconds: tuple, peers: list) -> dict:
    tasks = ("detector", "denoiser")
    return {"case": case, "command": "python benchmarks/generalization.py", "description": f"probe of {case}",
            "num_channels": 4, "sampling_frequency": 20000.0, "started_utc": "2026-12-06T00:00:00Z",
            "fine_tuning": {task: {"seconds": s, "status": "ok" if s else "failed"} for task, s in zip(tasks, seconds)},
            "shipped": shipped, **({"fine_tuned": tuned} if tuned else {}), "peers": peers}


def test_generalization_section_checks_the_issue_targets_per_probe_family():
    records = [
        generalization("T20", run("dlsort", 5, 0.90, 5.0), run("dlsort:x", 6, 0.95), (100.0, 30.0),
                       [run("spykingcircus2", 6, 0.93, 20.0), run("lupin", 6, 0.96), run("tridesclous2", 9, 1.0,
                                                                                           status="failed")]),
        generalization("NP2", run("dlsort", 8, 0.85), run("dlsort:x", 8, 0.86), (150.0, 40.0),
                       [run("spykingcircus2", 7, 0.80)]),
        generalization("U", run("dlsort", 3, 0.40), None, (50.0, 0.0), []),
    ]
    lines = "\n".join(generalization_section(records))
    # cases in the order of PROBE_FAMILY_CASES, whatever the order of the records
    assert lines.index("| NP2 |") < lines.index("| T20 |") < lines.index("| U |")
    assert ("| T20 | probe of T20 | 4 | 20 | 5/10 (0.900) | 6/10 (0.950) | -0.050 | 130 (100 + 30) | "
            "6/10 (0.960) lupin | 0.25 |") in lines  # the failed peer is not the best one
    assert "| NP2 | probe of NP2 | 4 | 20 | 8/10 (0.850) | 8/10 (0.860) | -0.010 | 190 (150 + 40) |" in lines
    assert "| U | probe of U | 4 | 20 | 3/10 (0.400) | — | — | **failed** (denoiser) | — | — |" in lines
    assert "within 0.03 mean accuracy of fine-tuned ones (or better): 1 of 2 cases" in lines
    assert "in under 180 s: 1 of 2 cases" in lines
    assert "at least as many well-detected units as the best peer: 1 of 2 cases" in lines


def test_replace_section_rewrites_one_section_and_keeps_the_rest(tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text(f"# Benchmarks\n\n## A\n\nold a\n\n## B\n\nold b\n\n{NOTES_MARKER}\n\nnotes\n")
    replace_section(report, ["## A", "", "new a", ""])
    replace_section(report, ["## C", "", "new c", ""])  # a new section goes before the notes
    replace_section(report, ["## B", "", "new b", ""])
    assert report.read_text() == (f"# Benchmarks\n\n## A\n\nnew a\n\n## B\n\nnew b\n\n## C\n\nnew c\n\n"
                                  f"{NOTES_MARKER}\n\nnotes\n")


def test_real_data_section_reports_quality_beside_the_peers_and_failures():
    from report import real_data_section

    quality = {"units": 4, "passing_allen": 3, "median_amplitude_uv": 80.0, "median_snr": 9.0,
               "median_isi_violations_ratio": 0.0, "median_presence_ratio": 1.0, "median_firing_rate_hz": 5.0}
    record = {"case": "HN", "command": "python benchmarks/real_data.py", "description": "a hybrid",
              "num_channels": 64, "duration_s": 60.0, "runs": [
                  {"sorter": "lupin", "spec": "lupin", "status": "failed", "error": "Boom: no"},
                  {"sorter": "dlsort", "spec": "dlsort", "status": "ok", "wall_time_s": 12.0, "sorter_version": "0.1",
                   "dlsort_git": "abc", "started_utc": "2026-12-06T00:00:00Z", "quality": quality,
                   "evaluation": {"num_gt_units": 5, "well_detected": 4, "accuracy": 0.8}}]}
    lines = real_data_section([record])
    table = [line for line in lines if line.startswith("| ")]
    assert table[1] == "| dlsort 0.1 | 12.0 | 4 | 4/5 (0.800) | 3/4 | 80.0 | 9.0 | 0.00 | 1.00 | 5.0 |"
    assert table[2].startswith("| lupin | — | **failed**: Boom: no |")  # dlsort first, whatever the record order
    assert "### HN: a hybrid" in lines and "dlsort abc, runs started 2026-12-06T00:00:00Z" in "\n".join(lines)


def test_a_run_of_some_sorters_keeps_the_stored_runs_of_the_others(tmp_path):
    from real_data import with_stored_runs

    path = tmp_path / "HN.json"
    assert with_stored_runs([{"spec": "dlsort"}], path) == [{"spec": "dlsort"}]
    path.write_text('{"runs": [{"spec": "dlsort", "old": 1}, {"spec": "lupin", "quality": {"units": 3}}]}')
    assert with_stored_runs([{"spec": "dlsort", "new": 1}], path) == [{"spec": "dlsort", "new": 1},
                                                                      {"spec": "lupin", "quality": {"units": 3}}]


def test_a_regenerated_report_keeps_the_sections_whose_results_are_absent():
    from report import keep_sections_not_run

    old = ["# Benchmarks", "## Memory", "", "| table | 1 |", "", "### Case L", "", "| L row |", "", "## Features", "",
           "old features", ""]
    new = ["# Benchmarks", "## Memory", "", "Not run yet.", "", "### Case L", "", "Not run yet.", "",
           "## Features", "", "new features", "", "## Detection", "", "Not run yet.", ""]
    assert keep_sections_not_run(new, old) == [
        "# Benchmarks", "## Memory", "", "| table | 1 |", "", "### Case L", "", "| L row |", "",
        "## Features", "", "new features", "",  # run: the new results replace the old
        "## Detection", "", "Not run yet.", ""]  # never run anywhere: stays so
    # a "## " section that is not run keeps its old "### " subsections
    old = ["## DI", "", "intro", "### NP", "", "| np |", "### real", "", "| real |", "## Next", "", "next", ""]
    new = ["## DI", "", "Not run yet.", "", "## Next", "", "new next", ""]
    assert keep_sections_not_run(new, old) == ["## DI", "", "intro", "### NP", "", "| np |", "### real", "",
                                               "| real |", "## Next", "", "new next", ""]


def test_deepinterpolation_goal_compares_the_best_rows_that_keep_the_amplitude():
    from report import deepinterpolation_goal

    def row(db: float, kept: float) -> dict:
        return {"noise_reduction_db": db, "amplitude_kept": kept, "waveform_correlation": 0.9, "spikes": 10}

    methods = {"Gaussian 2 kHz": row(3.7, 0.82), "Gaussian 3 kHz": row(2.8, 0.9006), "Gaussian 4 kHz": row(2.2, 0.94),
               "Wiener (fitted on the recording)": row(5.2, 0.68), "DeepInterpolation, a": row(6.5, 0.89),
               "DeepInterpolation, b": row(5.9, 0.91)}
    met = deepinterpolation_goal({"methods": methods})
    # the rows that lose amplitude (Gaussian 2 kHz, Wiener, a) are not compared
    assert met.endswith("DeepInterpolation, b, 5.90 dB, against Gaussian 3 kHz, 2.80 dB: +3.10 dB, met.")
    methods["Gaussian 3 kHz"] = row(3.0, 0.9)
    assert deepinterpolation_goal({"methods": methods}).endswith(": +2.90 dB, **not met**.")
    del methods["DeepInterpolation, b"]
    assert deepinterpolation_goal({"methods": methods}).endswith("**not met**: no DeepInterpolation row keeps that "
                                                                 "much.")


def test_the_denoising_benchmark_names_a_model_file_by_its_card(tmp_path):
    import json

    from deepinterpolation_quality import model_label

    (tmp_path / "weights.safetensors").write_bytes(b"")
    (tmp_path / "card.json").write_text(json.dumps({"id": "deepinterpolation-unet-np1", "version": "0.1.0"}))
    assert model_label(str(tmp_path / "weights.safetensors")) == "deepinterpolation-unet-np1@0.1.0"
    assert model_label("deepinterpolation-np1@1.1.0") == "deepinterpolation-np1@1.1.0"  # catalog ids stay as given

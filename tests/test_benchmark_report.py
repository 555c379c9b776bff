"""The benchmark report's summary over cases: dlsort against the best peer, and the units it misses."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from report import scoreboard_section  # noqa: E402


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

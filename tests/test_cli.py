"""The ``dlsort`` command: sort, demo, and one-line errors with a non-zero exit code."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import folder_of

from dlsort.cli import main


def test_sort_writes_a_sorter_folder(tiny_recording, tmp_path, capsys):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"detect_threshold": 5.5, "progress_bar": False}))
    code = main(
        [
            "sort",
            str(folder_of(tiny_recording)),
            "-o",
            str(tmp_path / "out"),
            "--params",
            str(params),
            "--n-jobs",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert "units written to" in capsys.readouterr().out
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["parameters"]["detect_threshold"] == 5.5
    assert provenance["device"] == "cpu"


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda rec, tmp: ["sort", str(tmp / "missing"), "-o", str(tmp / "o")], "recording not found"),
        (
            lambda rec, tmp: ["sort", str(folder_of(rec)), "-o", str(tmp / "o"), "--params", str(tmp / "bad.json")],
            "unknown dlsort parameter(s) ['bogus']",
        ),
        (lambda rec, tmp: ["sort", str(tmp), "-o", str(tmp / "o")], "cannot open"),
        (lambda rec, tmp: ["demo", "--duration", "1"], "--duration >= 5"),
        (lambda rec, tmp: ["sort", folder_of(rec), "-o", str(tmp)], "exists; choose another or pass --overwrite"),
        (
            lambda rec, tmp: ["sort", str(folder_of(rec)), "-o", str(tmp / "o"), "--params", str(tmp / "model.json")],
            "no model 'no-such-denoiser'",
        ),
    ],
)
def test_errors_are_one_line(tiny_recording, tmp_path, capsys, make_args, message):
    (tmp_path / "bad.json").write_text(json.dumps({"bogus": 1}))
    (tmp_path / "model.json").write_text(json.dumps({"denoising_model": "no-such-denoiser"}))
    code = main(make_args(tiny_recording, tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("dlsort: error:")
    assert message in err
    assert not (tmp_path / "o").exists()


def test_bad_parameter_keeps_an_existing_output_folder(tiny_recording, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous results")
    (tmp_path / "bad.json").write_text(json.dumps({"detect_threshold": -1}))
    code = main(
        ["sort", str(folder_of(tiny_recording)), "-o", str(out), "--params", str(tmp_path / "bad.json"), "--overwrite"]
    )
    assert code == 2
    assert (out / "keep.txt").read_text() == "previous results"


def test_demo_command_prints_accuracy(tmp_path):
    executable = shutil.which("dlsort")
    command = [executable] if executable else [sys.executable, "-m", "dlsort.cli"]
    done = subprocess.run(
        command + ["demo", "--duration", "10", "--channels", "12", "--n-jobs", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "well-detected units (accuracy >= 0.8):" in done.stdout
    assert "mean accuracy" in done.stdout and "precision" in done.stdout and "recall" in done.stdout

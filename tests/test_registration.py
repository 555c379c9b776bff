"""Registration with SpikeInterface in real subprocesses, through the wheel's ``dlsort.pth`` hook.

These tests need dlsort installed as a wheel (``pip install .``), as the README says.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import folder_of

pytestmark = pytest.mark.skipif(
    not any((__import__("pathlib").Path(p) / "dlsort.pth").exists() for p in sys.path if p),
    reason="dlsort.pth not found on sys.path: install the wheel with `pip install .`",
)


def python(code: str, cwd, timeout: float = 600, env: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter with ``env`` added; return stdout (fail with stderr on error)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_hook_imports_nothing_heavy_and_is_fast(tmp_path):
    loaded = json.loads(
        python(
            "import sys, json; print(json.dumps([m for m in ('dlsort_hook', 'dlsort', 'spikeinterface', 'torch') "
            "if m in sys.modules]))",
            tmp_path,
        )
    )
    assert loaded == ["dlsort_hook"]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, cwd=tmp_path
    )
    line = next(line for line in done.stderr.splitlines() if line.rstrip().endswith("dlsort_hook"))
    cumulative_us = int(re.split(r"\s*\|\s*", line.split(":", 1)[1].strip())[1])
    assert cumulative_us < 20_000


@pytest.fixture(scope="module")
def sorted_in_fresh_process(tiny_recording, tmp_path_factory):
    """Sort the tiny recording in a fresh interpreter that never imports dlsort itself."""
    folder = tmp_path_factory.mktemp("fresh") / "out"
    out = python(
        f"""
        import json
        import spikeinterface.sorters as ss
        from spikeinterface import load

        cls = ss.sorter_dict["dlsort"]
        report = dict(
            installed="dlsort" in ss.installed_sorters(),
            available="dlsort" in ss.available_sorters(),
            params_by_name=ss.get_default_sorter_params("dlsort"),
            params_by_class=ss.get_default_sorter_params(cls),
            in_list=ss.sorterlist.sorter_full_list.count(cls),
        )
        import dlsort
        dlsort.register(); dlsort.register()
        report["in_list_after_reregister"] = ss.sorterlist.sorter_full_list.count(cls)
        sorting = ss.run_sorter("dlsort", load({str(folder_of(tiny_recording))!r}), folder={str(folder)!r},
                                n_jobs=1, progress_bar=False)
        report["num_units"] = len(sorting.unit_ids)
        print(json.dumps(report))
    """,
        tmp_path_factory.getbasetemp(),
    )
    return folder, json.loads(out.strip().splitlines()[-1])


def test_fresh_process_sees_and_runs_dlsort(sorted_in_fresh_process):
    from dlsort.params import DEFAULT_PARAMS

    _, report = sorted_in_fresh_process
    assert report["installed"] and report["available"]
    assert report["params_by_name"] == report["params_by_class"] == json.loads(json.dumps(DEFAULT_PARAMS))
    assert report["in_list"] == 1 and report["in_list_after_reregister"] == 1
    assert report["num_units"] > 0


def test_read_sorter_folder_in_a_new_process(sorted_in_fresh_process, tmp_path):
    folder, report = sorted_in_fresh_process
    out = python(
        f"""
        import spikeinterface.sorters as ss
        print(len(ss.read_sorter_folder({str(folder)!r}).unit_ids))
    """,
        tmp_path,
    )
    assert int(out.strip().splitlines()[-1]) == report["num_units"]


def test_run_sorter_jobs_with_loky_workers(tiny_recording, tmp_path):
    script = tmp_path / "jobs.py"
    script.write_text(
        textwrap.dedent(f"""
        import json
        from pathlib import Path
        from spikeinterface import load
        from spikeinterface.sorters import run_sorter_jobs

        if __name__ == "__main__":
            recording = load({str(folder_of(tiny_recording))!r})
            jobs = [dict(sorter_name="dlsort", recording=recording, folder={str(tmp_path)!r} + f"/job{{i}}",
                         n_jobs=1, progress_bar=False) for i in range(2)]
            run_sorter_jobs(jobs, engine="joblib", engine_kwargs=dict(n_jobs=2))
            logs = [json.loads((Path(job["folder"]) / "spikeinterface_log.json").read_text()) for job in jobs]
            print(json.dumps([log["error"] for log in logs]))
    """)
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, False]


def test_container_style_script(tiny_recording, tmp_path):
    """The script SpikeInterface runs inside a container imports only spikeinterface, then run_sorter_local."""
    out = python(
        f"""
        from spikeinterface import load
        from spikeinterface.sorters import run_sorter_local
        recording = load({str(folder_of(tiny_recording))!r})
        sorting = run_sorter_local("dlsort", recording, folder={str(tmp_path / "out")!r}, remove_existing_folder=True,
                                   delete_output_folder=False, verbose=False, raise_error=True, with_output=True,
                                   n_jobs=1, progress_bar=False)
        print(len(sorting.unit_ids))
    """,
        tmp_path,
    )
    assert int(out.strip().splitlines()[-1]) > 0


def test_docker_image_true_finds_the_versioned_image(tmp_path):
    """``run_sorter(..., docker_image=True)`` looks dlsort's image up in SpikeInterface's map, filled by the hook."""
    code = """
        from spikeinterface.sorters import runsorter
        print(runsorter.SORTER_DOCKER_MAP["dlsort"])
    """
    from dlsort import __version__
    from dlsort.containers import IMAGE_REPOSITORY

    flavour = "" if shutil.which("nvidia-smi") else "-cpu"
    assert python(code, tmp_path).strip() == f"{IMAGE_REPOSITORY}:{__version__}{flavour}"
    assert python(code, tmp_path, env={"DLSORT_CONTAINER_IMAGE": "localhost/dlsort:test"}).strip() == \
        "localhost/dlsort:test"

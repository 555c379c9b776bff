"""dlsort in SpikeInterface's container mode: what the host side decides before a container starts."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlsort.sorter import DlsortSorter

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_is_requested_only_when_spikeinterface_can_check_for_it():
    # SpikeInterface's has_nvidia() raises on a host without cuda-python: "auto" must not make it ask.
    assert DlsortSorter.use_gpu({"device": "auto"}) is (importlib.util.find_spec("cuda") is not None)
    assert DlsortSorter.use_gpu({}) is DlsortSorter.use_gpu({"device": "auto"})
    assert DlsortSorter.use_gpu({"device": "cpu"}) is False
    assert DlsortSorter.use_gpu({"device": "cuda"}) is True


@pytest.fixture(scope="module")
def podman_socket(tmp_path_factory):
    """A Docker API served by podman, as SpikeInterface's docker mode talks to it; yields the socket path."""
    if not os.environ.get("DLSORT_TEST_BASE_IMAGE") or shutil.which("podman") is None:
        pytest.skip("no container runtime: run .ci/containers-setup and export DLSORT_TEST_BASE_IMAGE")
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if socket.exists():
            break
        time.sleep(0.1)
    yield socket
    service.terminate()
    service.wait(timeout=30)


@pytest.mark.container
def test_run_sorter_docker_image_true_sorts_inside_the_built_image(podman_socket, accuracy_case, tmp_path,
                                                                  monkeypatch):
    from spikeinterface.comparison import compare_sorter_to_ground_truth
    from spikeinterface.sorters import run_sorter, runsorter

    image = "localhost/dlsort:test"
    build = [str(ROOT / "containers" / "build.sh"), "--engine", "podman", "--tag", image,
             "--base", os.environ["DLSORT_TEST_BASE_IMAGE"], "--python", sys.executable]
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():  # the host's proxy certificates, if any
        build += ["--extra-ca", "/etc/ssl/certs/ca-certificates.crt"]
    subprocess.run(build, check=True, capture_output=True)
    image_python = subprocess.run(["podman", "run", "--rm", image, "python", "-c",
                                   "import platform; print(platform.python_version())"],
                                  check=True, capture_output=True, text=True).stdout.strip()

    monkeypatch.setenv("DOCKER_HOST", f"unix://{podman_socket}")
    monkeypatch.setitem(runsorter.SORTER_DOCKER_MAP, "dlsort", image)
    recording, gt = accuracy_case
    sorting = run_sorter("dlsort", recording, folder=tmp_path / "out", docker_image=True, n_jobs=2,
                         progress_bar=False)
    comparison = compare_sorter_to_ground_truth(gt, sorting, delta_time=0.4)
    assert comparison.count_well_detected_units(0.8) >= 6  # the accuracy floor of tests/test_sorting.py
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["python_version"] == image_python and provenance["device"] == "cpu"

"""dlsort in SpikeInterface's container mode: what the host side decides before a container starts."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket as socketlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gin_server import CATALOG_REPO, FakeGin

from dlsort.denoising import DEFAULT_DENOISER
from dlsort.models import catalog, client
from dlsort.neural_detection import DEFAULT_DETECTOR
from dlsort.sorter import DlsortSorter

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_is_requested_only_when_spikeinterface_can_check_for_it():
    # SpikeInterface's has_nvidia() raises on a host without cuda-python: "auto" must not make it ask.
    assert DlsortSorter.use_gpu({"device": "auto"}) is (importlib.util.find_spec("cuda") is not None)
    assert DlsortSorter.use_gpu({}) is DlsortSorter.use_gpu({"device": "auto"})
    assert DlsortSorter.use_gpu({"device": "cpu"}) is False
    assert DlsortSorter.use_gpu({"device": "cuda"}) is True


@pytest.fixture(scope="module")
def image():
    """The CPU image built from this checkout by containers/build.sh (removed afterwards)."""
    if not os.environ.get("DLSORT_TEST_BASE_IMAGE") or shutil.which("podman") is None:
        pytest.skip("no container runtime: run .ci/containers-setup and export DLSORT_TEST_BASE_IMAGE")
    name = "localhost/dlsort:test"
    build = [str(ROOT / "containers" / "build.sh"), "--engine", "podman", "--tag", name,
             "--base", os.environ["DLSORT_TEST_BASE_IMAGE"], "--python", sys.executable]
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():  # the host's proxy certificates, if any
        build += ["--extra-ca", "/etc/ssl/certs/ca-certificates.crt"]
    subprocess.run(build, check=True, capture_output=True)
    yield name
    subprocess.run(["podman", "rmi", "--force", name], check=True, capture_output=True)


@contextlib.contextmanager
def docker_api(folder: Path, container_env: dict[str, str]):
    """A Docker API served by ``podman system service`` whose containers all get ``container_env``.

    SpikeInterface creates its containers with no environment of ours, so the variables go into a
    containers.conf of this service only (the machine's settings, plus ``env``). Yields the socket.
    """
    system = Path("/etc/containers/containers.conf")
    settings = system.read_text() if system.exists() else ""
    env_line = "env = [" + ", ".join(json.dumps(f"{key}={value}") for key, value in container_env.items()) + "]\n"
    if "[containers]\n" in settings:
        settings = settings.replace("[containers]\n", "[containers]\n" + env_line, 1)
    else:
        settings = "[containers]\n" + env_line + settings
    config = folder / "containers.conf"
    config.write_text(settings)
    socket = folder / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                               env={**os.environ, "CONTAINERS_CONF": str(config)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.1)
        yield socket
    finally:
        service.terminate()
        service.wait(timeout=30)


def publish_detector_copy(gin: FakeGin, model_id: str) -> dict:
    """Publish the shipped default detector's bytes as ``model_id@1.0.0``, marked for images; return its entry."""
    shipped = catalog.find_entry(DEFAULT_DETECTOR)
    path = f"{model_id}/1.0.0/weights.safetensors"
    commit = gin.commit_files(CATALOG_REPO, {path: client.local_path(shipped).read_bytes()}, annexed=(path,))
    entry = {**shipped.record, "id": model_id, "image_default": True,
             "location": {"kind": "gin", "repo": CATALOG_REPO, "commit": commit, "path": path}}
    gin.commit_files(CATALOG_REPO, {"index.json": json.dumps({"schema_version": 1, "models": [entry]}).encode()})
    return entry


def sort_in_container(image: str, socket: Path, accuracy_case, folder: Path, monkeypatch, **params) -> dict:
    """Sort the accuracy case with ``docker_image=True`` through ``socket``; assert its floor; return the provenance."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth
    from spikeinterface.sorters import run_sorter, runsorter

    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    monkeypatch.setitem(runsorter.SORTER_DOCKER_MAP, "dlsort", image)
    recording, gt = accuracy_case
    sorting = run_sorter("dlsort", recording, folder=folder / "out", docker_image=True, n_jobs=2, progress_bar=False,
                         **params)
    comparison = compare_sorter_to_ground_truth(gt, sorting, delta_time=0.4)
    assert comparison.count_well_detected_units(0.8) >= 6  # the accuracy floor of tests/test_sorting.py
    return json.loads((folder / "out" / "provenance.json").read_text())


@pytest.mark.container
def test_docker_image_true_sorts_with_weights_pulled_from_gin_at_start(image, accuracy_case, tmp_path, monkeypatch):
    gin = FakeGin(tmp_path / "gin", host="0.0.0.0").start()  # containers reach the host, not its loopback
    try:
        gin.create_repo(CATALOG_REPO)
        entry = publish_detector_copy(gin, "detector-loopback")
        registry = f"http://host.containers.internal:{gin.port}"
        with docker_api(tmp_path, {"DLSORT_REGISTRY_URL": registry}) as socket:
            provenance = sort_in_container(image, socket, accuracy_case, tmp_path, monkeypatch,
                                           detection_model="detector-loopback@1.0.0")
        weight_gets = [path for path, _ in gin.requests if path.endswith("weights.safetensors")]
    finally:
        gin.stop()
    url = f"{registry}/{CATALOG_REPO}/raw/{entry['location']['commit']}/{entry['location']['path']}"
    startup = provenance["container_startup"]
    assert startup["state"] == "pulled" and startup["models"]["detector-loopback@1.0.0"] == url
    assert startup["models"][DEFAULT_DENOISER] == "embedded"
    detector = next(model for model in provenance["models"] if model["task"] == "detector")
    assert detector == {"id": "detector-loopback@1.0.0", "sha256": entry["sha256"], "task": "detector", "source": url}
    assert len(weight_gets) == 1  # pulled once at start; the sort found it in the cache
    image_python = subprocess.run(["podman", "run", "--rm", "-e", "DLSORT_PULL_AT_START=0", image, "python", "-c",
                                   "import platform; print(platform.python_version())"],
                                  check=True, capture_output=True, text=True).stdout.strip()
    assert provenance["python_version"] == image_python and provenance["device"] == "cpu"


@pytest.mark.container
def test_when_gin_is_down_the_container_sorts_with_the_embedded_weights(image, accuracy_case, tmp_path, monkeypatch):
    with socketlib.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    registry = f"http://host.containers.internal:{port}"
    with docker_api(tmp_path, {"DLSORT_REGISTRY_URL": registry}) as socket:
        provenance = sort_in_container(image, socket, accuracy_case, tmp_path, monkeypatch)
    startup = provenance["container_startup"]
    assert startup["state"] == "fallback" and f"cannot reach {registry}" in startup["reason"]
    assert startup["models"] == {DEFAULT_DENOISER: "embedded", DEFAULT_DETECTOR: "embedded"}
    assert {model["source"] for model in provenance["models"]} == {"embedded"}

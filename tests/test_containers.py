"""dlsort in SpikeInterface's container modes: the GPU request; sorts in the built image (podman, Apptainer)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket as socketlib
import subprocess
from pathlib import Path

import pytest
from container_runtime import apptainer_in_podman, build_image, docker_api
from gin_server import CATALOG_REPO, FakeGin

from dlsort import containers
from dlsort.denoising import DEFAULT_DENOISERS
from dlsort.models import catalog, client
from dlsort.neural_detection import SORTER_DETECTOR
from dlsort.sorter import DlsortSorter


def test_gpu_is_requested_only_when_spikeinterface_can_check_for_it():
    # SpikeInterface's has_nvidia() raises on a host without cuda-python: "auto" must not make it ask.
    assert DlsortSorter.use_gpu({"device": "auto"}) is (importlib.util.find_spec("cuda") is not None)
    assert DlsortSorter.use_gpu({}) is DlsortSorter.use_gpu({"device": "auto"})
    assert DlsortSorter.use_gpu({"device": "cpu"}) is False
    assert DlsortSorter.use_gpu({"device": "cuda"}) is True


def test_the_apptainer_definition_starts_from_this_versions_cuda_image(monkeypatch):
    monkeypatch.delenv("DLSORT_CONTAINER_IMAGE", raising=False)
    definition = (Path(__file__).resolve().parents[1] / "containers" / "apptainer.def").read_text()
    default = re.search(r"^%arguments\n(?:\s+\w+=.*\n)*?\s+FROM=(\S+)$", definition, re.MULTILINE)
    assert default is not None and default.group(1) == containers.default_image(gpu=True)


@pytest.fixture(scope="module")
def image():
    """The CPU image built from this checkout by containers/build.sh (removed afterwards)."""
    if not os.environ.get("DLSORT_TEST_BASE_IMAGE") or shutil.which("podman") is None:
        pytest.skip("no container runtime: run .ci/containers-setup and export DLSORT_TEST_BASE_IMAGE")
    name = "localhost/dlsort:test"
    build_image(name, os.environ["DLSORT_TEST_BASE_IMAGE"])
    yield name
    subprocess.run(["podman", "rmi", "--force", name], check=True, capture_output=True)


def publish_detector_copy(gin: FakeGin, model_id: str) -> dict:
    """Publish the shipped default detector's bytes as ``model_id@1.0.0``, marked for images; return its entry."""
    shipped = catalog.find_entry(SORTER_DETECTOR)
    path = f"{model_id}/1.0.0/weights.safetensors"
    commit = gin.commit_files(CATALOG_REPO, {path: client.local_path(shipped).read_bytes()}, annexed=(path,))
    entry = {**shipped.record, "id": model_id, "image_default": True,
             "location": {"kind": "gin", "repo": CATALOG_REPO, "commit": commit, "path": path}}
    gin.commit_files(CATALOG_REPO, {"index.json": json.dumps({"schema_version": 1, "models": [entry]}).encode()})
    return entry


def sort_and_check(accuracy_case, folder: Path, **container) -> dict:
    """``run_sorter("dlsort", ...)`` on the accuracy case with the container options given; assert its floor.

    Returns the sort's provenance.
    """
    from spikeinterface.comparison import compare_sorter_to_ground_truth
    from spikeinterface.sorters import run_sorter

    recording, gt = accuracy_case
    sorting = run_sorter("dlsort", recording, folder=folder / "out", n_jobs=2, progress_bar=False, **container)
    comparison = compare_sorter_to_ground_truth(gt, sorting, delta_time=0.4)
    assert comparison.count_well_detected_units(0.8) >= 6  # the accuracy floor of tests/test_sorting.py
    return json.loads((folder / "out" / "provenance.json").read_text())


def assert_detector_pulled_at_start(provenance: dict, entry: dict, registry: str) -> None:
    """The start-up pulled the published detector ``entry`` from ``registry`` and the sort used that file."""
    url = f"{registry}/{CATALOG_REPO}/raw/{entry['location']['commit']}/{entry['location']['path']}"
    ref = f"{entry['id']}@{entry['version']}"
    startup = provenance["container_startup"]
    assert startup["state"] == "pulled" and startup["models"][ref] == url
    detector = next(model for model in provenance["models"] if model["task"] == "detector")
    assert detector == {"id": ref, "sha256": entry["sha256"], "task": "detector", "source": url}


def use_docker_api(monkeypatch, socket: Path, image: str) -> None:
    """Point SpikeInterface's docker mode at ``socket`` and ``docker_image=True`` at ``image``."""
    from spikeinterface.sorters import runsorter

    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    monkeypatch.setitem(runsorter.SORTER_DOCKER_MAP, "dlsort", image)


@pytest.mark.container
def test_docker_image_true_sorts_with_weights_pulled_from_gin_at_start(image, accuracy_case, tmp_path, monkeypatch):
    gin = FakeGin(tmp_path / "gin", host="0.0.0.0").start()  # containers reach the host, not its loopback
    try:
        gin.create_repo(CATALOG_REPO)
        entry = publish_detector_copy(gin, "detector-loopback")
        registry = f"http://host.containers.internal:{gin.port}"
        with docker_api(tmp_path, {"DLSORT_REGISTRY_URL": registry}) as socket:
            use_docker_api(monkeypatch, socket, image)
            provenance = sort_and_check(accuracy_case, tmp_path, docker_image=True,
                                        detection_model="detector-loopback@1.0.0")
        weight_gets = [path for path, _ in gin.requests if path.endswith("weights.safetensors")]
    finally:
        gin.stop()
    assert_detector_pulled_at_start(provenance, entry, registry)
    assert provenance["container_startup"]["models"][DEFAULT_DENOISERS["neural"][0]] == "embedded"
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
        use_docker_api(monkeypatch, socket, image)
        provenance = sort_and_check(accuracy_case, tmp_path, docker_image=True)
    startup = provenance["container_startup"]
    assert startup["state"] == "fallback" and f"cannot reach {registry}" in startup["reason"]
    assert startup["models"] == {DEFAULT_DENOISERS["neural"][0]: "embedded", SORTER_DETECTOR: "embedded"}
    assert {model["source"] for model in provenance["models"]} == {"embedded"}


@pytest.fixture(scope="module")
def apptainer(image, tmp_path_factory):
    """A SIF of the image and a host ``singularity`` command running Apptainer in a privileged container."""
    runtime_image = os.environ.get("DLSORT_TEST_APPTAINER_IMAGE")
    if not runtime_image:
        pytest.skip("no Apptainer image: run .ci/containers-setup and export DLSORT_TEST_APPTAINER_IMAGE")
    with apptainer_in_podman(runtime_image, image, tmp_path_factory.getbasetemp(),
                             tmp_path_factory.mktemp("apptainer")) as (sif, wrappers):
        yield sif, wrappers


@pytest.mark.container
@pytest.mark.slow
def test_singularity_image_sorts_with_apptainer_and_pulls_at_instance_start(apptainer, accuracy_case, tmp_path,
                                                                             monkeypatch):
    sif, wrappers = apptainer
    gin = FakeGin(tmp_path / "gin").start()  # the Apptainer container shares the host's network
    try:
        gin.create_repo(CATALOG_REPO)
        entry = publish_detector_copy(gin, "detector-loopback")
        monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("APPTAINERENV_DLSORT_REGISTRY_URL", gin.url)
        provenance = sort_and_check(accuracy_case, tmp_path, singularity_image=str(sif),
                                    detection_model="detector-loopback@1.0.0")
    finally:
        gin.stop()
    assert_detector_pulled_at_start(provenance, entry, gin.url)

"""A container's start-up pull (``dlsort.models.startup``) against a loopback GIN server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from gin_server import publish
from test_models import read_only_view

from dlsort.denoising import DEFAULT_DENOISERS
from dlsort.models import catalog, startup
from dlsort.neural_detection import SORTER_DETECTOR

SHIPPED_IMAGE_MODELS = {SORTER_DETECTOR, DEFAULT_DENOISERS["neural"][0]}


@pytest.fixture
def status_dir(tmp_path, monkeypatch):
    folder = tmp_path / "status"
    folder.mkdir()
    monkeypatch.setenv("DLSORT_STARTUP_DIR", str(folder))
    monkeypatch.delenv("DLSORT_PULL_AT_START", raising=False)
    monkeypatch.delenv("DLSORT_EXTRA_MODELS", raising=False)
    return folder


def run_startup(capsys) -> tuple[dict, str]:
    """Run the start-up as the image does; return the status a sort reads and the line it printed."""
    assert startup.main() == 0
    return startup.wait_for_startup(timeout_s=0), capsys.readouterr().err.strip()


def test_the_sorter_defaults_are_image_models_of_the_shipped_catalog(monkeypatch, tmp_path):
    monkeypatch.setenv("DLSORT_CACHE", str(tmp_path / "empty-cache"))
    marked = {entry.ref for entry in catalog.known_models() if entry.record.get("image_default")}
    assert marked == SHIPPED_IMAGE_MODELS


def test_startup_pulls_the_image_models_and_extra_ones(gin, tmp_path, status_dir, monkeypatch, capsys):
    entries = publish(gin, tmp_path, [("det", "1.0.0", ["any"]), ("det-big", "2.0.0", ["any"])],
                      image_defaults=("det@1.0.0",))
    monkeypatch.setenv("DLSORT_EXTRA_MODELS", "det-big@2.0.0")
    status, line = run_startup(capsys)
    assert status["state"] == "pulled" and status["seconds"] > 0
    for ref in ("det@1.0.0", "det-big@2.0.0"):
        assert status["models"][ref].startswith(f"{gin.url}/dlsort/models/raw/")
        name = f"{ref.replace('@', '-')}-{entries[ref][0]['sha256'][:16]}.safetensors"
        assert (tmp_path / "cache" / "weights" / name).is_file()
    assert {ref for ref, source in status["models"].items() if source == "embedded"} == SHIPPED_IMAGE_MODELS
    assert line.startswith(f"dlsort: image models ready from {gin.url}:") and "det-big@2.0.0" in line
    assert (status_dir / f"dlsort-startup-{os.getuid()}.json").is_file()


def test_server_down_falls_back_to_the_embedded_models_in_one_line(gin, tmp_path, status_dir, capsys):
    publish(gin, tmp_path, [("det", "1.0.0", ["any"])], image_defaults=("det@1.0.0",))
    gin.stop()
    status, line = run_startup(capsys)
    assert status["state"] == "fallback" and f"cannot reach {gin.url}" in status["reason"]
    assert set(status["models"]) == SHIPPED_IMAGE_MODELS
    assert len(line.splitlines()) == 1 and "using the models embedded in the image" in line


def test_a_read_only_cache_falls_back_and_names_the_fix(gin, tmp_path, status_dir, monkeypatch, capsys):
    publish(gin, tmp_path, [("det", "1.0.0", ["any"])], image_defaults=("det@1.0.0",))
    cache = tmp_path / "cache"
    cache.mkdir()
    with read_only_view(cache, tmp_path / "ro") as view:
        monkeypatch.setenv("DLSORT_CACHE", str(view))
        status, line = run_startup(capsys)
    assert status["state"] == "fallback" and "set DLSORT_CACHE to a writable folder" in line


def test_a_published_catalog_that_contradicts_the_shipped_one_is_dropped(gin, tmp_path, status_dir, capsys):
    shipped = catalog.find_entry(SORTER_DETECTOR).record
    forged = {**shipped, "sha256": "0" * 64, "location": {"kind": "gin", "repo": "dlsort/models",
                                                          "commit": "0" * 40, "path": "x.safetensors"}}
    gin.commit_files("dlsort/models", {"index.json": json.dumps({"schema_version": 1, "models": [forged]}).encode()})
    status, _ = run_startup(capsys)
    assert status["state"] == "fallback" and "different checksums" in status["reason"]
    assert catalog.find_entry(SORTER_DETECTOR).location["kind"] == "embedded"  # the sorter still resolves it


def test_pulling_can_be_turned_off(gin, status_dir, monkeypatch, capsys):
    monkeypatch.setenv("DLSORT_PULL_AT_START", "0")
    status, line = run_startup(capsys)
    assert status["state"] == "skipped" and "skipped" in line
    assert gin.requests == []


def test_an_unknown_extra_model_is_named(gin, tmp_path, status_dir, monkeypatch, capsys):
    publish(gin, tmp_path, [("det", "1.0.0", ["any"])])
    monkeypatch.setenv("DLSORT_EXTRA_MODELS", "no-such-model")
    status, _ = run_startup(capsys)
    assert status["state"] == "fallback" and "no-such-model" in status["reason"]
    assert not status["reason"].startswith("start-up pull failed")  # named by the catalog, not a crash


def test_a_sort_waits_for_a_running_startup(status_dir):
    path = startup.status_path()
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path.write_text(json.dumps({"state": "running", "pid": worker.pid}))
        finished = {"state": "pulled", "registry": "http://gin.invalid", "models": {}}

        def finish() -> None:
            time.sleep(0.6)
            path.write_text(json.dumps(finished))

        writer = threading.Thread(target=finish)
        started = time.monotonic()
        writer.start()
        assert startup.wait_for_startup(timeout_s=30) == finished
        assert time.monotonic() - started >= 0.5
        writer.join()
        path.write_text(json.dumps({"state": "running", "pid": worker.pid}))
        assert startup.wait_for_startup(timeout_s=0.3)["state"] == "running"  # gave up waiting, says so
    finally:
        worker.kill()
        worker.wait()
    assert startup.wait_for_startup()["state"] == "interrupted"  # the start-up process died mid-way


def test_outside_an_image_no_sort_waits(monkeypatch):
    monkeypatch.delenv("DLSORT_STARTUP_DIR", raising=False)
    assert startup.status_path() is None and startup.wait_for_startup() is None

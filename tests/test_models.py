"""The model registry client against a loopback GIN server (real git + git-annex repositories)."""

from __future__ import annotations

import contextlib
import copy
import json
import multiprocessing
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from gin_server import CATALOG_REPO, FakeGin, git, make_card, make_weights, publish

import dlsort.models as models
from dlsort.errors import DlsortInputError
from dlsort.models import catalog, download


@pytest.fixture
def published(gin, tmp_path):
    entries = publish(gin, tmp_path, [("det", "1.0.0", ["any"]), ("det", "1.1.0", ["any"]),
                                      ("det-np1", "1.0.0", ["neuropixels-1.0"])])
    models.update_catalog()
    return entries


def raw_gets(gin: FakeGin, suffix: str = "weights.safetensors") -> list[dict]:
    return [headers for path, headers in gin.requests if "/raw/" in path and path.endswith(suffix)]


def test_schema_names_the_offending_field():
    good = {"schema_version": 1, "models": []}
    assert catalog.validate_catalog(good) is good
    entry = {**make_card("m", "1.0.0", ["any"]), "size_bytes": 10, "sha256": "0" * 64,
             "location": {"kind": "embedded", "path": "m.safetensors"}}
    catalog.validate_catalog({"schema_version": 1, "models": [entry]})
    for broken, field in [
        ({k: v for k, v in entry.items() if k != "sha256"}, "sha256"),
        ({**entry, "task": "sorting"}, "models/0/task"),
        ({**entry, "location": {"kind": "gin", "repo": "a/b", "commit": "abc123", "path": "x"}}, "location"),
        ({**entry, "geometry": {"probe_families": ["neuropixels-9"]}}, "probe_families"),
    ]:
        with pytest.raises(models.CatalogError, match=field):
            catalog.validate_catalog({"schema_version": 1, "models": [broken]})
    with pytest.raises(models.CatalogError, match=r"m@1\.0\.0"):
        catalog.validate_catalog({"schema_version": 1, "models": [entry, copy.deepcopy(entry)]})


def test_shipped_catalog_is_valid_and_is_what_the_package_reads(monkeypatch, tmp_path):
    monkeypatch.setenv("DLSORT_CACHE", str(tmp_path))
    shipped = catalog.PACKAGED_CATALOG if catalog.PACKAGED_CATALOG.exists() else catalog.SOURCE_CATALOG
    assert len(models.known_models()) == len(json.loads(shipped.read_text())["models"])


def _published(entries) -> list[str]:
    """References of the entries that come from the loopback GIN catalog (not the models shipped with dlsort)."""
    return [entry.ref for entry in entries if entry.source == CATALOG_REPO]


def test_update_then_search_and_recommend(published, accuracy_case):
    assert _published(models.search(task="detector")) == ["det@1.1.0", "det@1.0.0", "det-np1@1.0.0"]
    assert "detector-generic@1.0.0" in [entry.ref for entry in models.search(task="detector")]  # shipped
    assert [entry.ref for entry in models.search(task="autoencoder")] == ["autoencoder-generic@1.1.0",
                                                                         "autoencoder-generic@1.0.0"]  # shipped only
    assert _published(models.search(task="detector", probe="linear")) == ["det@1.1.0", "det@1.0.0"]
    assert "denoiser-generic@1.0.0" in [entry.ref for entry in models.search(probe="linear")]  # shipped, any probe
    assert models.search(task="detector", sampling_frequency=10_000.0) == []
    with pytest.raises(DlsortInputError, match="task='sorting'"):
        models.search(task="sorting")
    recording, _ = accuracy_case  # staggered 3-column probe: a polytrode, so the NP1 model does not fit
    assert _published(models.recommend(recording, "detector")) == ["det@1.1.0", "det@1.0.0"]
    from spikeinterface.core import NumpyRecording

    from dlsort.groundtruth import make_probe

    np1 = NumpyRecording([np.zeros((100, 64), "float32")], 30_000.0)
    np1.set_probe(make_probe("np1", 64), in_place=True)
    assert _published(models.recommend(np1, "detector")) == ["det-np1@1.0.0", "det@1.1.0", "det@1.0.0"]


def test_an_invalid_published_catalog_is_refused_and_the_cached_one_kept(published, gin, tmp_path):
    gin.commit_files(CATALOG_REPO, {"index.json": b'{"schema_version": 1, "models": [{"id": "x"}]}'})
    with pytest.raises(models.CatalogError, match="is not a dlsort catalog"):
        models.update_catalog()
    assert len([entry for entry in models.known_models() if entry.source == CATALOG_REPO]) == 3
    catalogs = tmp_path / "cache" / "catalogs"
    assert list(catalogs.iterdir()) == [catalogs / "dlsort__models.json"]


def test_fetch_verifies_caches_and_loads(published, gin):
    model_file = models.fetch("det", progress_bar=False)
    assert model_file.id == "det@1.1.0"
    assert download.sha256_of(model_file.path) == published["det@1.1.0"][0]["sha256"]
    assert models.fetch("det@1.1.0", progress_bar=False).path == model_file.path
    assert len(raw_gets(gin)) == 1  # the second fetch is a cache hit
    tensors, card, loaded = models.load("det", task="detector")
    torch.testing.assert_close(tensors["layer.weight"], published["det@1.1.0"][1]["layer.weight"])
    entry = published["det@1.1.0"][0]
    assert card["version"] == "1.1.0" and loaded.provenance() == {
        "id": "det@1.1.0", "sha256": published["det@1.1.0"][0]["sha256"], "task": "detector",
        "source": f"{gin.url}/dlsort/models/raw/{entry['location']['commit']}/det/1.1.0/weights.safetensors"}
    assert models.verify() == {"denoiser-generic@1.0.0": True, "detector-generic@1.0.0": True,
                               "detector-generic@1.1.0": True, "detector-generic@1.2.0": True,
                               "deepinterpolation-np1@1.0.0": True, "deepinterpolation-np1@1.1.0": True,
                               "deepinterpolation-np1@2.0.0": True,
                               "deepinterpolation-generic@1.0.0": True, "deepinterpolation-generic@1.1.0": True,
                               "autoencoder-generic@1.0.0": True,
                               "autoencoder-generic@1.1.0": True,
                               "det@1.1.0": True}
    with pytest.raises(DlsortInputError, match="not a denoiser model"):
        models.load("det", task="denoiser")
    with pytest.raises(DlsortInputError, match="no model 'det@9.0.0'.*dlsort models update"):
        models.fetch("det@9.0.0")


def test_checksum_mismatch_leaves_nothing_in_the_cache(published, gin, tmp_path):
    gin.corrupt = True
    with pytest.raises(models.ChecksumError, match="discarded"):
        models.fetch("det", progress_bar=False)
    assert list((tmp_path / "cache" / "weights").iterdir()) == []


def test_tampered_cache_file_is_detected_and_replaced(published, gin):
    path = models.fetch("det", progress_bar=False).path
    path.write_bytes(b"tampered" + path.read_bytes()[8:])
    assert models.verify("det") == {"det@1.1.0": False}
    assert download.sha256_of(models.fetch("det", progress_bar=False).path) == published["det@1.1.0"][0]["sha256"]
    assert len(raw_gets(gin)) == 2


def test_interrupted_download_resumes_with_range(published, gin):
    gin.truncate_next = 300_000
    model_file = models.fetch("det", progress_bar=False)
    assert download.sha256_of(model_file.path) == published["det@1.1.0"][0]["sha256"]
    first, retry = (headers.get("Range") for headers in raw_gets(gin))
    assert first is None
    assert 300_000 - download.STREAM_BYTES < int(retry.removeprefix("bytes=").rstrip("-")) <= 300_000


def test_partial_file_from_an_earlier_process_is_resumed(published, gin):
    entry = catalog.find_entry("det")
    full = models.fetch("det", progress_bar=False).path
    content = full.read_bytes()
    full.unlink()
    Path(str(full) + ".part").write_bytes(content[:100_000])
    assert models.fetch("det", progress_bar=False).path.read_bytes() == content
    assert raw_gets(gin)[-1].get("Range") == "bytes=100000-" and entry.size_bytes == len(content)


def test_a_partial_file_of_other_content_is_discarded_and_fetched_again(published, gin):
    path = models.fetch("det", progress_bar=False).path
    content = path.read_bytes()
    path.unlink()
    Path(str(path) + ".part").write_bytes(b"not the same bytes" * 1000)
    assert models.fetch("det", progress_bar=False).path.read_bytes() == content
    assert [headers.get("Range") for headers in raw_gets(gin)][-2:] == ["bytes=18000-", None]


def test_server_down_names_the_url_and_offline_mode(published, gin, monkeypatch):
    gin.down = True
    with pytest.raises(models.ModelUnavailableError, match=rf"{gin.url}/dlsort/models/raw/.*DLSORT_OFFLINE=1"):
        models.fetch("det", progress_bar=False)
    assert len(raw_gets(gin)) == download.RETRIES
    monkeypatch.setenv("DLSORT_REGISTRY_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(models.ModelUnavailableError, match=r"cannot download http://127\.0\.0\.1:9/.*DLSORT_OFFLINE"):
        models.fetch("det", progress_bar=False)


def test_offline_mode_uses_only_the_cache(published, gin, monkeypatch):
    monkeypatch.setenv("DLSORT_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailableError, match="not in the cache.*DLSORT_OFFLINE"):
        models.fetch("det", progress_bar=False)
    with pytest.raises(models.ModelUnavailableError, match="DLSORT_OFFLINE"):
        models.update_catalog()
    monkeypatch.delenv("DLSORT_OFFLINE")
    models.fetch("det", progress_bar=False)
    monkeypatch.setenv("DLSORT_OFFLINE", "1")
    count = len(gin.requests)
    assert models.fetch("det", progress_bar=False).id == "det@1.1.0"
    assert len(gin.requests) == count


def _fetch_in_child(queue) -> None:
    queue.put(str(models.fetch("det", progress_bar=False).path))


def test_two_processes_fetch_the_same_model_once(published, gin):
    context = multiprocessing.get_context("spawn")  # children read the environment set by the fixtures
    queue = context.Queue()
    children = [context.Process(target=_fetch_in_child, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    paths = {queue.get(timeout=5) for _ in children}
    assert all(child.exitcode == 0 for child in children)
    assert len(paths) == 1
    assert download.sha256_of(Path(paths.pop())) == published["det@1.1.0"][0]["sha256"]
    assert len(raw_gets(gin)) == 1


@contextlib.contextmanager
def read_only_view(folder: Path, mountpoint: Path):
    """``folder`` seen read-only: a read-only bind mount as root (root ignores permissions), else chmod."""
    if os.geteuid() != 0:
        paths = [folder, *folder.rglob("*")]
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)
        return
    mountpoint.mkdir()
    try:
        subprocess.run(["mount", "--bind", str(folder), str(mountpoint)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot make a read-only bind mount here: {error}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mountpoint)], check=True, capture_output=True)
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_read_only_cache(published, gin, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with read_only_view(cache, tmp_path / "ro-1") as view:
        monkeypatch.setenv("DLSORT_CACHE", str(view))
        with pytest.raises(models.ModelUnavailableError, match="set DLSORT_CACHE to a writable folder"):
            models.fetch("det", progress_bar=False)
    # A cache filled by someone else (e.g. a container start-up script) is used read-only.
    monkeypatch.setenv("DLSORT_CACHE", str(cache))
    filled = models.fetch("det", progress_bar=False).path
    with read_only_view(cache, tmp_path / "ro-2") as view:
        monkeypatch.setenv("DLSORT_CACHE", str(view))
        reused = models.fetch("det", progress_bar=False).path
        assert reused == view / filled.relative_to(cache)
        assert reused.read_bytes() == filled.read_bytes()


def test_find_catalogs_lists_only_repositories_with_a_catalog(published, gin):
    gin.create_repo("lab/dlsort-notes", description="notes, no catalog")
    gin.commit_files("lab/dlsort-notes", {"README.md": b"notes"})
    gin.create_repo("other/spike-models", description="more dlsort models")
    gin.commit_files("other/spike-models", {"index.json": json.dumps({"schema_version": 1, "models": []}).encode()})
    found = models.find_catalogs("dlsort")
    assert [(hit["repo"], hit["num_models"]) for hit in found] == [("dlsort/models", 3), ("other/spike-models", 0)]


def test_token_is_sent_when_set(published, gin, monkeypatch):
    import requests

    contents = f"{gin.url}/api/v1/repos/{CATALOG_REPO}/contents/index.json"
    assert requests.get(contents, timeout=5).status_code == 401
    monkeypatch.setenv("GIN_TOKEN", gin.token)
    assert requests.get(contents, headers=models.settings.auth_headers(), timeout=5).status_code == 200
    models.fetch("det", progress_bar=False)
    assert raw_gets(gin)[-1].get("Authorization") == f"token {gin.token}"


def test_local_weight_files(tmp_path):
    weights = tmp_path / "mine.safetensors"
    make_weights(weights, seed=3)
    with pytest.raises(DlsortInputError, match="no model card beside"):
        models.resolve_model(weights, task="detector")
    (tmp_path / "card.json").write_text(json.dumps(make_card("mine", "0.1.0", ["any"])))
    model_file = models.resolve_model(str(weights), task="detector")
    assert model_file.id == str(weights.resolve()) and model_file.sha256 == download.sha256_of(weights)
    pickled = tmp_path / "mine.pt"
    pickled.write_bytes(b"not safetensors")
    with pytest.raises(DlsortInputError, match="never loads pickled weights"):
        models.resolve_model(pickled, task="detector")
    (tmp_path / "card.json").write_text(json.dumps({**make_card("mine", "0.1.0", ["any"]), "task": "x"}))
    with pytest.raises(models.CatalogError, match="task"):
        models.resolve_model(weights, task="detector")


def test_a_corrupt_weight_file_is_a_clear_error(tmp_path):
    weights = tmp_path / "broken.safetensors"
    weights.write_bytes(b"\x00" * 64)
    (tmp_path / "broken.json").write_text(json.dumps(make_card("broken", "0.1.0", ["any"])))
    with pytest.raises(models.ModelUnavailableError, match="not a readable safetensors file"):
        models.load(weights, task="detector")


def test_publish_to_a_git_annex_repository_then_fetch(gin, tmp_path):
    from dlsort.models.publish import publish

    served = gin.create_repo("lab/catalog", description="a lab's dlsort catalog", bare=True)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(served), str(clone))
    git(clone, "annex", "init", "-q", "publisher")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    tensors = make_weights(model_dir / "weights.safetensors", seed=7)
    (model_dir / "card.json").write_text(json.dumps(make_card("lab-det", "0.1.0", ["linear"])))

    entry = publish(model_dir, "lab/catalog", clone)
    assert entry["location"]["path"] == "detector/lab-det/0.1.0/weights.safetensors"
    assert git(served, "rev-parse", "master") != entry["location"]["commit"]  # the catalog commit follows it
    models.update_catalog("lab/catalog")
    loaded, card, model_file = models.load("lab-det@0.1.0", task="detector")
    torch.testing.assert_close(loaded["layer.weight"], tensors["layer.weight"])
    assert model_file.sha256 == entry["sha256"] == download.sha256_of(model_dir / "weights.safetensors")

    with pytest.raises(DlsortInputError, match="already in .*bump the version"):
        publish(model_dir, "lab/catalog", clone)
    (model_dir / "card.json").write_text(json.dumps({**make_card("lab-det", "0.2.0", ["linear"]), "licence": 3}))
    with pytest.raises(models.CatalogError, match="licence"):
        publish(model_dir, "lab/catalog", clone)
    (model_dir / "weights.safetensors").write_bytes(b"garbage")
    (model_dir / "card.json").write_text(json.dumps(make_card("lab-det", "0.2.0", ["linear"])))
    with pytest.raises(DlsortInputError, match="not a readable safetensors file"):
        publish(model_dir, "lab/catalog", clone)


def test_models_command_line(published, gin, tmp_path, capsys):
    from dlsort.cli import main

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"det-np1@1\.0\.0 +detector +neuropixels-1\.0 +30000 +1\.0 MB +dlsort/models +no", listing)
    assert re.search(r"denoiser-generic@1\.0\.0 +denoiser +any .* embedded +yes", listing)
    assert main(["models", "search", "--probe", "linear"]) == 0
    assert "det-np1" not in capsys.readouterr().out
    assert main(["models", "pull", "det", "--quiet"]) == 0
    path = Path(capsys.readouterr().out.split(": ", 1)[1].strip())
    assert download.sha256_of(path) == published["det@1.1.0"][0]["sha256"]
    assert main(["models", "verify"]) == 0
    path.write_bytes(b"x" + path.read_bytes()[1:])
    assert main(["models", "verify"]) == 1
    assert "det@1.1.0: CHECKSUM MISMATCH" in capsys.readouterr().out
    assert main(["models", "info", "nope"]) == 2
    assert capsys.readouterr().err.startswith("dlsort: error: no model 'nope'")
    assert main(["models", "catalogs"]) == 0
    assert capsys.readouterr().out.startswith("dlsort/models (master): 3 models")
    assert main(["models", "cache-clear"]) == 0
    assert not (tmp_path / "cache").exists()


@pytest.mark.network
def test_real_gin_search_answers(monkeypatch):
    import requests

    monkeypatch.delenv("DLSORT_REGISTRY_URL", raising=False)
    monkeypatch.delenv("DLSORT_OFFLINE", raising=False)
    try:
        requests.get("https://gin.g-node.org/api/v1/repos/search", params={"q": "x", "limit": 1}, timeout=5)
    except requests.RequestException as error:
        pytest.skip(f"gin.g-node.org cannot be reached from here: {error}")
    assert isinstance(models.find_catalogs("dlsort"), list)

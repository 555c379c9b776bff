"""Shared fixtures: small seeded ground-truth recordings saved once per test session; a loopback GIN server."""

from __future__ import annotations

import numpy as np
import pytest
from gin_server import CATALOG_REPO, FakeGin

from dlsort.groundtruth import GroundTruthCase, generate_case

JOB = {"n_jobs": 1, "progress_bar": False}


@pytest.fixture(scope="session")
def accuracy_case(tmp_path_factory):
    """32-channel, 30 s, 8-unit seeded case of the accuracy floor: (saved recording, ground truth)."""
    case = GroundTruthCase("floor", "accuracy floor", "staggered", 32, 8, 30.0, seed=0)
    recording, gt = generate_case(case)
    folder = tmp_path_factory.mktemp("accuracy_case")
    return recording.save(folder=folder / "recording", **JOB), gt


@pytest.fixture(scope="session")
def tiny_recording(tmp_path_factory):
    """8-channel, 10 s, 4-unit saved recording for fast end-to-end and error tests."""
    case = GroundTruthCase("tiny", "tiny", "staggered", 8, 4, 10.0, seed=1)
    recording, _ = generate_case(case)
    folder = tmp_path_factory.mktemp("tiny")
    return recording.save(folder=folder / "recording", **JOB)


@pytest.fixture
def gin(tmp_path, monkeypatch):
    """A loopback GIN server holding an empty catalog repository; dlsort's registry settings point at it."""
    from dlsort.models import download

    server = FakeGin(tmp_path / "gin").start()
    server.create_repo(CATALOG_REPO, description="dlsort model catalog")
    monkeypatch.setenv("DLSORT_REGISTRY_URL", server.url)
    monkeypatch.setenv("DLSORT_CATALOG_REPO", CATALOG_REPO)
    monkeypatch.setenv("DLSORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DLSORT_OFFLINE", raising=False)
    monkeypatch.delenv("GIN_TOKEN", raising=False)
    monkeypatch.setattr(download, "BACKOFF_S", 0.0)
    yield server
    server.stop()


def saved_recording(folder, traces: np.ndarray, locations: np.ndarray | None = None, fs: float = 30_000.0):
    """``traces`` (samples x channels) saved as a binary recording folder, with channel locations when given."""
    from spikeinterface.core import NumpyRecording

    recording = NumpyRecording([traces.astype("float32")], sampling_frequency=fs)
    if locations is not None:
        recording.set_dummy_probe_from_locations(locations)
    return recording.save(folder=folder / "recording", **JOB)


def folder_of(recording) -> str:
    """Folder of a recording saved with ``recording.save(folder=...)``."""
    return str(recording._kwargs["folder_path"])

"""Every kind of bad input gets a clear error that names the problem, before any work is done."""

import numpy as np
import pytest
import spikeinterface.sorters as ss
from conftest import saved_recording

import dlsort  # noqa: F401
from dlsort.errors import DlsortInputError
from dlsort.validation import resolve_device

LOCATIONS = np.stack([np.zeros(4), 20.0 * np.arange(4)], axis=1)


def _run(recording, tmp_path, **params):
    return ss.run_sorter("dlsort", recording, folder=tmp_path / "out", n_jobs=1, progress_bar=False, **params)


def _noise(num_samples=30_000, num_channels=4):
    return np.random.default_rng(0).normal(size=(num_samples, num_channels))


def test_recording_without_probe(tmp_path):
    with pytest.raises(DlsortInputError, match="no probe / channel locations"):
        _run(saved_recording(tmp_path, _noise()), tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, bad):
    traces = _noise()
    traces[100, 2] = bad
    with pytest.raises(DlsortInputError, match=r"NaN or inf samples .*channel indices \[2\]"):
        _run(saved_recording(tmp_path, traces, LOCATIONS), tmp_path)


def test_recording_shorter_than_one_chunk(tmp_path):
    with pytest.raises(DlsortInputError, match="shorter than one chunk"):
        _run(saved_recording(tmp_path, _noise(num_samples=1000), LOCATIONS), tmp_path)


def test_zero_channels(tmp_path):
    from spikeinterface.core import NumpyRecording

    recording = NumpyRecording([np.zeros((30_000, 0), "float32")], sampling_frequency=30_000.0)
    with pytest.raises(DlsortInputError, match="zero channels"):
        _run(recording, tmp_path)


def test_unknown_parameter_is_named(tmp_path):
    with pytest.raises(ValueError, match="bogus"):
        _run(saved_recording(tmp_path, _noise(), LOCATIONS), tmp_path, bogus=3)


def test_wrong_parameter_type(tmp_path):
    with pytest.raises(DlsortInputError, match="'detect_threshold' must be float"):
        _run(saved_recording(tmp_path, _noise(), LOCATIONS), tmp_path, detect_threshold="high")


def test_neural_detection_of_positive_peaks_is_refused_before_sorting(tmp_path):
    with pytest.raises(DlsortInputError, match="neural detector finds negative peaks"):
        _run(saved_recording(tmp_path, _noise(), LOCATIONS), tmp_path, detection_method="neural", peak_sign="pos")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tmp_path):
    with pytest.raises(DlsortInputError, match="device='cuda' was requested but torch sees no CUDA device"):
        _run(saved_recording(tmp_path, _noise(), LOCATIONS), tmp_path, device="cuda")


def test_device_resolution():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DlsortInputError, match="not one of"):
        resolve_device("tpu")


def test_pure_noise_gives_an_empty_sorting(tmp_path):
    sorting = _run(saved_recording(tmp_path, _noise(num_samples=90_000) * 5, LOCATIONS), tmp_path)
    assert len(sorting.unit_ids) == 0


def test_matching_chunks_shorter_than_a_template(tmp_path):
    with pytest.raises(DlsortInputError, match="matching_chunk_duration='1ms' is shorter than one template"):
        _run(saved_recording(tmp_path, _noise(), LOCATIONS), tmp_path, matching_chunk_duration="1ms")


@pytest.mark.parametrize("name", ["chunk_duration", "matching_chunk_duration"])
def test_unreadable_chunk_duration(tmp_path, name):
    with pytest.raises(DlsortInputError, match=f"^{name}='soon' is not understood"):
        _run(saved_recording(tmp_path, _noise(), LOCATIONS), tmp_path, **{name: "soon"})

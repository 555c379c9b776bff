"""dlsort in SpikeInterface's container mode: what the host side decides before a container starts."""

from __future__ import annotations

import importlib.util

from dlsort.sorter import DlsortSorter


def test_gpu_is_requested_only_when_spikeinterface_can_check_for_it():
    # SpikeInterface's has_nvidia() raises on a host without cuda-python: "auto" must not make it ask.
    assert DlsortSorter.use_gpu({"device": "auto"}) is (importlib.util.find_spec("cuda") is not None)
    assert DlsortSorter.use_gpu({}) is DlsortSorter.use_gpu({"device": "auto"})
    assert DlsortSorter.use_gpu({"device": "cpu"}) is False
    assert DlsortSorter.use_gpu({"device": "cuda"}) is True

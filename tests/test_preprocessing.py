import numpy as np
import pytest
from spikeinterface.core import NumpyRecording

from dlsort.errors import DlsortInputError
from dlsort.groundtruth import make_probe
from dlsort.preprocessing import MOTION_PRESETS, preprocess, resolve_common_reference, resolve_motion_correction
from dlsort.preprocessing.standard import BOUNDED_MOTION_ESTIMATION


def _recording(probe_kind: str, num_channels: int, seconds: float = 1.0):
    traces = np.random.default_rng(0).normal(size=(int(30_000 * seconds), num_channels)).astype("float32")
    recording = NumpyRecording([traces], 30_000.0)
    recording.set_probe(make_probe(probe_kind, num_channels), in_place=True)
    return recording


def test_auto_motion_correction_only_on_shank_like_probes():
    assert resolve_motion_correction(_recording("np1", 64), "auto") == "dredge_fast"
    assert resolve_motion_correction(_recording("staggered", 32), "auto") is None
    assert resolve_motion_correction(_recording("np1", 64), None) is None
    assert resolve_motion_correction(_recording("np1", 64), "rigid_fast") == "rigid_fast"
    with pytest.raises(DlsortInputError, match="motion_correction='bogus'"):
        resolve_motion_correction(_recording("np1", 64), "bogus")


def test_auto_common_reference_spares_probes_where_a_spike_reaches_most_channels():
    for kind, channels in (("np1", 64), ("staggered", 32), ("np2", 64), ("polytrode", 64), ("utah", 100)):
        assert resolve_common_reference(_recording(kind, channels), "auto"), kind
    assert not resolve_common_reference(_recording("tetrode", 4), "auto")
    assert resolve_common_reference(_recording("tetrode", 4), True) and not resolve_common_reference(
        _recording("np1", 64), False)
    with pytest.raises(DlsortInputError, match="common_reference='local'"):
        resolve_common_reference(_recording("np1", 8), "local")


def test_a_tetrode_keeps_its_spikes_with_the_automatic_reference():
    """A spike seen on all four contacts of a tetrode: the median across them would be the spike itself."""
    recording = _recording("tetrode", 4)
    traces = recording.get_traces()
    spike = -60.0 * np.exp(-0.5 * ((np.arange(60) - 30) / 4.0) ** 2)
    for start in range(1_000, 29_000, 2_000):
        traces[start:start + 60] += spike[:, None] * np.array([1.0, 0.9, 0.8, 0.7])
    spiky = NumpyRecording([traces], 30_000.0)
    spiky.set_probe(recording.get_probe(), in_place=True)
    troughs = {reference: -preprocess(spiky, common_reference=reference).get_traces().min(axis=0)
               for reference in ("auto", True)}
    assert np.all(troughs["auto"] > 20.0)  # the band-passed spike, on every contact
    assert np.all(troughs[True] < 0.5 * troughs["auto"])  # what the median would have left


def test_filter_corners_are_checked():
    recording = _recording("staggered", 8)
    with pytest.raises(ValueError, match="freq_min=20000"):
        preprocess(recording, freq_min=20_000)
    assert preprocess(recording, freq_max=1e6).get_num_channels() == 8  # clipped below Nyquist


def test_bounded_motion_estimation_applies_to_dredge_presets_only():
    from spikeinterface.preprocessing.motion import motion_options_preset

    for preset in MOTION_PRESETS:
        uses_dredge = motion_options_preset[preset]["estimate_motion_kwargs"].get("method") == "dredge_ap"
        assert (preset in BOUNDED_MOTION_ESTIMATION) == uses_dredge, preset


def test_motion_corrected_recording_keeps_its_shape(accuracy_case, monkeypatch):
    recording, _ = accuracy_case
    # 30 s in 5-s bins and 2-bin chunks: the online estimation registers three consecutive chunks.
    monkeypatch.setitem(BOUNDED_MOTION_ESTIMATION, "rigid_fast", {"batching_mode": "online", "chunk_len_s": 2})
    corrected = preprocess(recording, motion_correction="rigid_fast", job_kwargs={"n_jobs": 1, "progress_bar": False})
    assert type(corrected).__name__ == "InterpolateMotionRecording"
    assert corrected.get_num_samples() == recording.get_num_samples()
    traces = corrected.get_traces(start_frame=300_000, end_frame=330_000)
    assert traces.shape == (30_000, recording.get_num_channels())
    assert np.all(np.isfinite(traces))
    # a static recording: the correction must not wreck the signal (most of its variance survives)
    plain = preprocess(recording).get_traces(start_frame=300_000, end_frame=330_000)
    assert np.corrcoef(plain.ravel(), traces.ravel())[0, 1] > 0.8


def test_preprocessed_traces_are_cached_in_shared_memory_only_when_they_fit(monkeypatch):
    from dlsort.preprocessing import cache

    lazy = preprocess(_recording("staggered", 8, seconds=3.0))
    cached, used = cache.cache_preprocessed(lazy, "auto", {"n_jobs": 2, "chunk_duration": "0.7s"})
    assert used and type(cached).__name__ == "SharedMemoryRecording"
    # the same float32 traces as the lazy chain computes them, up to rounding at other chunk edges
    np.testing.assert_allclose(cached.get_traces(), lazy.get_traces(), atol=1e-3 * lazy.get_traces().std())
    assert cached.get_channel_locations().tolist() == lazy.get_channel_locations().tolist()
    assert cache.cache_preprocessed(lazy, "none") == (lazy, False)
    assert cache.available_memory_bytes() > 0  # Linux: /proc/meminfo
    monkeypatch.setattr(cache, "available_memory_bytes", lambda: 3 * lazy.get_total_memory_size())
    assert cache.cache_preprocessed(lazy, "auto") == (lazy, False)  # over a quarter of what is available
    monkeypatch.setattr(cache, "available_memory_bytes", lambda: None)
    assert cache.cache_preprocessed(lazy, "auto") == (lazy, False)
    monkeypatch.setattr(cache, "available_memory_bytes", lambda: 100 * lazy.get_total_memory_size())
    monkeypatch.setattr(cache, "shared_memory_room_bytes", lambda: lazy.get_total_memory_size())
    assert cache.cache_preprocessed(lazy, "auto") == (lazy, False)  # /dev/shm too small (a Docker container)
    from spikeinterface.core import append_recordings

    mixed = append_recordings([lazy, lazy.frame_slice(0, 9_000)])  # start times None, then 0.0
    assert mixed.get_segment_t_starts() == [None, 0.0] and cache.cache_preprocessed(mixed, "auto") == (mixed, False)
    with pytest.raises(DlsortInputError, match="cache_preprocessing='always'"):
        cache.cache_preprocessed(lazy, "always")

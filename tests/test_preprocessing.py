import numpy as np
import pytest
from spikeinterface.core import NumpyRecording

from dlsort.errors import DlsortInputError
from dlsort.groundtruth import make_probe
from dlsort.preprocessing import (
    MOTION_PRESETS,
    estimated_drift_um,
    motion_corrected,
    preprocess,
    resolve_common_reference,
    resolve_motion_correction,
)
from dlsort.preprocessing.cache import cache_preprocessed
from dlsort.preprocessing.motion import BOUNDED_MOTION_ESTIMATION


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


def test_motion_corrected_recording_keeps_its_shape_cached_or_not(accuracy_case, monkeypatch):
    from spikeinterface.core.motion import Motion
    from spikeinterface.sortingcomponents import motion as si_motion

    recording, _ = accuracy_case
    # 30 s in 1-s bins and 10-bin chunks: the online estimation registers three consecutive chunks.
    monkeypatch.setitem(BOUNDED_MOTION_ESTIMATION, "dredge_fast", {"batching_mode": "online", "chunk_len_s": 10})
    estimate, estimates = si_motion.estimate_motion, []

    def offset(*args, **kwargs):  # this recording does not move: a 3-um offset makes the interpolation run
        estimates.append(estimate(*args, **kwargs))
        return Motion([bins + 3.0 for bins in estimates[-1].displacement], estimates[-1].temporal_bins_s,
                      estimates[-1].spatial_bins_um)

    monkeypatch.setattr(si_motion, "estimate_motion", offset)
    corrected = preprocess(recording, motion_correction="dredge_fast", job_kwargs={"n_jobs": 1, "progress_bar": False})
    assert type(corrected).__name__ == "InterpolateMotionRecording"
    assert corrected.get_num_samples() == recording.get_num_samples()
    traces = corrected.get_traces(start_frame=300_000, end_frame=330_000)
    assert traces.shape == (30_000, recording.get_num_channels())
    assert np.all(np.isfinite(traces))
    # a static recording: the correction must not wreck the signal (most of its variance survives)
    plain = preprocess(recording).get_traces(start_frame=300_000, end_frame=330_000)
    assert np.corrcoef(plain.ravel(), traces.ravel())[0, 1] > 0.8
    # as the pipeline runs it: estimated on the cached filtered traces, interpolated lazily on them
    job_kwargs = {"n_jobs": 1, "progress_bar": False}
    cached, where = cache_preprocessed(preprocess(recording), "memory", job_kwargs)
    on_cache, motion = motion_corrected(cached, "dredge_fast", job_kwargs)
    assert where == "memory" and type(on_cache).__name__ == "InterpolateMotionRecording"
    assert [len(bins) for bins in motion.displacement] == [30]
    assert [estimated_drift_um(found) for found in estimates] == [0.0, 0.0]  # static, on the lazy and cached traces
    np.testing.assert_allclose(on_cache.get_traces(start_frame=300_000, end_frame=330_000), traces,
                               atol=1e-3 * traces.std())
    assert motion_corrected(cached, None) == (cached, None)


def test_an_estimate_of_no_motion_leaves_the_traces_as_they_are(accuracy_case, monkeypatch):
    from spikeinterface.core.motion import Motion
    from spikeinterface.sortingcomponents import motion as si_motion

    recording, _ = accuracy_case
    cached, _ = cache_preprocessed(preprocess(recording), "memory", {"n_jobs": 1, "progress_bar": False})
    depths = recording.get_channel_locations()[:, 1]
    still = Motion([np.zeros((6, 2))], [np.arange(6) * 5.0 + 2.5], np.array([depths.min(), depths.max()]))
    # interpolating by no displacement is the identity (to float rounding), so it can be skipped
    interpolated = si_motion.interpolate_motion(cached, still, border_mode="force_extrapolate")
    window = dict(start_frame=300_000, end_frame=330_000)
    traces = cached.get_traces(**window)
    np.testing.assert_allclose(interpolated.get_traces(**window), traces, atol=1e-4 * traces.std())
    monkeypatch.setattr(si_motion, "estimate_motion", lambda *args, **kwargs: still)
    corrected, motion = motion_corrected(cached, "rigid_fast", {"n_jobs": 1, "progress_bar": False})
    assert corrected is cached and motion is still and estimated_drift_um(motion) == 0.0


def test_preprocessed_traces_are_cached_in_memory_or_on_disk_only_where_they_fit(monkeypatch, tmp_path):
    from spikeinterface.core import append_recordings

    from dlsort.preprocessing import cache

    lazy = preprocess(_recording("staggered", 8, seconds=3.0))
    job_kwargs = {"n_jobs": 2, "chunk_duration": "0.7s", "progress_bar": False}
    in_memory, where = cache.cache_preprocessed(lazy, "auto", job_kwargs, folder=tmp_path)
    assert where == "memory" and type(in_memory).__name__ == "SharedMemoryRecording"
    # the same float32 traces as the lazy chain computes them, up to rounding at other chunk edges
    np.testing.assert_allclose(in_memory.get_traces(), lazy.get_traces(), atol=1e-3 * lazy.get_traces().std())
    assert in_memory.get_channel_locations().tolist() == lazy.get_channel_locations().tolist()
    assert not (tmp_path / cache.CACHE_FOLDER).exists()
    assert cache.cache_preprocessed(lazy, "none", folder=tmp_path) == (lazy, None)
    # SpikeInterface cannot save these, in memory or on disk
    mixed = append_recordings([lazy, lazy.frame_slice(0, 9_000)])  # start times None, then 0.0
    assert mixed.get_segment_t_starts() == [None, 0.0]
    assert cache.cache_preprocessed(mixed, "auto", folder=tmp_path) == (mixed, None)
    assert cache.available_memory_bytes() > 0  # Linux: /proc/meminfo
    # too large for memory: "auto" writes the traces to the scratch folder, the same values as in memory
    monkeypatch.setattr(cache, "available_memory_bytes", lambda: 3 * lazy.get_total_memory_size())
    on_disk, where = cache.cache_preprocessed(lazy, "auto", job_kwargs, folder=tmp_path)
    assert where == "disk" and (tmp_path / cache.CACHE_FOLDER / "traces_cached_seg0.raw").exists()
    np.testing.assert_array_equal(on_disk.get_traces(), in_memory.get_traces())
    assert on_disk.get_channel_locations().tolist() == lazy.get_channel_locations().tolist()
    with pytest.raises(DlsortInputError, match="cache_preprocessing='memory'.*25% of the available memory"):
        cache.cache_preprocessed(lazy, "memory")
    assert cache.cache_preprocessed(lazy, "auto") == (lazy, None)  # no scratch folder: not cached
    with pytest.raises(DlsortInputError, match="no scratch folder"):
        cache.cache_preprocessed(lazy, "disk")
    monkeypatch.setattr(cache, "disk_room_bytes", lambda folder: lazy.get_total_memory_size())
    assert cache.cache_preprocessed(lazy, "auto", folder=tmp_path) == (lazy, None)  # disk too full as well
    with pytest.raises(DlsortInputError, match="10% of the free space"):
        cache.cache_preprocessed(lazy, "disk", folder=tmp_path)
    monkeypatch.setattr(cache, "available_memory_bytes", lambda: None)
    assert cache.cache_preprocessed(lazy, "auto") == (lazy, None)
    monkeypatch.setattr(cache, "available_memory_bytes", lambda: 100 * lazy.get_total_memory_size())
    monkeypatch.setattr(cache, "shared_memory_room_bytes", lambda: lazy.get_total_memory_size())
    assert cache.cache_preprocessed(lazy, "auto") == (lazy, None)  # /dev/shm too small (a Docker container)
    with pytest.raises(DlsortInputError, match="cache_preprocessing='always'"):
        cache.cache_preprocessed(lazy, "always")


def test_a_motion_preset_dlsort_cannot_run_says_which_spikeinterface_to_install(monkeypatch):
    from spikeinterface.preprocessing.motion import motion_options_preset

    changed = {**motion_options_preset["rigid_fast"],
               "detect_kwargs": {**motion_options_preset["rigid_fast"]["detect_kwargs"], "method": "matched_filtering"}}
    monkeypatch.setitem(motion_options_preset, "rigid_fast", changed)
    with pytest.raises(RuntimeError, match="no longer detects peaks with locally_exclusive.*SpikeInterface version"):
        motion_corrected(_recording("staggered", 8), "rigid_fast")

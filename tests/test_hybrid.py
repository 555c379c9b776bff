"""Hybrid recordings: ground-truth spikes on realistic noise, with the clean part kept for scoring."""

from __future__ import annotations

import numpy as np
import pytest

from dlsort.errors import DlsortInputError
from dlsort.groundtruth import make_probe
from dlsort.training.hybrid import hybrid_recording, neuropixels_noise
from dlsort.training.noise import shared_data_dir

FS = 30_000


def test_hybrid_is_the_clean_spikes_plus_the_given_noise():
    probe = make_probe("np1", 16)
    noise = np.random.default_rng(0).normal(0.0, 7.0, size=(2 * FS, 16)).astype("float32")
    hybrid = hybrid_recording(probe, 5, 2.0, noise, seed=1, spike_scale=2.0, noise_source="white")
    np.testing.assert_allclose(hybrid.recording.get_traces() - hybrid.clean, noise, atol=1e-4)
    assert hybrid.sorting.get_num_units() == 5 and hybrid.noise_source == "white"
    assert np.abs(hybrid.clean).max() > 40  # spikes, doubled: far above the generator's noise-free zero
    assert np.array_equal(hybrid.recording.get_channel_locations(), probe.contact_positions)
    unscaled = hybrid_recording(probe, 5, 2.0, noise, seed=1)
    np.testing.assert_allclose(hybrid.clean, 2 * unscaled.clean, rtol=1e-5, atol=1e-4)
    with pytest.raises(DlsortInputError, match="samples, channels"):
        hybrid_recording(probe, 5, 2.0, noise[:, :8])


@pytest.mark.skipif(not (shared_data_dir() / "ibl_np1_noise_spatial_sqrtcov_384.npy").exists(),
                    reason="the shared Neuropixels noise statistics are absent (set DLSORT_SHARED_DATA)")
def test_neuropixels_noise_has_the_level_asked_and_correlates_near_channels_more():
    locations = make_probe("np1", 32).contact_positions
    noise = neuropixels_noise(np.random.default_rng(0), 3 * FS, locations, 6.0)
    assert noise.shape == (3 * FS, 32)
    np.testing.assert_allclose(noise.std(axis=0), 6.0, rtol=1e-3)
    correlation = np.corrcoef(noise.T)
    distance = np.linalg.norm(locations[:, None] - locations[None], axis=-1)
    near, far = correlation[(distance > 0) & (distance < 30)].mean(), correlation[distance > 200].mean()
    assert near > far + 0.05
    lag_one = np.mean([np.corrcoef(channel[1:], channel[:-1])[0, 1] for channel in noise.T])
    assert lag_one > 0.1  # temporally correlated, unlike white noise


@pytest.mark.skipif(not (shared_data_dir() / "ibl_np1_noise_spatial_sqrtcov_384.npy").exists(),
                    reason="the shared Neuropixels noise statistics are absent (set DLSORT_SHARED_DATA)")
def test_a_hybrid_case_puts_the_generators_spikes_on_neuropixels_noise():
    from dataclasses import replace

    from dlsort.groundtruth import HYBRID_CASES, generate_case, generate_static

    case = replace(HYBRID_CASES["HN"], num_channels=16, num_units=4, duration_s=2.0)
    recording, sorting = generate_case(case)
    clean, _ = generate_static(make_probe("np1", 16), 4, 2.0, FS, 0.0, case.seed)
    noise = recording.get_traces() - clean.get_traces()
    np.testing.assert_allclose(noise.std(axis=0), case.noise_uv, rtol=1e-3)
    assert np.mean([np.corrcoef(channel[1:], channel[:-1])[0, 1] for channel in noise.T]) > 0.1  # not white
    assert sorting.get_num_units() == 4 and recording.get_num_channels() == 16
    assert list(recording.channel_ids) == list(clean.channel_ids)  # what the sorting's main_channel_id names
    with pytest.raises(ValueError, match="30 kHz"):
        generate_case(replace(case, sampling_frequency=20_000.0))

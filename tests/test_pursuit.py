import numpy as np
import pytest
from spikeinterface.core import NumpyRecording, Templates

from dlsort.errors import DlsortInputError
from dlsort.groundtruth import make_probe
from dlsort.matching import match_templates
from dlsort.pursuit import (
    BoundedPursuit,
    amplitude_penalties,
    compress_templates,
    cross_correlations,
    inner_products,
    noise_products,
    pursue,
)

NBEFORE, LENGTH = 20, 50
SHAPE = -np.exp(-0.5 * ((np.arange(LENGTH) - NBEFORE) / 3.0) ** 2) + 0.3 * np.exp(
    -0.5 * ((np.arange(LENGTH) - NBEFORE - 10) / 5.0) ** 2)


def footprint(weights: list[float], num_channels: int = 8) -> np.ndarray:
    """A template of SHAPE scaled by ``weights`` on the first channels, zero on the rest."""
    gains = np.zeros(num_channels)
    gains[: len(weights)] = weights
    return (SHAPE[:, None] * gains[None, :]).astype("float32")


def dictionary(templates_array: np.ndarray, rank: int):
    mask = np.any(templates_array != 0, axis=1)
    temporal, spatial = compress_templates(templates_array, mask, rank)
    approximations = np.einsum("krl,krc->klc", temporal, spatial)
    return temporal, spatial, np.sum(approximations.astype("float64") ** 2, axis=(1, 2)), approximations


def test_inner_products_and_cross_correlations_match_direct_sums():
    """B[k, t] = <x[t:t+L], T_k>; subtracting a * T_k at s changes B[:, s+d] by -a * cross[k, :, d + L - 1]."""
    rng = np.random.default_rng(0)
    templates_array = rng.normal(size=(3, LENGTH, 6)).astype("float32")
    temporal, spatial, _, approximations = dictionary(templates_array, rank=6)
    assert np.allclose(approximations, templates_array, atol=1e-4)  # full rank: exact
    traces = rng.normal(size=(400, 6)).astype("float32")
    products = inner_products(traces, temporal, spatial)
    direct = np.array([[np.sum(traces[t : t + LENGTH] * template) for t in range(400 - LENGTH + 1)]
                       for template in templates_array])
    assert products.shape == direct.shape and np.allclose(products, direct, atol=1e-3)

    cross = cross_correlations(templates_array)
    start, k, amplitude = 150, 1, 1.3
    traces[start : start + LENGTH] -= amplitude * templates_array[k]
    predicted = products.copy()
    predicted[:, start - LENGTH + 1 : start + LENGTH] -= amplitude * cross[k]
    assert np.allclose(inner_products(traces, temporal, spatial), predicted, atol=1e-3)


def test_projecting_each_template_from_its_own_channels_gives_the_same_products():
    rng = np.random.default_rng(2)
    templates_array = rng.normal(size=(3, LENGTH, 8)).astype("float32")
    mask = np.zeros((3, 8), dtype=bool)
    mask[0, :3], mask[1, 2:6], mask[2, 5:] = True, True, True
    temporal, spatial = compress_templates(templates_array, mask, rank=2)
    traces = rng.normal(size=(300, 8)).astype("float32")
    own = inner_products(traces, temporal, spatial, channels=[np.flatnonzero(row) for row in mask])
    assert np.allclose(own, inner_products(traces, temporal, spatial), atol=1e-4)


def test_low_rank_templates_keep_their_own_channels():
    rng = np.random.default_rng(1)
    templates_array = rng.normal(size=(2, LENGTH, 6)).astype("float32")
    mask = np.array([[True, True, False, False, False, False], [False, False, True, True, True, True]])
    temporal, spatial = compress_templates(templates_array, mask, rank=1)
    approximations = np.einsum("krl,krc->klc", temporal, spatial)
    assert np.all(approximations[~mask[:, None, :].repeat(LENGTH, axis=1)] == 0)
    best = np.linalg.svd(templates_array[0][:, :2])  # the rank-1 truncation is the best rank-1 approximation
    assert np.allclose(approximations[0][:, :2], best[1][0] * np.outer(best[0][:, 0], best[2][0]), atol=1e-4)


def test_pursuit_recovers_separate_and_overlapping_spikes_exactly():
    """Spikes on disjoint channels overlap in time yet are orthogonal, so pursuit fits them exactly."""
    templates_array = np.stack([footprint([10, 6, 0, 0, 0, 0, 0, 0]), footprint([0, 0, 0, 0, 8, 5, 2, 0]),
                                footprint([0, 0, 4, 9, 4, 0, 0, 0])])
    temporal, spatial, norms2, approximations = dictionary(templates_array, rank=2)
    truth = [(0, 40, 1.0), (1, 45, 0.8), (2, 300, 1.2), (0, 600, 0.7), (1, 600, 1.1)]
    traces = np.zeros((1000, 8), dtype="float32")
    for k, start, amplitude in truth:
        traces[start : start + LENGTH] += amplitude * approximations[k]

    templates, starts, amplitudes = pursue(inner_products(traces, temporal, spatial), norms2,
                                           cross_correlations(approximations), 0.6, np.inf)

    found = sorted(zip(templates.tolist(), starts.tolist(), np.round(amplitudes, 3).tolist()), key=lambda s: s[1])
    assert found == sorted(truth, key=lambda s: s[1])


def test_the_refit_gives_overlapping_spikes_on_shared_channels_their_joint_amplitudes():
    """Greedy fits of two spikes that share channels each absorb part of the other; the coordinate-descent
    sweeps (REFIT_SWEEPS) bring both amplitudes to the joint least-squares fit."""
    templates_array = np.stack([footprint([10, 6, 0, 0]), footprint([0, 6, 8, 3])])
    temporal, spatial, norms2, approximations = dictionary(templates_array, rank=2)
    traces = np.zeros((400, 8), dtype="float32")
    traces[100 : 100 + LENGTH] += 1.0 * approximations[0]
    traces[110 : 110 + LENGTH] += 0.9 * approximations[1]
    products, cross = inner_products(traces, temporal, spatial), cross_correlations(approximations)

    greedy = pursue(products, norms2, cross, 0.6, np.inf, sweeps=0)[2]
    refitted = pursue(products, norms2, cross, 0.6, np.inf)[2]

    assert np.abs(greedy - [1.0, 0.9]).max() > 0.02
    assert np.allclose(refitted, [1.0, 0.9], atol=1e-3)


def test_a_template_competes_only_where_its_amplitude_is_within_bounds():
    """A large template X removes more energy from this event than the small unit's template S, but only
    at amplitude 0.45, below the 0.6 bound: the spike is S's, not a fit of X to be discarded."""
    templates_array = np.stack([footprint([0.8, 0.6, 0.0]), footprint([1.6, 0.0, 1.0])])  # S, X
    temporal, spatial, norms2, approximations = dictionary(templates_array, rank=2)
    event = footprint([1.0, 0.0, 0.0])
    unit = event.ravel() / np.linalg.norm(event)
    gains = [float(unit @ a.ravel()) ** 2 / float(a.ravel() @ a.ravel()) for a in approximations]
    assert gains[1] > gains[0]  # an unbounded greedy choice would take X
    traces = np.zeros((300, 8), dtype="float32")
    traces[100 : 100 + LENGTH] = event

    templates, starts, amplitudes = pursue(inner_products(traces, temporal, spatial), norms2,
                                           cross_correlations(approximations), 0.6, np.inf)

    assert templates.tolist() == [0] and starts.tolist() == [100] and np.allclose(amplitudes, 0.8, atol=1e-3)


def one_template_two_spikes(first: float, second: float):
    """Inner products, squared norm and cross-correlations of one template spiking at 50 (``first`` times the
    template) and at 250 (``second`` times it)."""
    temporal, spatial, norms2, approximations = dictionary(footprint([10, 6])[None], rank=1)
    traces = np.zeros((400, 8), dtype="float32")
    traces[50 : 50 + LENGTH] += first * approximations[0]
    traces[250 : 250 + LENGTH] += second * approximations[0]
    return inner_products(traces, temporal, spatial), norms2, cross_correlations(approximations)


def test_amplitudes_above_the_bound_explain_the_event_without_reporting_it():
    templates, starts, amplitudes = pursue(*one_template_two_spikes(3.0, 1.2), 0.6, 1.5)
    assert starts.tolist() == [250] and np.allclose(amplitudes, 1.2, atol=1e-3)


def test_noise_products_measure_the_spread_of_inner_products_with_noise():
    """In white unit-variance noise an inner product with T has standard deviation |T|."""
    _, templates, _ = synthetic_recording()
    noise = NumpyRecording([np.random.default_rng(3).normal(size=(300_000, 8)).astype("float32")], 30_000.0)
    temporal, spatial, norms2, _ = dictionary(templates.templates_array, rank=5)
    spread = noise_products(noise, temporal, spatial)
    assert np.allclose(spread, np.sqrt(norms2), rtol=0.05)


def test_a_significance_threshold_leaves_weak_fits_out():
    products, norms2, cross = one_template_two_spikes(0.7, 1.0)
    assert pursue(products, norms2, cross, 0.6, np.inf)[1].tolist() == [50, 250]
    threshold = 0.85 * norms2  # an inner product of 0.85 |T|^2: amplitude 0.85
    assert pursue(products, norms2, cross, 0.6, np.inf, min_products=threshold)[1].tolist() == [250]


def test_the_misfit_rule_keeps_a_small_template_off_what_a_large_spike_leaves_behind():
    """A large spike that its template fits imperfectly (its footprint has moved a little) leaves a
    residual that a small template on its channels would claim at amplitude >= 0.6."""
    large, small = footprint([10, 20, 40, 30, 20, 10]), footprint([0, 0, 1, 3, 1, 0])
    templates_array = np.stack([large, small])
    temporal, spatial, norms2, approximations = dictionary(templates_array, rank=2)
    cross = cross_correlations(approximations)
    traces = np.zeros((400, 8), dtype="float32")
    traces[100 : 100 + LENGTH] = footprint([9, 17, 38, 33, 24, 12])  # drifted a little
    traces[300 : 300 + LENGTH] = small  # and a spike of the small unit alone
    products = inner_products(traces, temporal, spatial)

    fooled = pursue(products, norms2, cross, 0.6, np.inf)
    assert sorted(zip(fooled[0].tolist(), fooled[1].tolist())) == [(0, 100), (1, 100), (1, 300)]
    kept = pursue(products, norms2, cross, 0.6, np.inf, misfit=0.2)
    assert sorted(zip(kept[0].tolist(), kept[1].tolist())) == [(0, 100), (1, 300)]


def test_an_amplitude_prior_tells_apart_two_units_of_one_shape():
    """Templates of one shape at sizes 1 and 0.55 remove the same energy from each other's spikes at free
    amplitude (so rounding picks one); ranked with the prior, each spike goes to the template it fits near
    amplitude 1, and the fitted amplitudes stay the least-squares ones."""
    templates_array = np.stack([footprint([10, 4]), footprint([5.5, 2.2])])
    temporal, spatial, norms2, approximations = dictionary(templates_array, rank=1)
    traces = np.zeros((400, 8), dtype="float32")
    traces[50 : 50 + LENGTH] += 1.1 * approximations[1]  # the small unit's spike
    traces[250 : 250 + LENGTH] += 0.95 * approximations[0]  # the large unit's
    products, cross = inner_products(traces, temporal, spatial), cross_correlations(approximations)

    energies = products[:, [50, 250]] ** 2 / norms2[:, None]
    assert np.allclose(energies[0], energies[1], rtol=1e-4)
    penalty = amplitude_penalties(np.sqrt(norms2), norms2, 0.1)  # unit-variance white noise
    templates, starts, amplitudes = pursue(products, norms2, cross, 0.6, np.inf, amplitude_penalty=penalty)
    assert sorted(zip(starts.tolist(), templates.tolist())) == [(50, 1), (250, 0)]
    assert np.allclose(amplitudes[np.argsort(starts)], [1.1, 0.95], atol=1e-3)


def test_amplitude_penalties_are_the_noise_variance_over_the_squared_spread():
    """In white noise of variance 4 the prior of spread 0.1 costs 4 / 0.01 per unit of (a - 1)^2."""
    _, templates, _ = synthetic_recording()
    noise = NumpyRecording([np.random.default_rng(5).normal(scale=2.0, size=(300_000, 8)).astype("float32")],
                           30_000.0)
    temporal, spatial, norms2, _ = dictionary(templates.templates_array, rank=5)
    assert np.allclose(amplitude_penalties(noise_products(noise, temporal, spatial), norms2, 0.1), 400.0, rtol=0.1)


def same_shape_recording(seed: int = 0):
    """Unit-variance noise with two units of one shape on the same channels, the second 0.55 times the first."""
    rng = np.random.default_rng(seed)
    templates_array = np.stack([12.0 * footprint([3, 1]), 6.6 * footprint([3, 1])])
    traces = rng.normal(size=(300_000, 8)).astype("float32")
    starts = rng.permutation(np.arange(100, 299_800, 120))[:1200]
    truth = [np.sort(starts[:600]), np.sort(starts[600:])]
    for k, times in enumerate(truth):
        for start in times:
            traces[start : start + LENGTH] += rng.normal(1.0, 0.1) * templates_array[k]
    recording = NumpyRecording([traces], 30_000.0)
    recording.set_probe(make_probe("staggered", 8), in_place=True)
    templates = Templates(templates_array=templates_array, sampling_frequency=30_000.0, nbefore=NBEFORE,
                          channel_ids=recording.channel_ids, unit_ids=np.arange(2), probe=recording.get_probe(),
                          is_in_uV=False)
    return recording, templates, [times + NBEFORE for times in truth]


def test_bounded_pursuit_with_the_amplitude_prior_sorts_two_units_of_one_shape_in_noise():
    recording, templates, truth = same_shape_recording()
    job_kwargs = {"n_jobs": 1, "progress_bar": False, "chunk_duration": "1s"}

    def recall(spikes) -> list[float]:
        return [np.isin(times, spikes["sample_index"][spikes["cluster_index"] == k]).mean()
                for k, times in enumerate(truth)]

    free = match_templates(recording, templates, method="bounded-pursuit", min_snr=4.0, job_kwargs=job_kwargs)
    prior = match_templates(recording, templates, method="bounded-pursuit", min_snr=4.0, amplitude_spread=0.1,
                            job_kwargs=job_kwargs)
    assert min(recall(free)) < 0.9  # measured 0.75 and 0.86
    assert min(recall(prior)) >= 0.97  # 0.993 and 0.998


def synthetic_recording(seed: int = 0):
    """Eight channels of unit-variance noise with three units (one pair overlapping in time), and their templates."""
    rng = np.random.default_rng(seed)
    num_channels, sampling_frequency = 8, 30_000.0
    templates_array = 8.0 * np.stack([footprint([3, 2, 1]), footprint([0, 0, 1, 3, 2]),
                                      footprint([0, 0, 0, 0, 0, 1, 3, 2])])
    traces = rng.normal(size=(300_000, num_channels)).astype("float32")
    truth = []
    for k in range(3):
        starts = np.sort(rng.choice(np.arange(100, 299_800, 150), size=400, replace=False)) + 7 * k
        for start in starts:
            traces[start : start + LENGTH] += rng.uniform(0.8, 1.2) * templates_array[k]
        truth.append(starts + NBEFORE)
    recording = NumpyRecording([traces], sampling_frequency)
    recording.set_probe(make_probe("staggered", num_channels), in_place=True)
    templates = Templates(templates_array=templates_array, sampling_frequency=sampling_frequency, nbefore=NBEFORE,
                          channel_ids=recording.channel_ids, unit_ids=np.arange(3), probe=recording.get_probe(),
                          is_in_uV=False)
    return recording, templates, truth


@pytest.mark.parametrize("chunk_duration", ["50ms", "1s"])
def test_bounded_pursuit_finds_every_spike_of_a_recording_across_chunk_edges(chunk_duration):
    recording, templates, truth = synthetic_recording()
    spikes = match_templates(recording, templates, method="bounded-pursuit",
                             job_kwargs={"n_jobs": 1, "progress_bar": False, "chunk_duration": chunk_duration})
    assert np.all(np.diff(spikes["sample_index"]) >= 0)
    for k, times in enumerate(truth):
        found = spikes["sample_index"][spikes["cluster_index"] == k]
        assert np.unique(found).size == found.size  # never the same spike twice
        assert np.isin(times, found).mean() >= 0.99
        assert np.isin(found, times).mean() >= 0.99
    assert np.all((spikes["amplitude"] >= 0.6) & (spikes["amplitude"] < 1.4))


def test_bounded_pursuit_refuses_bad_bounds_and_empty_templates():
    recording, templates, _ = synthetic_recording()
    with pytest.raises(DlsortInputError, match="0 < min <= max"):
        BoundedPursuit(recording, templates, amplitudes=(1.5, 1.0))
    with pytest.raises(DlsortInputError, match="rank"):
        BoundedPursuit(recording, templates, rank=0)
    with pytest.raises(DlsortInputError, match="min_snr >= 0 and misfit >= 0; got rank=5, min_snr=-1"):
        BoundedPursuit(recording, templates, min_snr=-1)
    with pytest.raises(DlsortInputError, match="amplitude_spread must be > 0"):
        BoundedPursuit(recording, templates, amplitude_spread=0.0)
    array = templates.templates_array.copy()
    array[1] = 0.0
    silent = Templates(templates_array=array, sampling_frequency=templates.sampling_frequency, nbefore=NBEFORE,
                       channel_ids=templates.channel_ids, unit_ids=templates.unit_ids, probe=templates.probe,
                       is_in_uV=False)
    with pytest.raises(DlsortInputError, match="zero on all of its channels"):
        BoundedPursuit(recording, silent)

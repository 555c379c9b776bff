import numpy as np
from spikeinterface.core import NumpyRecording, Templates

from dlsort.groundtruth import make_probe
from dlsort.matching import match_templates


def test_an_amplitude_bound_stops_a_template_from_claiming_much_larger_spikes():
    rng = np.random.default_rng(0)
    num_channels, nbefore, nafter = 8, 30, 45
    t = np.arange(-nbefore, nafter)
    shape = -np.exp(-0.5 * (t / 4.0) ** 2) + 0.3 * np.exp(-0.5 * ((t - 12) / 6.0) ** 2)
    template = shape[:, None] * np.linspace(20.0, 2.0, num_channels)[None, :]
    traces = rng.normal(scale=1.0, size=(300_000, num_channels)).astype("float32")
    times = np.arange(1_000, 299_000, 2_000)
    for time in times:
        traces[time - nbefore : time + nafter] += 3.0 * template  # spikes three times the template
    recording = NumpyRecording([traces], 30_000.0)
    recording.set_probe(make_probe("staggered", num_channels), in_place=True)
    templates = Templates(templates_array=template[None].astype("float32"), sampling_frequency=30_000.0,
                          nbefore=nbefore, channel_ids=recording.channel_ids, unit_ids=np.arange(1),
                          probe=recording.get_probe(), is_in_uV=False)
    job = {"n_jobs": 1, "progress_bar": False}
    unbounded = match_templates(recording, templates, job_kwargs=job)
    bounded = match_templates(recording, templates, max_amplitude=1.6, job_kwargs=job)
    assert len(unbounded) >= 0.9 * len(times)
    assert np.all(bounded["amplitude"] <= 1.6 + 1e-6)
    assert len(bounded) < len(unbounded)


def test_whitening_decorrelates_the_noise_and_whitens_templates_alike():
    """Noise shared by neighbouring channels comes out uncorrelated with unit variance; a template
    is transformed as the traces it is the mean of, and keeps its strongest channel."""
    from dlsort.matching import whiten_for_matching

    rng = np.random.default_rng(1)
    num_channels = 8
    probe = make_probe("staggered", num_channels)
    distances = np.linalg.norm(probe.contact_positions[:, None] - probe.contact_positions[None], axis=-1)
    covariance = 25.0 * np.exp(-distances / 40.0)  # 5 uV noise, correlation 0.47 at 30 um
    traces = rng.multivariate_normal(np.zeros(num_channels), covariance, size=200_000).astype("float32")
    recording = NumpyRecording([traces], 30_000.0)
    recording.set_probe(probe, in_place=True)
    shape = -np.exp(-0.5 * (np.arange(-30, 45) / 4.0) ** 2)
    template = (shape[:, None] * np.linspace(40.0, 4.0, num_channels)[None, :]).astype("float32")
    templates = Templates(templates_array=template[None], sampling_frequency=30_000.0, nbefore=30,
                          channel_ids=recording.channel_ids, unit_ids=np.arange(1), probe=probe, is_in_uV=False)

    whitened, whitened_templates = whiten_for_matching(recording, templates, seed=0)

    raw_correlation = np.corrcoef(traces[:50_000].T)
    white = whitened.get_traces(start_frame=0, end_frame=50_000)
    near = (distances > 0) & (distances <= 40)
    assert raw_correlation[near].mean() > 0.3
    assert np.abs(np.corrcoef(white.T)[near]).max() < 0.1
    assert np.allclose(white.std(axis=0), 1.0, atol=0.1)
    matrix = np.linalg.lstsq(traces[:50_000], white, rcond=None)[0]  # the linear map the recording went through
    dense = whitened_templates.get_dense_templates()[0]
    kept = whitened_templates.sparsity.mask[0]
    assert kept[np.abs(template @ matrix).max(axis=0).argmax()]
    assert np.allclose(dense[:, kept], (template @ matrix)[:, kept], atol=1e-2)
    assert np.all(dense[:, ~kept] == 0)


def test_stable_whitening_follows_the_estimated_drift():
    """The drift is read from the motion correction's estimate; "stable" whitens only below STABLE_DRIFT_UM."""
    from spikeinterface.core.motion import Motion

    from dlsort.matching import STABLE_DRIFT_UM, should_whiten
    from dlsort.preprocessing import estimated_drift_um

    bins_s = np.arange(1.0, 2.0, 0.5)
    zigzag = np.array([[-10.0, -9.0], [10.0, 11.0]])  # time bins x depth bins
    moving = Motion([zigzag], [bins_s], np.array([0.0, 100.0]))
    still = Motion([np.zeros_like(zigzag)], [bins_s], np.array([0.0, 100.0]))

    assert estimated_drift_um(None) is None
    assert estimated_drift_um(moving) == 20.0
    assert estimated_drift_um(still) == 0.0
    assert [should_whiten("stable", drift) for drift in (None, 0.0, STABLE_DRIFT_UM, 20.0)] == [True, True, False,
                                                                                              False]
    assert should_whiten("always", 20.0) and not should_whiten("never", 0.0)

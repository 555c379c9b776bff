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

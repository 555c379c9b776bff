"""Evaluation against ground truth: why a missed unit was missed."""

import numpy as np
from spikeinterface.core import NumpySorting

from dlsort.evaluation import evaluate

FS = 30_000.0


def test_each_kind_of_miss_is_named():
    """Seven true units, each sorted in a different way; the diagnosis names what happened to each."""
    rng = np.random.default_rng(0)
    duration = 60 * int(FS)
    # every train on its own offset of a 200-sample grid: no two spikes within the 0.4 ms (12-sample) match window
    truth = {f"t{i}": np.sort(rng.choice(np.arange(25 * i, duration, 200), 600, replace=False)) for i in range(7)}
    noise = np.sort(rng.choice(np.arange(187, duration, 200), 600, replace=False))
    first_half = truth["t1"][::2]
    sorted_units = {
        "good": truth["t0"],
        "half_a": first_half, "half_b": np.setdiff1d(truth["t1"], first_half),
        "both": np.sort(np.concatenate([truth["t2"], truth["t3"]])),
        "some": truth["t5"][:420],
        "dirty": np.sort(np.concatenate([truth["t6"], noise])),
    }  # t4 is in no unit
    gt = NumpySorting.from_unit_dict([truth], FS)
    sorting = NumpySorting.from_unit_dict([sorted_units], FS)
    per_unit = evaluate(gt, sorting).per_unit

    assert per_unit["t0"]["miss"] is None
    assert per_unit["t1"]["miss"] == "split into units half_a, half_b"
    assert per_unit["t2"]["miss"].startswith("merged with true unit(s) t3 in unit both")
    assert per_unit["t3"]["miss"].startswith("merged with true unit(s) t2")
    assert per_unit["t4"]["miss"] == "not detected (0 % of its spikes in any unit)"
    assert per_unit["t5"]["miss"] == "partly detected (unit some holds 70 % of its spikes)"
    assert per_unit["t6"]["miss"] == "contaminated (unit dirty: precision 0.50)"

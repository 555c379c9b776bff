import numpy as np
import pytest
from probeinterface import generate_linear_probe
from probeinterface.neuropixels_tools import build_neuropixels_probe

from dlsort.geometry import probe_family
from dlsort.groundtruth import make_probe


def _grid(n: int, pitch: float) -> np.ndarray:
    x, y = np.meshgrid(np.arange(n) * pitch, np.arange(n) * pitch)
    return np.column_stack([x.ravel(), y.ravel()])


@pytest.mark.parametrize(
    "locations, shanks, family",
    [
        (make_probe("np1", 64).contact_positions, None, "neuropixels-1.0"),
        (build_neuropixels_probe("NP2000").contact_positions, None, "neuropixels-2.0"),
        (build_neuropixels_probe("NP2010").contact_positions, build_neuropixels_probe("NP2010").shank_ids,
         "neuropixels-2.0"),
        (generate_linear_probe(num_elec=32, ypitch=25).contact_positions, None, "linear"),
        (make_probe("staggered", 32).contact_positions, None, "polytrode"),
        (np.array([[0, 0], [20, 0], [0, 20], [20, 20]]), None, "tetrode"),
        (_grid(10, 400.0), None, "utah"),
        (_grid(16, 100.0), None, "mea"),
    ],
)
def test_probe_families(locations, shanks, family):
    assert probe_family(locations, shanks) == family


def test_bad_locations_are_refused():
    with pytest.raises(ValueError, match=r"\(num_channels, 2\)"):
        probe_family(np.zeros((0, 2)))


def test_the_generalization_cases_cover_every_probe_family_of_issue_8():
    from dlsort.groundtruth import PROBE_FAMILY_CASES

    families = {}
    for name, case in PROBE_FAMILY_CASES.items():
        probe = make_probe(case.probe, case.num_channels)
        assert probe.get_contact_count() == case.num_channels
        families[name] = probe_family(probe.contact_positions, probe.shank_ids)
    assert families == {"N1": "neuropixels-1.0", "NP2": "neuropixels-2.0", "LIN": "linear", "P4": "polytrode",
                        "T20": "tetrode", "U": "utah", "MEA": "mea"}
    assert PROBE_FAMILY_CASES["T20"].sampling_frequency == 20_000.0
    with pytest.raises(ValueError, match="multiple of 8"):
        make_probe("polytrode", 12)
    with pytest.raises(ValueError, match="square number"):
        make_probe("mea", 10)

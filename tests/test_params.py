import pytest

from dlsort.errors import DlsortInputError
from dlsort.params import DEFAULT_PARAMS, PARAMS_DESCRIPTION, validate_params


def test_defaults_are_valid_and_described():
    assert validate_params({}) == DEFAULT_PARAMS
    assert set(PARAMS_DESCRIPTION) == set(DEFAULT_PARAMS)
    assert all(PARAMS_DESCRIPTION[name].strip() for name in PARAMS_DESCRIPTION)


def test_override_is_merged():
    assert validate_params({"detect_threshold": 6})["detect_threshold"] == 6


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"bogus": 1}, "unknown dlsort parameter(s) ['bogus']"),
        ({"detect_threshold": "5"}, "'detect_threshold' must be float"),
        ({"n_components": 2.5}, "'n_components' must be int"),
        ({"common_reference": 1}, "'common_reference' must be bool or str"),
        ({"common_reference": "local"}, "'common_reference'='local' is not one of"),
        ({"detect_threshold": 0.5}, "out of range"),
        ({"merge_similarity": 1.5}, "out of range"),
        ({"matching_method": "magic"}, "is not one of"),
        ({"device": "tpu"}, "is not one of"),
        ({"freq_min": None}, "must not be None"),
        ({"n_jobs": 0}, "n_jobs=0 is invalid"),
        ({"detection_far_field_ratio": 0.5}, "far-field ratio must be 0 (off) or above 1"),
        ({"detection_far_field_radius_um": 40.0}, "must exceed the exclusion radius"),
        ({"footprint_radius_um": 100.0}, "exceeds neighbourhood_radius_um=75.0"),
    ],
)
def test_bad_parameters_are_named(params, fragment):
    with pytest.raises(DlsortInputError) as error:
        validate_params(params)
    assert fragment in str(error.value)


def test_nullable_parameter_accepts_none():
    assert validate_params({"motion_correction": None})["motion_correction"] is None

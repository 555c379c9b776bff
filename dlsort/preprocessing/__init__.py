"""Preprocessing stage: filtering, referencing and motion correction of raw recordings; DeepInterpolation."""

from dlsort.preprocessing.deepinterpolation import deepinterpolate
from dlsort.preprocessing.motion import (
    MOTION_PRESETS,
    estimated_drift_um,
    motion_corrected,
    resolve_motion_correction,
)
from dlsort.preprocessing.standard import preprocess, resolve_common_reference

__all__ = ["MOTION_PRESETS", "deepinterpolate", "estimated_drift_um", "motion_corrected", "preprocess",
           "resolve_common_reference", "resolve_motion_correction"]

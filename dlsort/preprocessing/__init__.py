"""Preprocessing stage: filtering, referencing and motion correction of raw recordings."""

from dlsort.preprocessing.standard import MOTION_PRESETS, preprocess, resolve_motion_correction

__all__ = ["MOTION_PRESETS", "preprocess", "resolve_motion_correction"]

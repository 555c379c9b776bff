"""``provenance.json``: what produced a sorting (versions, parameters, models)."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path


def build_provenance(
    params: dict,
    models: list[dict],
    device: str,
    num_peaks: int,
    num_units: int,
    motion_correction: str | None,
    container_startup: dict | None = None,
    estimated_drift_um: float | None = None,
    matching_whitened: bool = False,
    common_referenced: bool = True,
    preprocessing_cache: str | None = None,
) -> dict:
    """Assemble the provenance record of one sort.

    Parameters
    ----------
    params : dict
        Every parameter used.
    models : list of dict
        Every network used, each with ``id``, ``sha256``, ``task`` and ``source``.
    device : str
        Device the neural stages ran on.
    num_peaks, num_units : int
        Peaks detected and units returned.
    motion_correction : str or None
        Motion-correction preset actually applied.
    container_startup : dict or None, default: None
        In a container image, the outcome of its start-up pull (``dlsort.models.startup``).
    estimated_drift_um : float or None, default: None
        Peak-to-peak drift estimated by the motion correction (None without it).
    matching_whitened : bool, default: False
        Whether template matching ran on the whitened recording.
    common_referenced : bool, default: True
        Whether the common median was subtracted (``common_reference`` resolved).
    preprocessing_cache : {"memory", "disk"} or None, default: None
        Where the preprocessed traces were computed once (``cache_preprocessing``); None: not cached.

    Returns
    -------
    dict
    """
    import numpy
    import spikeinterface
    import torch

    from dlsort import __version__

    return {
        "dlsort_version": __version__,
        "spikeinterface_version": spikeinterface.__version__,
        "numpy_version": numpy.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "parameters": params,
        "models": models,
        "motion_correction_applied": motion_correction,
        "common_reference_applied": bool(common_referenced),
        "preprocessing_cache": preprocessing_cache,
        "estimated_drift_um": estimated_drift_um,
        "matching_whitened": bool(matching_whitened),
        "num_peaks": int(num_peaks),
        "num_units": int(num_units),
        "container_startup": container_startup,
    }


def write_provenance(folder: Path, provenance: dict) -> Path:
    """Write ``provenance.json`` into ``folder`` and return its path."""
    path = Path(folder) / "provenance.json"
    path.write_text(json.dumps(provenance, indent=2, sort_keys=True))
    return path

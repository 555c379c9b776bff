"""Waveform denoising stage.

``denoise_snippets(snippets, method=...)`` maps neighbourhood snippets
(num_snippets, num_samples, width) to snippets of the same shape. ``"none"`` leaves them as they
are (the classical pipeline); neural denoisers plug in beside it in ``DENOISING_METHODS``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlsort.errors import check_choice


def _identity(snippets: np.ndarray) -> np.ndarray:
    return snippets


DENOISING_METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"none": _identity}


def denoise_snippets(snippets: np.ndarray, method: str = "none") -> np.ndarray:
    """Denoise neighbourhood snippets.

    Parameters
    ----------
    snippets : np.ndarray
        (num_snippets, num_samples, width) float32, padded channels zero.
    method : str, default: "none"
        One of ``DENOISING_METHODS``.

    Returns
    -------
    np.ndarray
        Denoised snippets, same shape and dtype.
    """
    check_choice("denoising method", method, DENOISING_METHODS)
    if snippets.ndim != 3:
        raise ValueError(f"snippets must be (num_snippets, num_samples, width), got shape {snippets.shape}")
    return DENOISING_METHODS[method](snippets)

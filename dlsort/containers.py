"""The container images SpikeInterface runs dlsort in, for ``run_sorter(..., docker_image=True)``.

``dlsort.registration.register`` adds ``default_image()`` to SpikeInterface's
``SORTER_DOCKER_MAP``, so users need not name the image. The tag is the dlsort version (never
``latest``): ``<version>`` for the CUDA flavour, ``<version>-cpu`` for the CPU one. This module
imports nothing heavy: it runs in every interpreter that imports ``spikeinterface.sorters``.
"""

from __future__ import annotations

import os
import shutil

IMAGE_REPOSITORY = "ghcr.io/dlsort/dlsort"
IMAGE_VARIABLE = "DLSORT_CONTAINER_IMAGE"


def default_image(gpu: bool | None = None) -> str:
    """The image ``docker_image=True`` runs.

    Parameters
    ----------
    gpu : bool or None
        The CUDA flavour (True) or the CPU one (False); None picks CUDA when ``nvidia-smi`` is on
        the PATH (an NVIDIA driver is installed).

    Returns
    -------
    str
        ``$DLSORT_CONTAINER_IMAGE`` when set (a mirror, a locally built image), else
        ``IMAGE_REPOSITORY:<version>[-cpu]``.
    """
    from dlsort import __version__

    override = os.environ.get(IMAGE_VARIABLE)
    if override:
        return override
    if gpu is None:
        gpu = shutil.which("nvidia-smi") is not None
    return f"{IMAGE_REPOSITORY}:{__version__}{'' if gpu else '-cpu'}"

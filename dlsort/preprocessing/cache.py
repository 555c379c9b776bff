"""Keeping the preprocessed traces in shared memory for the sorter's passes over the recording.

The sorter reads the preprocessed recording several times (peak detection, features, templates,
template matching); a lazy recording filters, references and motion-interpolates every chunk
again in each pass. When the traces fit comfortably in memory they are computed once into a
shared-memory buffer that the parallel workers read directly. The values are the same float32
traces up to rounding where chunks meet (the lazy chain filters each chunk with its own margins),
which can move a unit that sits at a threshold, as any change of chunking can.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dlsort.errors import check_choice

logger = logging.getLogger("dlsort")

CACHE_MODES = ("auto", "none")
# The cache may take at most this fraction of the memory still available, so that the passes, their
# workers and the other programs on the machine keep the rest.
MEMORY_FRACTION = 0.25


def available_memory_bytes() -> int | None:
    """Memory still available to this process: ``MemAvailable``, capped by a cgroup v2 limit.

    Returns
    -------
    int or None
        In bytes; None where neither ``/proc/meminfo`` nor a cgroup limit can be read (not Linux).
    """
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            room = int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


def shared_memory_room_bytes() -> int | None:
    """Free space of ``/dev/shm``, where shared memory lives (64 MiB by default in a Docker container).

    Returns
    -------
    int or None
        In bytes; None where there is no ``/dev/shm``.
    """
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def cache_preprocessed(recording, mode: str, job_kwargs: dict | None = None):
    """The preprocessed recording computed once into shared memory, when ``mode`` allows and it fits.

    Parameters
    ----------
    recording : BaseRecording
        The lazy preprocessed recording.
    mode : {"auto", "none"}
        ``"auto"``: cache when the float32 traces take at most ``MEMORY_FRACTION`` of the available
        memory (``available_memory_bytes``) and fit in the free space of ``/dev/shm`` with 10 % to
        spare (never where either is unknown, nor when some segments have a start time and others
        not); ``"none"``: never.
    job_kwargs : dict or None
        SpikeInterface job kwargs for computing the traces (``n_jobs``, ``progress_bar``, ...).

    Returns
    -------
    recording : BaseRecording
        A ``SharedMemoryRecording`` holding the same traces, or ``recording`` itself.
    cached : bool
    """
    check_choice("cache_preprocessing", mode, CACHE_MODES)
    if mode == "none":
        return recording, False
    t_starts = recording.get_segment_t_starts()
    if t_starts is not None and None in t_starts:
        # SpikeInterface 0.105's SharedMemoryRecording fails on such a recording (and leaks its buffers)
        logger.info("preprocessed traces not cached: their segments mix set and unset start times")
        return recording, False
    size = recording.get_total_memory_size()
    available, room = available_memory_bytes(), shared_memory_room_bytes()
    if available is None or room is None or size > min(MEMORY_FRACTION * available, 0.9 * room):
        logger.info("preprocessed traces (%.2f GiB) not cached: available memory %s, free in /dev/shm %s",
                    size / 2**30, *("unknown" if value is None else f"{value / 2**30:.2f} GiB"
                                    for value in (available, room)))
        return recording, False
    logger.info("caching the preprocessed traces in shared memory (%.1f GiB)", size / 2**30)
    return recording.save(format="memory", sharedmem=True, **dict(job_kwargs or {})), True

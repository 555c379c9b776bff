"""Keeping the preprocessed traces for the sorter's passes over the recording: in shared memory or on disk.

The sorter reads the filtered recording several times (motion estimation, peak detection,
features, templates, template matching); a lazy recording filters and references every chunk
again in each pass, and the features and templates passes, which read snippets scattered over the
whole recording, compute nearly every chunk for a few snippets each. The traces are therefore
computed once (before motion correction, whose estimate then reads them and whose interpolation, a
spatial mix of channels at each sample, stays lazy): into a shared-memory buffer that the parallel
workers read directly when they fit comfortably in memory, otherwise into a float32 binary folder
in the sort's scratch folder (read back through memory maps, so the page cache serves them when
memory allows). Both hold the same float32 values, computed chunk by chunk with the job's chunking;
they differ from the lazy chain's only by rounding where chunks meet (the lazy chain filters each
chunk with its own margins), which can move a unit that sits at a threshold, as any change of
chunking can.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from dlsort.errors import DlsortInputError, check_choice

logger = logging.getLogger("dlsort")

CACHE_MODES = ("auto", "memory", "disk", "none")
# The memory cache may take at most this fraction of the memory still available, so that the passes, their
# workers and the other programs on the machine keep the rest.
MEMORY_FRACTION = 0.25
# The disk cache leaves at least this fraction of the scratch file system's free space free.
DISK_SPARE_FRACTION = 0.1
CACHE_FOLDER = "preprocessed"  # inside the scratch folder


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


def disk_room_bytes(folder: Path) -> int:
    """Free space of the file system that holds ``folder`` (or its nearest existing parent).

    Parameters
    ----------
    folder : Path

    Returns
    -------
    int
        In bytes.
    """
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    return shutil.disk_usage(existing).free


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**30:.2f} GiB"


def memory_refusal(size: int) -> str | None:
    """Why ``size`` bytes of traces may not be cached in shared memory, or None when they may.

    Parameters
    ----------
    size : int
        Bytes of float32 traces.

    Returns
    -------
    str or None
    """
    available, room = available_memory_bytes(), shared_memory_room_bytes()
    if available is None or room is None or size > min(MEMORY_FRACTION * available, 0.9 * room):
        return (f"the traces ({_gib(size)}) must take at most {MEMORY_FRACTION:.0%} of the available memory "
                f"({_gib(available)}) and 90 % of the free space in /dev/shm ({_gib(room)})")
    return None


def disk_refusal(size: int, folder: Path | None) -> str | None:
    """Why ``size`` bytes of traces may not be cached in ``folder``, or None when they may.

    Parameters
    ----------
    size : int
        Bytes of float32 traces.
    folder : Path or None
        The scratch folder (None: there is none).

    Returns
    -------
    str or None
    """
    if folder is None:
        return "there is no scratch folder (the sorter's output folder provides one)"
    room = disk_room_bytes(folder)
    if size > (1.0 - DISK_SPARE_FRACTION) * room:
        return (f"the traces ({_gib(size)}) must leave {DISK_SPARE_FRACTION:.0%} of the free space of {folder}'s "
                f"file system ({_gib(room)}) free")
    return None


def cache_preprocessed(recording, mode: str, job_kwargs: dict | None = None, folder: Path | None = None):
    """The preprocessed recording computed once into shared memory or a scratch folder, as ``mode`` says.

    Parameters
    ----------
    recording : BaseRecording
        The lazy preprocessed recording.
    mode : {"auto", "memory", "disk", "none"}
        ``"memory"``: into shared memory, when the float32 traces take at most ``MEMORY_FRACTION`` of
        the available memory (``available_memory_bytes``) and fit in the free space of ``/dev/shm``
        with 10 % to spare; ``"disk"``: into ``<folder>/preprocessed`` (float32 binary), when they
        leave ``DISK_SPARE_FRACTION`` of its file system free; ``"auto"``: memory where it fits,
        else disk where it fits, else not cached (logged); ``"none"``: never. A ``"memory"`` or
        ``"disk"`` cache that does not fit is an error.
    job_kwargs : dict or None
        SpikeInterface job kwargs for computing the traces (``n_jobs``, ``progress_bar``, ...).
    folder : Path or None, default: None
        The scratch folder for a disk cache; the caller removes it after the sort.

    Returns
    -------
    recording : BaseRecording
        A ``SharedMemoryRecording`` or ``BinaryFolderRecording`` holding the same traces, or
        ``recording`` itself.
    cache : {"memory", "disk"} or None
        Where the traces were cached.

    Raises
    ------
    DlsortInputError
        For an unknown mode, or a ``"memory"`` or ``"disk"`` cache that does not fit.
    """
    check_choice("cache_preprocessing", mode, CACHE_MODES)
    if mode == "none":
        return recording, None
    size = recording.get_total_memory_size()
    refusals = {"memory": memory_refusal(size), "disk": disk_refusal(size, folder)}
    t_starts = recording.get_segment_t_starts()
    if t_starts is not None and None in t_starts:
        # SpikeInterface 0.105's SharedMemoryRecording fails on such a recording (and leaks its buffers), as
        # its binary writer does
        refusals = dict.fromkeys(refusals, "the recording's segments mix set and unset start times")
    candidates = ("memory", "disk") if mode == "auto" else (mode,)
    where = next((candidate for candidate in candidates if refusals[candidate] is None), None)
    if where is None:
        reasons = "; ".join(f"{candidate}: {refusals[candidate]}" for candidate in candidates)
        if mode != "auto":
            raise DlsortInputError(f"cache_preprocessing={mode!r}: the preprocessed traces cannot be cached there "
                                   f"({reasons}). Use cache_preprocessing='auto' or 'none'.")
        logger.info("preprocessed traces not cached (%s)", reasons)
        return recording, None
    job_kwargs = dict(job_kwargs or {})
    if where == "memory":
        logger.info("caching the preprocessed traces in shared memory (%s)", _gib(size))
        return recording.save(format="memory", sharedmem=True, **job_kwargs), "memory"
    target = Path(folder) / CACHE_FOLDER
    logger.info("caching the preprocessed traces in %s (%s)", target, _gib(size))
    return recording.save(format="binary", folder=target, overwrite=True, **job_kwargs), "disk"

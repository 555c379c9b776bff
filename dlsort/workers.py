"""Torch inside SpikeInterface's worker processes."""

from __future__ import annotations

import os


def adopt_torch_in_worker(owner_pid: int) -> int:
    """Give torch one thread when called in a process other than ``owner_pid``; return this process's id.

    SpikeInterface's ``n_jobs`` workers share the cores, so each runs torch on one thread. A worker
    forked from a parent that already ran torch would otherwise deadlock in the parent's OpenMP/MKL
    thread pools; torch's own setter also reaches the MKL it links statically, which threadpoolctl
    cannot.

    Parameters
    ----------
    owner_pid : int
        The process that built the network (where torch keeps its configured threads).

    Returns
    -------
    int
        ``os.getpid()``: store it as the new owner so the setting is made once per process.
    """
    pid = os.getpid()
    if pid != owner_pid:
        import torch

        torch.set_num_threads(1)
    return pid

"""Register ``dlsort`` in SpikeInterface's sorter list.

SpikeInterface has no plugin mechanism: ``spikeinterface.sorters.sorterlist`` builds
``sorter_full_list`` and ``sorter_dict`` once, and every caller looks those same objects up at
call time. Adding the class to both, in place, makes ``run_sorter``, ``installed_sorters``,
``get_default_sorter_params`` and ``read_sorter_folder`` see it. ``import dlsort`` registers;
the ``dlsort.pth`` hook of the wheel does it in every interpreter that imports
``spikeinterface.sorters`` (see ``dlsort_hook``). The sorter's container image goes into
``SORTER_DOCKER_MAP`` the same way, unless the user (or SpikeInterface) already named one.
"""

from __future__ import annotations


def register() -> None:
    """Add ``DlsortSorter`` to SpikeInterface's sorter list and dict and its image to the container map (idempotent)."""
    from spikeinterface.sorters import runsorter, sorterlist

    from dlsort.containers import default_image
    from dlsort.sorter import DlsortSorter

    if DlsortSorter not in sorterlist.sorter_full_list:
        sorterlist.sorter_full_list.append(DlsortSorter)
    sorterlist.sorter_dict.setdefault(DlsortSorter.sorter_name, DlsortSorter)
    runsorter.SORTER_DOCKER_MAP.setdefault(DlsortSorter.sorter_name, default_image())

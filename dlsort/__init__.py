"""dlsort: a deep-learning spike sorter for SpikeInterface.

Importing the package registers the ``dlsort`` sorter with SpikeInterface, so that
``spikeinterface.sorters.run_sorter("dlsort", recording)`` works.
"""

__version__ = "0.1.0"

from dlsort.registration import register  # noqa: E402

register()

__all__ = ["__version__", "register"]

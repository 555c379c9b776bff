"""Interpreter start-up hook that registers dlsort whenever ``spikeinterface.sorters`` is imported.

``dlsort.pth`` (installed at the root of site-packages) runs ``install()`` at every interpreter
start. It only puts a finder on ``sys.meta_path``: nothing is imported until some code imports
``spikeinterface.sorters``; right after that module finishes executing, the finder registers
the dlsort sorter. This covers fresh processes, ``read_sorter_folder`` in a new process, loky
workers, the slurm engine and the script SpikeInterface runs inside containers.
"""

import sys

_TARGET = "spikeinterface.sorters"


class _RegisterAfterImport:
    """Meta-path finder that wraps the loader of ``spikeinterface.sorters``."""

    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET or self._busy:
            return None
        from importlib.util import find_spec

        _RegisterAfterImport._busy = True
        try:
            spec = find_spec(fullname)
        finally:
            _RegisterAfterImport._busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader)
        return spec


class _Loader:
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        from importlib.util import find_spec

        if find_spec("dlsort") is None:  # dlsort uninstalled but this hook left behind
            return
        from dlsort.registration import register

        register()

    def __getattr__(self, name):
        return getattr(self._loader, name)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())

"""Pretrained networks: the catalog, search, download from GIN, verification, cache and loading.

>>> import dlsort.models as models
>>> models.search(task="detector")                     # doctest: +SKIP
>>> models.recommend(recording, "detector")[0].ref     # doctest: +SKIP
>>> tensors, card, model_file = models.load("detector-generic", task="detector")  # doctest: +SKIP

Environment variables (``DLSORT_REGISTRY_URL``, ``DLSORT_CATALOG_REPO``, ``DLSORT_CACHE``,
``DLSORT_OFFLINE``, ``GIN_TOKEN``) are described in ``dlsort.models.settings``; those of a
container's start-up pull in ``dlsort.models.startup``.
"""

from dlsort.models.catalog import TASKS, CatalogError, ModelEntry, known_models, recommend, search
from dlsort.models.client import (
    ModelFile,
    clear_cache,
    fetch,
    find_catalogs,
    load,
    resolve_model,
    update_catalog,
    verify,
)
from dlsort.models.download import ChecksumError, ModelUnavailableError

__all__ = [
    "TASKS", "CatalogError", "ChecksumError", "ModelEntry", "ModelFile", "ModelUnavailableError", "clear_cache",
    "fetch", "find_catalogs", "known_models", "load", "recommend", "resolve_model", "search", "update_catalog",
    "verify",
]

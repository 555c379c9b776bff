"""Where models come from and go to: registry URL, cache directory, offline mode, token.

Every setting is read from the environment at call time, so a test or a container start-up
script can change it without re-importing dlsort.

==========================  =========================================================
``DLSORT_REGISTRY_URL``     base URL of the GIN server (default ``https://gin.g-node.org``);
                            point it at a mirror that serves the same URL layout
``DLSORT_CATALOG_REPO``     ``owner/name`` of the repository holding the catalog
                            (default ``dlsort/models``)
``DLSORT_CACHE``            cache directory (default: the per-user cache from platformdirs)
``DLSORT_OFFLINE``          ``1``: never touch the network; only cached and embedded models
``GIN_TOKEN``               GIN access token, sent as ``Authorization: token ...``
==========================  =========================================================
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_REGISTRY_URL = "https://gin.g-node.org"
DEFAULT_CATALOG_REPO = "dlsort/models"
DEFAULT_CATALOG_REF = "master"
EMBEDDED_DIR = Path(__file__).parent / "embedded"


def registry_url() -> str:
    """Base URL of the GIN server, without a trailing slash."""
    return os.environ.get("DLSORT_REGISTRY_URL", DEFAULT_REGISTRY_URL).rstrip("/")


def catalog_repo() -> str:
    """``owner/name`` of the GIN repository that publishes the catalog."""
    return os.environ.get("DLSORT_CATALOG_REPO", DEFAULT_CATALOG_REPO)


def offline() -> bool:
    """True when ``DLSORT_OFFLINE`` is set to a true value (1, true, yes)."""
    return os.environ.get("DLSORT_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def cache_dir() -> Path:
    """The model cache: ``DLSORT_CACHE`` or ``<user cache>/dlsort/models``."""
    configured = os.environ.get("DLSORT_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlsort")) / "models"


def auth_headers() -> dict[str, str]:
    """``Authorization`` header for GIN when ``GIN_TOKEN`` is set, else nothing."""
    token = os.environ.get("GIN_TOKEN")
    return {"Authorization": f"token {token}"} if token else {}


def raw_url(repo: str, ref: str, path: str) -> str:
    """URL of a file in a GIN repository: ``<registry>/<owner>/<name>/raw/<ref>/<path>``.

    GIN serves the git-annex content there, not the pointer.
    """
    return f"{registry_url()}/{repo}/raw/{ref}/{path.lstrip('/')}"

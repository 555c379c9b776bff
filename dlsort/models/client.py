"""Fetch, verify, load and forget models; refresh the catalog; find catalogs on a GIN server."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from dlsort.errors import DlsortInputError
from dlsort.models import settings
from dlsort.models.catalog import (
    CatalogError,
    ModelEntry,
    cached_catalog_path,
    find_entry,
    known_models,
    read_card,
    validate_catalog,
)
from dlsort.models.download import (
    OFFLINE_HINT,
    TIMEOUT_S,
    ChecksumError,
    ModelUnavailableError,
    download_verified,
    sha256_of,
)

CATALOG_FILE = "index.json"


@dataclass(frozen=True)
class ModelFile:
    """A weight file ready to load, and what identifies it in provenance.

    Attributes
    ----------
    path : Path
        The verified ``.safetensors`` file.
    card : dict
        Its model card (catalog entry or the ``card.json`` beside a local file).
    id : str
        ``id@version`` for catalog models, the resolved path for local files.
    sha256 : str
    source : str
        Where the bytes came from: ``"embedded"`` (in the package), the URL a cached file was
        downloaded from, or ``"local file"``.
    """

    path: Path
    card: dict
    id: str
    sha256: str
    source: str

    def provenance(self) -> dict:
        """The record ``provenance.json`` keeps for this model."""
        return {"id": self.id, "sha256": self.sha256, "task": self.card["task"], "source": self.source}


def local_path(entry: ModelEntry) -> Path:
    """Where a catalog model lives on this machine: inside the package if embedded, else in the cache.

    Cache names carry the version and checksum prefix, so versions never collide.
    """
    if entry.location["kind"] == "embedded":
        return settings.EMBEDDED_DIR / entry.location["path"]
    return settings.cache_dir() / "weights" / f"{entry.id}-{entry.version}-{entry.sha256[:16]}.safetensors"


def _url(entry: ModelEntry) -> str:
    location = entry.location
    return settings.raw_url(location["repo"], location["commit"], location["path"])


def fetch(model: str, progress_bar: bool = True) -> ModelFile:
    """Make a catalog model available locally, verified: embedded, cached, or downloaded from GIN.

    Parameters
    ----------
    model : str
        ``id`` (newest version) or ``id@version``.
    progress_bar : bool, default: True

    Returns
    -------
    ModelFile

    Raises
    ------
    DlsortInputError
        Unknown model.
    ModelUnavailableError
        Offline and not cached, server unreachable, HTTP error, or unwritable cache.
    ChecksumError
        The content does not match the catalog's sha256.
    """
    entry = find_entry(model)
    path = local_path(entry)
    if entry.location["kind"] == "embedded":
        if not path.exists():
            raise ModelUnavailableError(f"embedded model {entry.ref} is missing from {path}: reinstall dlsort")
        _check_sha256(path, entry.sha256, f"embedded model {entry.ref} ({path}); reinstall dlsort")
        return ModelFile(path, entry.record, entry.ref, entry.sha256, "embedded")
    if settings.offline():
        if not path.exists():
            raise ModelUnavailableError(
                f"{entry.ref} is not in the cache {settings.cache_dir()} and DLSORT_OFFLINE is set; unset it to "
                f"download the model from {_url(entry)}, or copy the file there"
            )
        _check_sha256(path, entry.sha256, f"cached {entry.ref} ({path}); delete it and fetch again online")
    else:
        download_verified(_url(entry), path, entry.sha256, settings.auth_headers(), progress_bar,
                          lock_dir=settings.cache_dir() / "locks")
    return ModelFile(path, entry.record, entry.ref, entry.sha256, _url(entry))


def _check_sha256(path: Path, expected: str, what: str) -> None:
    found = sha256_of(path)
    if found != expected:
        raise ChecksumError(f"{what}: sha256 {found} does not match the catalog's {expected}")


def resolve_model(model: str | Path, task: str, progress_bar: bool = True) -> ModelFile:
    """A stage's ``model`` parameter (catalog id, ``id@version`` or path to a ``.safetensors``) as a file.

    A local file needs its model card beside it, as ``card.json`` or ``<stem>.json``.

    Parameters
    ----------
    model : str or Path
    task : str
        The stage's task; a model trained for another task is refused.
    progress_bar : bool, default: True

    Returns
    -------
    ModelFile
    """
    candidate = Path(model).expanduser()
    if candidate.suffix == ".safetensors" or candidate.exists():
        model_file = _local_model(candidate)
    else:
        model_file = fetch(str(model), progress_bar=progress_bar)
    if model_file.card["task"] != task:
        raise DlsortInputError(f"model {model_file.id} is a {model_file.card['task']} model, not a {task} model")
    return model_file


def _local_model(path: Path) -> ModelFile:
    if not path.is_file():
        raise DlsortInputError(f"model file not found: {path}")
    if path.suffix != ".safetensors":
        raise DlsortInputError(f"{path} is not a .safetensors file; dlsort never loads pickled weights")
    cards = [path.with_suffix(".json"), path.parent / "card.json"]
    card_path = next((card for card in cards if card.is_file()), None)
    if card_path is None:
        raise DlsortInputError(f"no model card beside {path}: expected {cards[0].name} or card.json")
    resolved = path.resolve()
    return ModelFile(resolved, read_card(card_path), str(resolved), sha256_of(resolved), "local file")


def load(model: str | Path, task: str, device: str = "cpu") -> tuple[dict, dict, ModelFile]:
    """Load a model's tensors with safetensors (never pickle).

    Parameters
    ----------
    model : str or Path
        As for ``resolve_model``.
    task : str
    device : str, default: "cpu"

    Returns
    -------
    tensors : dict of str to torch.Tensor
    card : dict
    model_file : ModelFile
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model_file = resolve_model(model, task)
    try:
        tensors = load_file(str(model_file.path), device=device)
    except (SafetensorError, OSError) as error:
        raise ModelUnavailableError(f"{model_file.path} is not a readable safetensors file: {error}") from error
    return tensors, model_file.card, model_file


def verify(model: str | None = None) -> dict[str, bool]:
    """Re-hash cached models against the catalog.

    Parameters
    ----------
    model : str or None
        One model (``id`` or ``id@version``), or None for every cached catalog model.

    Returns
    -------
    dict
        ``id@version`` -> True if the cached file matches, False if it does not (not-cached models are left out).
    """
    entries = [find_entry(model)] if model is not None else known_models()
    results = {}
    for entry in entries:
        path = local_path(entry)
        if path.exists():
            results[entry.ref] = sha256_of(path) == entry.sha256
    return results


def clear_cache() -> int:
    """Delete the model cache (weights and downloaded catalogs); returns the bytes freed."""
    folder = settings.cache_dir()
    if not folder.exists():
        return 0
    freed = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    shutil.rmtree(folder)
    return freed


def update_catalog(repo: str | None = None, ref: str = settings.DEFAULT_CATALOG_REF) -> Path:
    """Download the catalog published in a GIN repository into the cache.

    Parameters
    ----------
    repo : str or None
        ``owner/name``; default ``DLSORT_CATALOG_REPO`` (``dlsort/models``).
    ref : str, default: "master"
        Branch, tag or full commit id.

    Returns
    -------
    Path
        The cached catalog (used by ``search`` and ``fetch`` from now on).
    """
    repo = repo or settings.catalog_repo()
    if settings.offline():
        raise ModelUnavailableError("DLSORT_OFFLINE is set: unset it to update the catalog")
    url = settings.raw_url(repo, ref, CATALOG_FILE)
    dest = cached_catalog_path(repo)
    staged = dest.with_name(dest.name + ".new")
    download_verified(url, staged, None, settings.auth_headers(), progress_bar=False,
                      lock_dir=settings.cache_dir() / "locks")
    try:
        validate_catalog(json.loads(staged.read_text()), url)
    except (json.JSONDecodeError, CatalogError) as error:
        staged.unlink()
        raise CatalogError(f"{url} is not a dlsort catalog: {error}") from error
    staged.replace(dest)
    return dest


def find_catalogs(query: str = "dlsort", limit: int = 50) -> list[dict]:
    """GIN repositories matching ``query`` that publish a dlsort catalog at their default branch.

    Uses ``/api/v1/repos/search`` (no token needed) and then reads each hit's ``index.json``.

    Parameters
    ----------
    query : str, default: "dlsort"
    limit : int, default: 50
        GIN caps a page at 50 repositories.

    Returns
    -------
    list of dict
        ``{"repo", "ref", "num_models", "description"}`` per catalog found.
    """
    import requests

    if settings.offline():
        raise ModelUnavailableError("DLSORT_OFFLINE is set: unset it to search GIN for catalogs")
    url = f"{settings.registry_url()}/api/v1/repos/search"
    answer = _get_json(requests, url, params={"q": query, "limit": limit})
    found = []
    for repo in answer.get("data", []):
        ref = repo.get("default_branch") or settings.DEFAULT_CATALOG_REF
        catalog_url = settings.raw_url(repo["full_name"], ref, CATALOG_FILE)
        try:
            catalog = validate_catalog(_get_json(requests, catalog_url), catalog_url)
        except (ModelUnavailableError, CatalogError):
            continue  # no catalog there, or not ours
        found.append({"repo": repo["full_name"], "ref": ref, "num_models": len(catalog["models"]),
                      "description": repo.get("description", "")})
    return found


def _get_json(requests, url: str, params: dict | None = None) -> dict:
    try:
        response = requests.get(url, params=params, headers=settings.auth_headers(), timeout=TIMEOUT_S)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise ModelUnavailableError(f"cannot reach {url} ({error}); {OFFLINE_HINT}") from error
    if response.status_code != 200:
        raise ModelUnavailableError(f"{url} answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as error:
        raise ModelUnavailableError(f"{url} did not answer JSON") from error


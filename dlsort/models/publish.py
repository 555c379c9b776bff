"""Publish a trained model to a GIN catalog repository with git-annex.

The model folder holds ``weights.safetensors`` and ``card.json``. Publishing works in a local
git-annex clone of the catalog repository (for GIN: ``git clone
git@gin.g-node.org:/<owner>/<name>.git`` then ``git annex init``; see ``registry/README.md``):

1. validate the card and open the weights with safetensors;
2. commit the weights (annexed) and the card under ``<task>/<id>/<version>/``;
3. add the catalog entry, pinned to that commit, to ``index.json`` and commit it;
4. push both branches and copy the annexed content to the remote (over SSH for GIN, which
   accepts annexed uploads only there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dlsort.errors import DlsortInputError
from dlsort.models.catalog import read_card, validate_catalog
from dlsort.models.client import CATALOG_FILE
from dlsort.models.download import sha256_of

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"


def _git(clone: Path, *args: str) -> str:
    # pip installs git-annex beside the interpreter; put that folder on PATH for git's "annex" subcommand
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    try:
        done = subprocess.run(["git", *args], cwd=clone, env=env, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise DlsortInputError("git is not installed; publishing needs git and git-annex") from error
    if done.returncode != 0:
        output = done.stderr.strip() or done.stdout.strip()
        raise DlsortInputError(f"`git {' '.join(args)}` failed in {clone}: {output}")
    return done.stdout.strip()


def read_model_dir(model_dir: Path) -> tuple[dict, Path]:
    """Validate a model folder and return its card and weight file.

    Parameters
    ----------
    model_dir : Path
        Folder with ``weights.safetensors`` and ``card.json``.

    Returns
    -------
    card : dict
    weights : Path
    """
    from safetensors import SafetensorError, safe_open

    model_dir = Path(model_dir)
    weights, card_path = model_dir / WEIGHTS_FILE, model_dir / CARD_FILE
    for path in (weights, card_path):
        if not path.is_file():
            raise DlsortInputError(f"{path} not found: a model folder holds {WEIGHTS_FILE} and {CARD_FILE}")
    card = read_card(card_path)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            if not list(handle.keys()):
                raise DlsortInputError(f"{weights} holds no tensors")
    except SafetensorError as error:
        raise DlsortInputError(f"{weights} is not a readable safetensors file: {error}") from error
    return card, weights


def _catalog_without(index_path: Path, card: dict) -> dict:
    """The catalog at ``index_path`` (empty if absent), refusing a card whose ``id@version`` it lists."""
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schema_version": 1, "models": []}
    validate_catalog(index, str(index_path))
    ref = f"{card['id']}@{card['version']}"
    if any(f"{entry['id']}@{entry['version']}" == ref for entry in index["models"]):
        raise DlsortInputError(f"{ref} is already in {index_path}; published versions never change: bump the version")
    return index


def _add_entry(index_path: Path, index: dict, card: dict, weights: Path, card_path: str, location: dict) -> dict:
    """Append the entry of ``card`` + checksum + location to ``index``, validate and write it."""
    entry = {**card, "size_bytes": weights.stat().st_size, "sha256": sha256_of(weights), "card": card_path,
             "location": location}
    index["models"].append(entry)
    validate_catalog(index, str(index_path))
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return entry


def embed(model_dir: Path, registry: Path, embedded_dir: Path) -> dict:
    """Ship a model inside the package: copy its weights to ``embedded_dir`` and list it in the catalog.

    For developers preparing a release (``registry/train_shipped_models.py``). The card is copied
    to ``registry/cards/<id>-<version>.json``.

    Parameters
    ----------
    model_dir : Path
        Folder with ``weights.safetensors`` and ``card.json``.
    registry : Path
        The repository's ``registry/`` folder (holding ``index.json``).
    embedded_dir : Path
        The package's folder of embedded weights (``dlsort/models/embedded``).

    Returns
    -------
    dict
        The catalog entry added.
    """
    card, weights = read_model_dir(model_dir)
    index_path = Path(registry) / CATALOG_FILE
    index = _catalog_without(index_path, card)
    name = f"{card['id']}-{card['version']}"
    Path(embedded_dir).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, Path(embedded_dir) / f"{name}.safetensors")
    cards = Path(registry) / "cards"
    cards.mkdir(exist_ok=True)
    (cards / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    location = {"kind": "embedded", "path": f"{name}.safetensors"}
    return _add_entry(index_path, index, card, weights, f"cards/{name}.json", location)


def publish(model_dir: Path, repo: str, clone: Path, remote: str | None = "origin") -> dict:
    """Add a model to the catalog in ``clone`` and push it.

    Parameters
    ----------
    model_dir : Path
        Folder with ``weights.safetensors`` and ``card.json``.
    repo : str
        ``owner/name`` of the GIN repository ``clone`` belongs to (written into the entry's location).
    clone : Path
        A git-annex working copy of that repository.
    remote : str or None, default: "origin"
        Where to push; None commits locally only.

    Returns
    -------
    dict
        The catalog entry added.

    Raises
    ------
    DlsortInputError
        Invalid card or weights, ``id@version`` already published, or a git / git-annex failure.
    """
    card, weights = read_model_dir(model_dir)
    clone = Path(clone)
    if not (clone / ".git").exists():
        raise DlsortInputError(f"{clone} is not a git clone of the catalog repository {repo}")
    _git(clone, "annex", "version")  # fails clearly when git-annex is missing
    index_path = clone / CATALOG_FILE
    index = _catalog_without(index_path, card)
    ref = f"{card['id']}@{card['version']}"

    folder = Path(card["task"]) / card["id"] / card["version"]
    (clone / folder).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, clone / folder / WEIGHTS_FILE)
    (clone / folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    _git(clone, "annex", "add", str(folder / WEIGHTS_FILE))
    _git(clone, "add", str(folder / CARD_FILE))
    _git(clone, "commit", "-q", "-m", f"add {ref}")
    commit = _git(clone, "rev-parse", "HEAD")

    location = {"kind": "gin", "repo": repo, "commit": commit, "path": (folder / WEIGHTS_FILE).as_posix()}
    entry = _add_entry(index_path, index, card, weights, (folder / CARD_FILE).as_posix(), location)
    _git(clone, "add", CATALOG_FILE)
    _git(clone, "commit", "-q", "-m", f"catalog: add {ref}")
    if remote is not None:
        branch = _git(clone, "rev-parse", "--abbrev-ref", "HEAD")
        _git(clone, "push", "-q", remote, branch)
        _git(clone, "annex", "copy", "--to", remote, str(folder / WEIGHTS_FILE))
        _git(clone, "annex", "sync", "--only-annex", "--no-content", remote)  # merges and pushes git-annex
    return entry

"""The model catalog: validation against its JSON schema, the catalogs known here, search and ranking.

A catalog (``registry/index.json`` in the repository, ``index.json`` at the root of the GIN
repository that publishes it) lists every model with its card, checksum and location. dlsort
always knows the catalog shipped in the wheel; ``dlsort.models.update_catalog`` adds the latest
published one to the cache.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.version import Version

from dlsort.errors import DlsortInputError
from dlsort.geometry import probe_family
from dlsort.models import settings

TASKS = ("deepinterpolation", "detector", "denoiser", "autoencoder")
SCHEMA_PATH = Path(__file__).parent / "catalog.schema.json"
# In the wheel the shipped catalog sits beside this module (force-included from registry/index.json);
# in a source checkout it is read from registry/ itself.
PACKAGED_CATALOG = Path(__file__).parent / "index.json"
SOURCE_CATALOG = Path(__file__).parents[2] / "registry" / "index.json"


class CatalogError(DlsortInputError):
    """A catalog or model card does not follow the schema, or two catalogs disagree."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of a catalog.

    Attributes
    ----------
    record : dict
        The catalog entry as published (card fields, ``size_bytes``, ``sha256``, ``location``).
    source : str
        Which catalog it came from (``"embedded"`` or ``owner/name`` of a GIN repository).
    """

    record: dict
    source: str

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def version(self) -> str:
        return self.record["version"]

    @property
    def ref(self) -> str:
        """``id@version``, the unambiguous name of this model."""
        return f"{self.id}@{self.version}"

    @property
    def task(self) -> str:
        return self.record["task"]

    @property
    def sha256(self) -> str:
        return self.record["sha256"]

    @property
    def size_bytes(self) -> int:
        return self.record["size_bytes"]

    @property
    def location(self) -> dict:
        return self.record["location"]

    def supports(self, family: str | None = None, num_channels: int | None = None) -> bool:
        """Whether the model declares the probe family and channel count (None: any) as supported."""
        return geometry_supports(self.record["geometry"], family, num_channels)


def geometry_supports(geometry: dict, family: str | None = None, num_channels: int | None = None) -> bool:
    """Whether a card's ``geometry`` declares the probe family and channel count (None: any) as supported.

    Parameters
    ----------
    geometry : dict
        ``probe_families`` (``"any"`` accepts every family), optional ``min_channels`` / ``max_channels``.
    family : str or None
        One of ``dlsort.geometry.PROBE_FAMILIES``.
    num_channels : int or None

    Returns
    -------
    bool
    """
    families = geometry["probe_families"]
    family_ok = family is None or "any" in families or family in families
    channels_ok = num_channels is None or (
        geometry.get("min_channels", 1) <= num_channels <= geometry.get("max_channels", math.inf)
    )
    return family_ok and channels_ok


@cache
def _validator(definition: str | None):
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    if definition is not None:
        schema = {**schema, "$ref": f"#/$defs/{definition}"}
        for key in ("required", "properties", "additionalProperties", "type"):
            schema.pop(key, None)
    return jsonschema.Draft202012Validator(schema)


def _check(document: object, definition: str | None, what: str) -> None:
    errors = sorted(_validator(definition).iter_errors(document), key=lambda error: list(error.absolute_path))
    if errors:
        error = errors[0]
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise CatalogError(f"{what} does not follow dlsort's catalog schema at {where}: {error.message}")


def validate_catalog(catalog: object, what: str = "catalog") -> dict:
    """Check a catalog against ``catalog.schema.json`` and for duplicate ``id@version``.

    Parameters
    ----------
    catalog : object
        The parsed JSON.
    what : str
        Name used in error messages (a path or URL).

    Returns
    -------
    dict
        The catalog, unchanged.

    Raises
    ------
    CatalogError
        Naming the first offending field.
    """
    _check(catalog, None, what)
    refs = [f"{entry['id']}@{entry['version']}" for entry in catalog["models"]]
    duplicates = sorted({ref for ref in refs if refs.count(ref) > 1})
    if duplicates:
        raise CatalogError(f"{what} lists {duplicates} more than once")
    return catalog


def validate_card(card: object, what: str = "model card") -> dict:
    """Check a model card (a catalog entry without size, checksum and location).

    Parameters
    ----------
    card : object
        The parsed ``card.json``.
    what : str
        Name used in error messages.

    Returns
    -------
    dict
        The card, unchanged.
    """
    _check(card, "card", what)
    return card


def check_model_name(model_id: str, version: str) -> None:
    """Refuse an id or version the catalog schema would refuse (before anything is trained or written).

    Raises
    ------
    DlsortInputError
        With the pattern the value must follow.
    """
    import re

    properties = json.loads(SCHEMA_PATH.read_text())["$defs"]["card"]["properties"]
    for name, value in (("id", model_id), ("version", version)):
        pattern = properties[name]["pattern"]
        if not re.fullmatch(pattern.strip("^$"), value):
            raise DlsortInputError(f"model {name} {value!r} must match {pattern} (for example "
                                   f"{'my-detector' if name == 'id' else '0.1.0'})")


def read_card(path: Path) -> dict:
    """Read and validate a model card file (``card.json``).

    Raises
    ------
    CatalogError
        Unreadable JSON or a card that does not follow the schema.
    """
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CatalogError(f"cannot read the model card {path}: {error}") from error
    return validate_card(card, str(path))


def read_catalog(path: Path, source: str) -> list[ModelEntry]:
    """Read and validate a catalog file.

    Parameters
    ----------
    path : Path
    source : str
        Recorded in every entry (``"embedded"`` or the GIN repository).

    Returns
    -------
    list of ModelEntry
    """
    try:
        catalog = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CatalogError(f"cannot read the model catalog {path}: {error}") from error
    validate_catalog(catalog, str(path))
    return [ModelEntry(record, source) for record in catalog["models"]]


def cached_catalog_path(repo: str) -> Path:
    """Where ``update_catalog`` keeps the catalog of GIN repository ``repo``."""
    return settings.cache_dir() / "catalogs" / (repo.replace("/", "__") + ".json")


def known_models() -> list[ModelEntry]:
    """Every model of the shipped catalog and of the catalogs downloaded into the cache.

    Returns
    -------
    list of ModelEntry

    Raises
    ------
    CatalogError
        When two catalogs give the same ``id@version`` different checksums.
    """
    shipped = PACKAGED_CATALOG if PACKAGED_CATALOG.exists() else SOURCE_CATALOG
    entries = read_catalog(shipped, "embedded")
    folder = settings.cache_dir() / "catalogs"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        entries += read_catalog(path, path.stem.replace("__", "/"))
    by_ref: dict[str, ModelEntry] = {}
    for entry in entries:
        other = by_ref.setdefault(entry.ref, entry)
        if other.sha256 != entry.sha256:
            raise CatalogError(
                f"catalogs {other.source!r} and {entry.source!r} give {entry.ref} different checksums; "
                f"delete the cached copy under {folder} and run `dlsort models update`"
            )
    return list(by_ref.values())


def search(
    task: str | None = None,
    probe: str | None = None,
    sampling_frequency: float | None = None,
    num_channels: int | None = None,
) -> list[ModelEntry]:
    """Models matching every criterion given, newest version first within an id.

    Parameters
    ----------
    task : str or None
        One of ``TASKS``.
    probe : str or None
        A probe family (``dlsort.geometry.PROBE_FAMILIES``); models for ``"any"`` probe match too.
    sampling_frequency : float or None
        Keep models trained within a factor 1.5 of this rate (windows are resampled, so nearby
        rates work; far ones distort the waveform shapes the network learned).
    num_channels : int or None
        Keep models whose channel range includes it.

    Returns
    -------
    list of ModelEntry
    """
    if task is not None and task not in TASKS:
        raise DlsortInputError(f"task={task!r} is not a model task; choose one of {list(TASKS)}")
    found = []
    for entry in known_models():
        if task is not None and entry.task != task:
            continue
        if not entry.supports(probe, num_channels):
            continue
        if sampling_frequency is not None and _rate_distance(entry, sampling_frequency) > math.log(1.5):
            continue
        found.append(entry)
    newest_first = sorted(found, key=lambda entry: Version(entry.version), reverse=True)
    return sorted(newest_first, key=lambda entry: entry.id)


def _rate_distance(entry: ModelEntry, sampling_frequency: float) -> float:
    return abs(math.log(entry.record["sampling_frequency_hz"] / sampling_frequency))


def recommend(recording, task: str) -> list[ModelEntry]:
    """Compatible models of ``task`` for a recording, best first.

    Ranked by: declared for the recording's probe family (rather than for any probe), then
    closeness of the training sampling rate, then newest version.

    Parameters
    ----------
    recording : BaseRecording
        A recording with channel locations.
    task : str
        One of ``TASKS``.

    Returns
    -------
    list of ModelEntry
        Empty when nothing fits (the stage's classical method still works).
    """
    shank_ids = recording.get_channel_groups() if recording.has_probe() else None
    family = probe_family(recording.get_channel_locations(), shank_ids)
    rate = recording.sampling_frequency
    compatible = search(task=task, probe=family, sampling_frequency=rate, num_channels=recording.get_num_channels())


    def rank(entry: ModelEntry) -> tuple[bool, float]:
        generic = family not in entry.record["geometry"]["probe_families"]
        return generic, round(_rate_distance(entry, rate), 6)

    newest_first = sorted(compatible, key=lambda entry: Version(entry.version), reverse=True)
    return sorted(newest_first, key=rank)


def find_entry(model: str) -> ModelEntry:
    """The catalog entry named ``id`` (newest version) or ``id@version``.

    Raises
    ------
    DlsortInputError
        Listing the known ids when none matches.
    """
    model_id, _, version = model.partition("@")
    candidates = [entry for entry in known_models() if entry.id == model_id]
    if version:
        candidates = [entry for entry in candidates if entry.version == version]
    if not candidates:
        known = sorted({entry.ref for entry in known_models()})
        raise DlsortInputError(
            f"no model {model!r} in the catalogs known here (known: {known or 'none'}); "
            "run `dlsort models update` to fetch the latest catalog, or give a path to a .safetensors file"
        )
    return max(candidates, key=lambda entry: Version(entry.version))

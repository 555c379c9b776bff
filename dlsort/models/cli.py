"""``dlsort models ...``: search, inspect, download, verify, publish and convert pretrained networks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dlsort.geometry import PROBE_FAMILIES
from dlsort.models import catalog, client, settings
from dlsort.models.catalog import TASKS, ModelEntry


def _table(entries: list[ModelEntry]) -> str:
    if not entries:
        return "no models (run `dlsort models update` to fetch the latest catalog)"
    rows = [("model", "task", "probes", "rate (Hz)", "size", "where", "local")]
    for entry in entries:
        families = ",".join(entry.record["geometry"]["probe_families"])
        where = "embedded" if entry.location["kind"] == "embedded" else entry.location["repo"]
        local = "yes" if client.local_path(entry).exists() else "no"
        size = f"{entry.size_bytes / 1e6:.1f} MB"
        rows.append((entry.ref, entry.task, families, f"{entry.record['sampling_frequency_hz']:g}", size, where, local))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _list(args: argparse.Namespace) -> int:
    print(_table(catalog.known_models()))
    return 0


def _search(args: argparse.Namespace) -> int:
    print(_table(catalog.search(args.task, args.probe, args.sampling_frequency, args.channels)))
    return 0


def _info(args: argparse.Namespace) -> int:
    entry = catalog.find_entry(args.model)
    print(json.dumps({**entry.record, "catalog": entry.source, "local_path": str(client.local_path(entry))}, indent=2))
    return 0


def _pull(args: argparse.Namespace) -> int:
    for model in args.models:
        model_file = client.fetch(model, progress_bar=not args.quiet)
        print(f"{model_file.id}: {model_file.path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    results = client.verify(args.model)
    if not results:
        print("no cached models to verify")
    for ref, ok in results.items():
        print(f"{ref}: {'ok' if ok else 'CHECKSUM MISMATCH (run `dlsort models pull` to fetch it again)'}")
    return 0 if all(results.values()) else 1


def _cache_clear(args: argparse.Namespace) -> int:
    freed = client.clear_cache()
    print(f"removed {settings.cache_dir()} ({freed / 1e6:.1f} MB)")
    return 0


def _update(args: argparse.Namespace) -> int:
    path = client.update_catalog(args.repo, args.ref)
    print(f"catalog of {args.repo or settings.catalog_repo()} saved to {path}")
    return 0


def _catalogs(args: argparse.Namespace) -> int:
    found = client.find_catalogs(args.query)
    if not found:
        print(f"no repository matching {args.query!r} on {settings.registry_url()} publishes a dlsort catalog")
    for hit in found:
        print(f"{hit['repo']} ({hit['ref']}): {hit['num_models']} models  {hit['description']}".rstrip())
    return 0


def _publish(args: argparse.Namespace) -> int:
    from dlsort.models.publish import publish

    entry = publish(Path(args.model_dir), args.repo, Path(args.clone), remote=None if args.no_push else args.remote)
    where = "committed locally" if args.no_push else f"pushed to {args.remote}"
    print(f"{entry['id']}@{entry['version']} {where}: commit {entry['location']['commit']}, sha256 {entry['sha256']}")
    return 0


def _convert_allen(args: argparse.Namespace) -> int:
    from dlsort.models.allen import convert_allen_h5

    weights = convert_allen_h5(Path(args.file), Path(args.output), model_id=args.id, version=args.version)
    print(f"{args.id}@{args.version}: {weights} (card {weights.parent / 'card.json'}); Allen Institute weights, "
          "non-commercial use only")
    return 0


def _repo(value: str) -> str:
    if value.count("/") != 1 or not all(value.split("/")):
        raise argparse.ArgumentTypeError(f"{value!r} is not owner/name")
    return value


def add_models_parser(commands) -> None:
    """Add ``dlsort models`` and its subcommands to the ``dlsort`` parser's subparsers."""
    models = commands.add_parser("models", help="search, download, verify and publish pretrained networks")
    sub = models.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="every model of the catalogs known here").set_defaults(handler=_list)

    search = sub.add_parser("search", help="models matching a task, probe family, sampling rate, channel count")
    search.add_argument("--task", choices=TASKS)
    search.add_argument("--probe", choices=PROBE_FAMILIES)
    search.add_argument("--sampling-frequency", type=float, metavar="HZ")
    search.add_argument("--channels", type=int)
    search.set_defaults(handler=_search)

    info = sub.add_parser("info", help="the catalog entry (model card, checksum, location) of a model")
    info.add_argument("model", help="id or id@version")
    info.set_defaults(handler=_info)

    pull = sub.add_parser("pull", help="download and verify models into the cache")
    pull.add_argument("models", nargs="+", help="ids or id@version")
    pull.add_argument("--quiet", action="store_true", help="no progress bar")
    pull.set_defaults(handler=_pull)

    verify = sub.add_parser("verify", help="re-hash cached models against the catalog (exit 1 on a mismatch)")
    verify.add_argument("model", nargs="?", help="one model (default: every cached model)")
    verify.set_defaults(handler=_verify)

    sub.add_parser("cache-clear", help="delete the model cache").set_defaults(handler=_cache_clear)

    update = sub.add_parser("update", help="download the latest published catalog")
    update.add_argument("--repo", type=_repo, help=f"owner/name (default {settings.DEFAULT_CATALOG_REPO})")
    update.add_argument("--ref", default=settings.DEFAULT_CATALOG_REF, help="branch, tag or full commit id")
    update.set_defaults(handler=_update)

    catalogs = sub.add_parser("catalogs", help="find GIN repositories that publish a dlsort catalog")
    catalogs.add_argument("--query", default="dlsort")
    catalogs.set_defaults(handler=_catalogs)

    publish = sub.add_parser("publish", help="add a model folder (weights.safetensors + card.json) to a catalog")
    publish.add_argument("model_dir")
    publish.add_argument("--repo", type=_repo, required=True, help="owner/name of the GIN catalog repository")
    publish.add_argument("--clone", required=True, help="local git-annex clone of that repository")
    publish.add_argument("--remote", default="origin", help="remote to push to (default origin)")
    publish.add_argument("--no-push", action="store_true", help="commit in the clone only")
    publish.set_defaults(handler=_publish)

    convert = sub.add_parser("convert-allen", help="convert the Allen Institute's DeepInterpolation Neuropixels model "
                                                    "(Keras .h5) into a per-frame U-Net model folder")
    convert.add_argument("file", help="the Keras .h5 (unet_single_ephys_1024)")
    convert.add_argument("--output", required=True, help="folder for weights.safetensors and card.json")
    convert.add_argument("--id", default="deepinterpolation-allen-np1", help="model id of the card")
    convert.add_argument("--version", default="1.0.0", help="model version of the card")
    convert.set_defaults(handler=_convert_allen)


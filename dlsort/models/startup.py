"""A container's start-up pull: the catalog's image models from GIN into the cache, or the embedded ones.

The images run ``python -m dlsort.models.startup`` before their command (``dlsort-entrypoint``
in Docker, ``%startscript`` in Apptainer). It refreshes the catalog from ``DLSORT_CATALOG_REPO``,
fetches and verifies every model the catalog marks ``"image_default": true`` plus those named in
``DLSORT_EXTRA_MODELS``, and writes what happened to a status file. When GIN cannot be reached
(or the cache is read-only, or a checksum fails) it says so in one line and the sorter uses the
models embedded in the package; the container starts either way.

A sort in the same container waits for a start-up still running (``wait_for_startup``) and
copies the status into ``provenance.json``, so a sorting says where its weights came from.

==========================  =========================================================
``DLSORT_STARTUP_DIR``      folder of the status file ``dlsort-startup-<uid>.json``; set by
                            the images, unset elsewhere (then no sort waits for a start-up)
``DLSORT_PULL_AT_START``    ``0``: skip the pull (the embedded and cached models are used)
``DLSORT_EXTRA_MODELS``     more models to pull, ``id`` or ``id@version``, separated by
                            spaces or commas
==========================  =========================================================
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

CONNECT_TIMEOUT_S = 5.0
WAIT_TIMEOUT_S = 600.0
POLL_S = 0.2


def status_path() -> Path | None:
    """The status file of this user's start-up, or None outside an image (``DLSORT_STARTUP_DIR`` unset)."""
    folder = os.environ.get("DLSORT_STARTUP_DIR")
    return Path(folder) / f"dlsort-startup-{os.getuid()}.json" if folder else None


def _write_status(status: dict) -> None:
    path = status_path()
    if path is None:
        return
    staged = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        staged.write_text(json.dumps(status, indent=2))
        staged.replace(path)
    except OSError as error:
        print(f"dlsort: cannot write the start-up status {path} ({error.strerror})", file=sys.stderr)


def _requested_models(entries: list, extra: str) -> list[str]:
    refs = [entry.ref for entry in entries if entry.record.get("image_default")]
    refs += [ref for ref in re.split(r"[\s,]+", extra) if ref and ref not in refs]
    return refs


def _check_reachable(url: str) -> None:
    import requests

    from dlsort.models.download import ModelUnavailableError

    try:
        requests.head(url, timeout=CONNECT_TIMEOUT_S)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise ModelUnavailableError(f"cannot reach {url} ({type(error).__name__})") from error


def pull_image_models() -> dict:
    """Refresh the catalog and fetch the image models; never raises for an unreachable or bad registry.

    Returns
    -------
    dict
        The status written to the status file (``main`` adds the ``seconds`` it took): ``state``
        is ``"pulled"`` (``models``: ref -> where it came from), ``"fallback"`` (``reason``, and
        the embedded ``models`` the sorter can still use) or ``"skipped"``
        (``DLSORT_PULL_AT_START=0`` or ``DLSORT_OFFLINE=1``).
    """
    from dlsort.errors import DlsortInputError
    from dlsort.models import catalog, client, settings

    if os.environ.get("DLSORT_PULL_AT_START", "1").strip().lower() in ("0", "false", "no") or settings.offline():
        return {"state": "skipped", "reason": "DLSORT_PULL_AT_START=0 or DLSORT_OFFLINE=1"}
    extra = os.environ.get("DLSORT_EXTRA_MODELS", "")
    try:
        _check_reachable(settings.registry_url())
        downloaded = client.update_catalog()
    except DlsortInputError as error:  # unreachable, HTTP error, not a catalog, read-only cache
        return _fallback(str(error), extra)
    try:
        entries = catalog.known_models()
    except catalog.CatalogError as error:  # the published catalog contradicts the shipped one: drop it
        downloaded.unlink()
        return _fallback(str(error), extra)
    try:
        pulled = {ref: client.fetch(ref, progress_bar=False).source for ref in _requested_models(entries, extra)}
    except DlsortInputError as error:  # unknown extra model, HTTP error, checksum mismatch, read-only cache
        return _fallback(str(error), extra)
    return {"state": "pulled", "registry": settings.registry_url(), "models": pulled}


def _fallback(reason: str, extra: str) -> dict:
    from dlsort.models import catalog

    try:
        entries = catalog.known_models()
    except catalog.CatalogError:  # another cached catalog disagrees with the shipped one
        entries = []
    embedded = {entry.ref for entry in entries if entry.location["kind"] == "embedded"}
    usable = [ref for ref in _requested_models(entries, extra) if ref in embedded]
    return {"state": "fallback", "reason": reason, "models": {ref: "embedded" for ref in usable}}


def summary(status: dict) -> str:
    """The one line a start-up prints."""
    models = ", ".join(status.get("models", {})) or "none"
    if status["state"] == "pulled":
        return f"dlsort: image models ready from {status['registry']}: {models}"
    if status["state"] == "fallback":
        return f"dlsort: {status['reason']}; using the models embedded in the image ({models})"
    return f"dlsort: start-up pull skipped ({status['reason']})"


def main() -> int:
    """Entry point of the images' start-up: write "running", pull, write the outcome, print one line."""
    _write_status({"state": "running", "pid": os.getpid()})
    started = time.monotonic()
    try:
        status = pull_image_models()
    except Exception as error:  # the container must start even if the pull itself breaks
        status = {"state": "fallback", "reason": f"start-up pull failed: {error!r}", "models": {}}
    status["seconds"] = round(time.monotonic() - started, 3)
    _write_status(status)
    print(summary(status), file=sys.stderr)
    return 0


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process with that id
        return True
    return True


def wait_for_startup(timeout_s: float = WAIT_TIMEOUT_S) -> dict | None:
    """The outcome of this container's start-up pull, waiting while it still runs.

    Parameters
    ----------
    timeout_s : float, default: 600
        Longest wait; then the status so far is returned.

    Returns
    -------
    dict or None
        The status (see ``pull_image_models``), ``{"state": "interrupted"}`` if the start-up
        process died before finishing, or None outside an image or when no start-up ran.
    """
    path = status_path()
    deadline = time.monotonic() + timeout_s
    announced = False
    while path is not None and path.exists():
        try:
            status = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):  # replaced between exists() and read
            time.sleep(POLL_S)
            continue
        if status.get("state") != "running":
            return status
        if not _running(status["pid"]):
            return {"state": "interrupted", "reason": f"start-up process {status['pid']} ended before finishing"}
        if time.monotonic() > deadline:
            return {"state": "running", "reason": f"still pulling after {timeout_s:.0f} s"}
        if not announced:
            print("dlsort: waiting for the container's start-up pull of models", file=sys.stderr)
            announced = True
        time.sleep(POLL_S)
    return None


if __name__ == "__main__":
    sys.exit(main())

"""Verified, resumable, atomic downloads into the model cache, safe when processes race.

The file is written to ``<dest>.part`` (resumed with an HTTP ``Range`` request after an
interruption), its sha256 checked, and only then renamed to ``dest``; a lock file serialises
processes fetching the same file, so the second one finds it in place. A file whose checksum
does not match is deleted, never used.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from dlsort.errors import DlsortInputError

RETRIES = 4
BACKOFF_S = 0.5
TIMEOUT_S = 30.0
BLOCK_BYTES = 1 << 20
STREAM_BYTES = 1 << 16  # a dropped connection loses at most this much of what arrived
OFFLINE_HINT = (
    "check the network, set DLSORT_REGISTRY_URL to a mirror, or set DLSORT_OFFLINE=1 to use only cached and "
    "embedded models"
)


class ModelUnavailableError(DlsortInputError):
    """A model or catalog cannot be downloaded or read; the message names the URL or path and the fix."""


class ChecksumError(ModelUnavailableError):
    """Downloaded or cached content does not have the sha256 the catalog gives."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelUnavailableError(
            f"cannot create the model cache {folder} ({error.strerror}); set DLSORT_CACHE to a writable folder"
        ) from error
    if not os.access(folder, os.W_OK):
        raise ModelUnavailableError(
            f"the model cache {folder} is not writable; set DLSORT_CACHE to a writable folder "
            "(models already in a read-only cache are still used)"
        )


def download_verified(
    url: str,
    dest: Path,
    sha256: str | None,
    headers: dict | None = None,
    progress_bar: bool = True,
    lock_dir: Path | None = None,
) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right checksum is already there.

    Parameters
    ----------
    url : str
    dest : Path
        Final path; its folder is created.
    sha256 : str or None
        Expected hex digest; None skips the check (only for catalogs, which are validated instead).
    headers : dict or None
        Extra HTTP headers (e.g. GIN's ``Authorization``).
    progress_bar : bool, default: True
    lock_dir : Path or None
        Folder of the lock files (default: ``.locks`` beside ``dest``), kept apart so that a failed
        download leaves nothing beside the models.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    ModelUnavailableError
        The server cannot be reached after retries, answers with an error, or the cache is not writable.
    ChecksumError
        The content's sha256 differs from ``sha256`` (nothing is left in the cache).
    """
    import filelock

    dest = Path(dest)
    if sha256 is not None and dest.exists() and sha256_of(dest) == sha256:
        return dest
    _writable_folder(dest.parent)
    lock_dir = Path(lock_dir) if lock_dir is not None else dest.parent / ".locks"
    _writable_folder(lock_dir)
    with filelock.FileLock(str(lock_dir / (dest.name + ".lock"))):
        if sha256 is not None and dest.exists():
            if sha256_of(dest) == sha256:  # another process finished it while we waited
                return dest
            dest.unlink()  # stale or corrupt: fetch again
        part = Path(str(dest) + ".part")
        if sha256 is None:
            part.unlink(missing_ok=True)  # unverifiable content is never resumed
        resumed = part.exists()
        _fetch_with_retries(url, part, dict(headers or {}), progress_bar)
        if sha256 is not None and resumed and sha256_of(part) != sha256:
            part.unlink()  # the partial file left earlier was not a prefix of this content: start over
            _fetch_with_retries(url, part, dict(headers or {}), progress_bar)
        if sha256 is not None:
            found = sha256_of(part)
            if found != sha256:
                part.unlink()
                raise ChecksumError(
                    f"{url} has sha256 {found}, but the catalog gives {sha256}; the file was discarded. The "
                    "server or mirror serves different content from what was published: report it, or use "
                    "another DLSORT_REGISTRY_URL"
                )
        os.replace(part, dest)
    return dest


def _fetch_with_retries(url: str, part: Path, headers: dict, progress_bar: bool) -> None:
    import requests

    last_error: Exception | None = None
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            _fetch_once(url, part, headers, progress_bar)
            return
        except requests.HTTPError as error:
            status = error.response.status_code
            if status < 500:
                hint = " (set GIN_TOKEN to a GIN access token)" if status in (401, 403) else ""
                raise ModelUnavailableError(f"{url} answered HTTP {status} {error.response.reason}{hint}") from error
            last_error = error
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            last_error = error
    reason = getattr(last_error.args[0], "reason", None) if last_error and last_error.args else None
    raise ModelUnavailableError(
        f"cannot download {url} after {RETRIES} attempts ({reason or last_error}); {OFFLINE_HINT}"
    )


def _fetch_once(url: str, part: Path, headers: dict, progress_bar: bool) -> None:
    """One GET, resuming ``part`` if it exists and the server honours ``Range``."""
    import requests
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    request_headers = {**headers, **({"Range": f"bytes={have}-"} if have else {})}
    with requests.get(url, headers=request_headers, stream=True, timeout=TIMEOUT_S) as response:
        if response.status_code == 416:  # nothing left to fetch: the part is complete
            return
        response.raise_for_status()
        resumed = response.status_code == 206
        length = int(response.headers.get("Content-Length", 0)) or None
        total = (have + length) if (resumed and length) else length
        with open(part, "ab" if resumed else "wb") as stream, tqdm(
            total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
            desc=url.rsplit("/", 1)[-1], disable=not progress_bar,
        ) as bar:
            received = 0
            for block in response.iter_content(STREAM_BYTES):
                stream.write(block)
                received += len(block)
                bar.update(len(block))
        if length is not None and received < length:
            raise requests.exceptions.ChunkedEncodingError(f"connection closed after {received} of {length} bytes")

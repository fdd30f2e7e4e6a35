"""Every byte the project reads or writes goes through here (fsspec: local paths and s3://).

Why one module: the output contract says a reader never sees a half-written file at a final path,
nothing is written outside the output root, and transient S3 faults are retried while permanent
ones fail fast with a message that says what to fix. Those rules are easy to break one call site
at a time, so every call site (input shards, outputs, the output lock, readers of committed
shards, teacher checkpoints copied from s3://) uses these few functions instead of fsspec.

S3 is configured only by the environment / standard AWS config that botocore reads
(AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL or
AWS_ENDPOINT_URL_S3, ~/.aws/config): never credentials passed as flags.

`pipeline.io.lock.OutputLock` (built on these) keeps two jobs from interleaving their writes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, TypeVar

import fsspec

try:
    from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError
    from botocore.exceptions import ConnectionError as BotoConnectionError
except ImportError:  # local-only installs (e.g. a GPU box without the S3 stack) still work

    class _NoBotocore(Exception):
        """Stands in for botocore's exceptions, which cannot occur without botocore."""

    ClientError = HTTPClientError = ReadTimeoutError = BotoConnectionError = _NoBotocore  # type: ignore[misc]
from fsspec.exceptions import FSTimeoutError
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

T = TypeVar("T")

# Temporary files are named with this prefix, in the directory of their final path, so that
# `pipeline.tools.verify` can tell a stray temp file from a published one.
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIXES = (".tmp", ".part", ".partial")

# Member names: characters kept as is; everything else is percent-encoded (see safe_member_name).
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_MEMBER_NAME = 200

_TRANSIENT_ERRNOS = frozenset(
    {errno.EBUSY, errno.EAGAIN, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
     getattr(errno, "EREMOTEIO", errno.EIO)}
)
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
     "ThrottlingException", "RequestLimitExceeded", "500", "502", "503", "504"}
)


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for `url` and the path on it (protocol stripped).

    s3:// uses s3fs with default arguments, so botocore resolves credentials, region and endpoint
    from the environment and AWS config files.
    """
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(root: str, *parts: str) -> str:
    """Join URL/path parts with '/'; refuses '..' and NUL so a join never leaves `root`."""
    out = root.rstrip("/") if root not in ("/", "") else root
    for part in parts:
        segments = [s for s in part.split("/") if s]
        for seg in segments:
            if seg in (".", "..") or "\x00" in seg:
                raise ValueError(f"unsafe path part {part!r} joined to {root!r}")
        if not segments:
            continue
        tail = "/".join(segments)
        out = f"{out}/{tail}" if out and not out.endswith("/") else f"{out}{tail}"
    return out


def safe_member_name(name: str) -> str:
    """A name safe as one path component and as a WebDataset key, derived from a sample key.

    Keys come from web data (dots, slashes, '..', NUL). Letters, digits, '_' and '-'
    are kept; every other character is percent-encoded as UTF-8 (so '.' -> '%2E', '/' -> '%2F'),
    which is injective, keeps the usual img2dataset keys ('000012345') unchanged, and leaves no dot
    in the key, so readers that split member names at the first dot find the key again. Very long
    names are cut and suffixed with a hash ('~' never appears otherwise).
    """
    if not name:
        raise ValueError("empty sample key: it cannot name an output member")
    out = []
    for ch in name:
        if ch in _SAFE_CHARS:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    encoded = "".join(out)
    if len(encoded) > _MAX_MEMBER_NAME:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        encoded = f"{encoded[:_MAX_MEMBER_NAME - 17]}~{digest}"
    return encoded


def is_temp_name(name: str) -> bool:
    """Whether a file name (basename) looks like an unpublished temporary file."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(TEMP_PREFIX) or base.endswith(TEMP_SUFFIXES)


def _is_transient(exc: BaseException) -> bool:
    """Server busy, throttled, connection dropped or timed out: worth another try."""
    if isinstance(exc, (PermissionError, FileNotFoundError, FileExistsError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, FSTimeoutError)):
        return True
    if isinstance(exc, (HTTPClientError, ReadTimeoutError, BotoConnectionError)):
        return True
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return err.get("Code") in _TRANSIENT_CODES or status >= 500 or status == 429
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    cause = exc.__cause__
    return cause is not None and cause is not exc and _is_transient(cause)


def _permanent_error(exc: BaseException, what: str) -> BaseException:
    """The same kind of error with a message naming the operation, the URL and the fix."""
    if isinstance(exc, PermissionError):
        return PermissionError(
            f"{what}: access denied ({exc}). Fix: the credentials found in the environment / AWS "
            "config (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...) must be allowed this operation on that "
            "path; check the IAM and bucket policies."
        )
    if isinstance(exc, FileNotFoundError) and "bucket" in str(exc).lower():
        return FileNotFoundError(
            f"{what}: the bucket does not exist ({exc}). Fix: create the bucket or correct the URL "
            "(and AWS_ENDPOINT_URL if you use an S3-compatible store)."
        )
    return exc


def with_retries(
    fn: Callable[[], T], *, attempts: int = 5, base_delay: float = 0.2, what: str
) -> T:
    """Call `fn`, retrying transient storage errors with jittered exponential backoff.

    s3fs and botocore already retry a few times inside one call; this outer loop covers bursts
    longer than theirs (a shard publish should survive a minute of SlowDown). Permanent errors
    (access denied, missing bucket, anything unrecognised) are raised at once: retrying them only
    delays the message. `what` names the operation and URL for the error message.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not _is_transient(exc):
                new = _permanent_error(exc, what)
                if new is exc:
                    raise
                raise new from exc
            if attempt == attempts:
                raise OSError(
                    errno.EIO, f"{what}: still failing after {attempts} attempts: {exc!r}"
                ) from exc
            delay = base_delay * (2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning("%s: transient error (%r), retry %d/%d in %.2fs", what, exc, attempt,
                        attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _fsync_dir(path: str) -> None:
    """Make a rename durable (best effort: not every filesystem can fsync a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _new_file_mode() -> int:
    """The mode `open()` would give a new file: 0666 less the process umask (read without
    changing it: os.umask is process-wide and writer threads run beside this)."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = 0o022
    return 0o666 & ~umask


def local_publish(path: str, write: Callable[[object], None]) -> None:
    """Write through a temp file in the destination directory, fsync, then rename over `path`."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + ".", dir=directory)
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp makes 0600; outputs are read by other users' jobs
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def publish_bytes(url: str, data: bytes) -> None:
    """Make `url` hold exactly `data`, or leave it as it was: never a partial object.

    Local: temp file beside it + fsync + os.replace. S3: one PUT (objects appear atomically);
    never a streamed `fs.open(url, 'wb')`, which uploads what it has when an exception unwinds it.
    """
    fs, path = filesystem(url)
    if is_local(fs):
        local_publish(path, lambda f: f.write(data))  # type: ignore[attr-defined]
        return
    with_retries(lambda: fs.pipe_file(path, data), what=f"publish {url}")


def publish_file(local_path: str, url: str) -> None:
    """Copy a finished local file to `url` atomically (S3: put_file; multipart commits on complete)."""
    fs, path = filesystem(url)
    if is_local(fs):
        def copy(f: object) -> None:
            with open(local_path, "rb") as src:
                while chunk := src.read(1 << 20):
                    f.write(chunk)  # type: ignore[attr-defined]
        local_publish(path, copy)
        return
    with_retries(lambda: fs.put_file(local_path, path), what=f"publish {url}")


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return with_retries(lambda: fs.cat_file(path), what=f"read {url}")


def open_read(url: str) -> IO[bytes]:
    """A binary stream of `url`, for files read as a stream (input and output tars).

    Opening is retried; a fault in the middle of the stream reaches the caller, which redoes its
    unit of work (a shard) whole.
    """
    fs, path = filesystem(url)
    return with_retries(lambda: fs.open(path, "rb"), what=f"open {url}")


def download(url: str, local_path: str) -> None:
    """Copy `url` to a local file (teacher checkpoints copied once per node)."""
    fs, path = filesystem(url)
    with_retries(lambda: fs.get_file(path, local_path), what=f"download {url}")


def _with_protocol(fs: fsspec.AbstractFileSystem, path: str, like: str) -> str:
    """Give a listed `path` back the protocol of `like` (fsspec strips `s3://` from listings)."""
    return fs.unstrip_protocol(path) if "://" in like else path


def canonical(url: str) -> str:
    """`url` as listings name it: an absolute path for a local file, the URL itself otherwise."""
    fs, path = filesystem(url)
    return _with_protocol(fs, path, url)


def glob(pattern: str) -> list[str]:
    """Full URLs of the paths matching a glob pattern, sorted (asked of the store, not a cache)."""
    fs, path = filesystem(pattern)
    fs.invalidate_cache()
    matches = with_retries(lambda: fs.glob(path), what=f"list {pattern}")
    return sorted(_with_protocol(fs, m, pattern) for m in matches)


def is_dir(url: str) -> bool:
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    return with_retries(lambda: fs.isdir(path), what=f"stat {url}")


def find_files(url: str) -> list[str]:
    """Full URLs of every file below the directory `url`, recursively, sorted."""
    fs, path = filesystem(url)
    fs.invalidate_cache()
    found = with_retries(lambda: fs.find(path), what=f"list {url}")
    return sorted(_with_protocol(fs, p, url) for p in found if not p.endswith("/"))


def exists(url: str) -> bool:
    """Asked of the store, not of s3fs's listing cache (another process may have written)."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    return with_retries(lambda: fs.exists(path), what=f"stat {url}")


def remove(url: str) -> None:
    """Delete `url` if it exists (idempotent: a retried delete may find it gone)."""
    fs, path = filesystem(url)

    def rm() -> None:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
    with_retries(rm, what=f"remove {url}")


def list_prefix(url: str, suffix: str = "") -> list[str]:
    """Full URLs of the files directly under directory `url` whose names end with `suffix`, sorted.

    A missing directory lists as empty (a fresh output has no `_manifests/` yet).
    """
    fs, path = filesystem(url)
    fs.invalidate_cache(path)

    def ls() -> list[str]:
        try:
            return [e["name"] for e in fs.ls(path, detail=True) if e.get("type") == "file"]
        except FileNotFoundError:
            return []
    names = with_retries(ls, what=f"list {url}")
    return sorted(join(url, n.rstrip("/").rsplit("/", 1)[-1]) for n in names if n.endswith(suffix))


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file (local path or URL), streamed in 1 MiB chunks."""
    fs, p = filesystem(path)
    h = hashlib.sha256()
    with fs.open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

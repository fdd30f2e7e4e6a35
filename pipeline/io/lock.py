"""`OutputLock`: an advisory lock at `OUTPUT/_lock.json`, so two jobs never interleave writes
into one output root (local paths and s3://)."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from typing import Any

from pipeline.io.layout import LOCK_NAME, OutputLayout
from storage import TEMP_PREFIX, TEMP_SUFFIXES, filesystem, is_local, local_publish, remove, with_retries

log = logging.getLogger(__name__)


class LockHeldError(RuntimeError):
    """Another run holds the output lock."""


def _holder_is_dead(record: dict[str, Any]) -> bool:
    """A holder on this host whose process is gone (killed driver): no need to wait for staleness."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


class OutputLock:
    """Advisory lock `OUTPUT/_lock.json`, so two jobs writing one output never interleave.

    Created with a conditional create (local: hard link of a finished temp file, which fails if the
    name exists; S3: PUT with If-None-Match: *), then read back to check the token. It records the
    run id, config hash, host, pid and a heartbeat time that the holder refreshes (`heartbeat`, or
    the thread started by `start_heartbeat`). A lock whose heartbeat is older than `stale_after`
    seconds, or whose process is gone from this host, belongs to a dead run and is taken over (S3:
    PUT with If-Match on the stale ETag, so only one contender wins; local: rename-aside, check it
    was the stale one, then create).
    """

    def __init__(self, output: str, *, stale_after: float = 600.0) -> None:
        self.url = OutputLayout(output).lock
        self.stale_after = stale_after
        self.token: str | None = None
        self._record: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> tuple[dict[str, Any] | None, str | None]:
        """The lock record and its version (S3 ETag; None locally), or (None, None) if absent."""
        fs, path = filesystem(self.url)
        fs.invalidate_cache(path)
        try:
            version = None if is_local(fs) else with_retries(
                lambda: fs.info(path)["ETag"], what=f"stat {self.url}")
            data = with_retries(lambda: fs.cat_file(path), what=f"read {self.url}")
        except FileNotFoundError:
            return None, None
        try:
            return json.loads(data), version
        except ValueError:
            return {"run_id": "?", "heartbeat_at": 0.0, "token": None}, version

    def acquire(self, run_id: str, config_hash: str) -> None:
        """Take the lock or raise LockHeldError naming the run that holds it."""
        token = uuid.uuid4().hex
        self._record = {"run_id": run_id, "config_hash": config_hash, "host": socket.gethostname(),
                        "pid": os.getpid(), "token": token, "acquired_at": time.time()}
        for _ in range(3):
            self._create(self._encode(token))
            # Read back, even after a create that succeeded: catches stores that ignore
            # If-None-Match, and a create retried after its first try went through.
            current, version = self.read()
            if current is None:
                continue
            if current.get("token") == token:
                self.token = token
                return
            age = time.time() - float(current.get("heartbeat_at", 0.0))
            if age <= self.stale_after and not _holder_is_dead(current):
                raise LockHeldError(
                    f"output is locked by run {current.get('run_id')!r} (config {current.get('config_hash')}, "
                    f"host {current.get('host')}, pid {current.get('pid')}, heartbeat {age:.0f}s ago): "
                    f"wait for it to finish; if that run is dead the lock goes stale after "
                    f"{self.stale_after:.0f}s, or delete {self.url}")
            log.warning("taking over the lock %s of run %r (heartbeat %.0fs ago, pid %s on %s)",
                        self.url, current.get("run_id"), age, current.get("pid"), current.get("host"))
            if self._take_over(current, version, self._encode(token)):
                self.token = token
                return
        raise LockHeldError(f"could not acquire {self.url}: other runs keep taking it")

    def heartbeat(self) -> None:
        """Refresh the heartbeat; raises LockHeldError if the lock was taken over meanwhile."""
        if self.token is None:
            raise RuntimeError("heartbeat() on a lock that is not held")
        current, version = self.read()
        if current is None or current.get("token") != self.token:
            raise LockHeldError(f"lost {self.url}: now held by {current and current.get('run_id')!r}")
        self._overwrite(self._encode(self.token), version)

    def start_heartbeat(self, interval: float) -> None:
        """Refresh the heartbeat every `interval` seconds in a daemon thread until release()."""
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("heartbeat of %s failed", self.url)
        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="output-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.token is None:
            return
        current, _ = self.read()
        if current is not None and current.get("token") == self.token:
            remove(self.url)
        else:
            log.warning("not removing %s: no longer ours", self.url)
        self.token = None

    def _encode(self, token: str) -> bytes:
        return json.dumps({**self._record, "token": token, "heartbeat_at": time.time()}).encode()

    def _create(self, data: bytes) -> bool:
        """Create the lock file only if absent; False when it exists."""
        fs, path = filesystem(self.url)
        if is_local(fs):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + LOCK_NAME + ".", dir=os.path.dirname(path))
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        try:
            with_retries(lambda: fs.pipe_file(path, data, mode="create"), what=f"create {self.url}")
        except FileExistsError:
            return False
        return True

    def _overwrite(self, data: bytes, version: str | None) -> None:
        fs, path = filesystem(self.url)
        if is_local(fs):
            local_publish(path, lambda f: f.write(data))  # type: ignore[attr-defined]
        else:
            with_retries(lambda: fs.pipe_file(path, data, IfMatch=version), what=f"update {self.url}")

    def _take_over(self, stale: dict[str, Any], version: str | None, data: bytes) -> bool:
        """Replace a stale lock so that, of several contenders, exactly one succeeds."""
        fs, path = filesystem(self.url)
        if not is_local(fs):
            try:
                with_retries(lambda: fs.pipe_file(path, data, IfMatch=version), what=f"take over {self.url}")
            except OSError as exc:
                if exc.errno == errno.EINVAL and "condition" in str(exc).lower():
                    return False
                raise
            return True
        aside = f"{path}.{uuid.uuid4().hex}{TEMP_SUFFIXES[0]}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return self._create(data)
        try:
            with open(aside, "rb") as f:
                moved = json.loads(f.read() or b"{}")
        except ValueError:
            moved = {}
        if moved.get("token") != stale.get("token"):
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return self._create(data)

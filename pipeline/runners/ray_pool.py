"""A pool of Ray actors of one kind, kept at the size the cluster can hold, surviving lost nodes.

Ray restarts an actor whose process dies, in place. When its node is gone, the restart waits for
resources that may never come back, and every call to it fails with "the actor is restarting".
So the pool routes work only to members that answer, and a maintenance pass (every few seconds,
from the runner) keeps it honest:

- a member that does not answer a ping is unavailable: no new work goes to it; one unavailable
  for longer than `replace_after` gets a replacement, one unavailable for longer than
  `give_up_after` is killed for good and removed (its node is likely gone), and so is one at
  once whose node the runner found lost (`give_up_on_nodes`);
- when there are fewer members than the cluster can hold (`target`, from the cluster's current
  resources), new ones are created: the pool grows back when nodes return or join; when there
  are more (a node was lost, and the teachers need a CPU), the surplus is killed;
- `pick` waits for an available member, but never longer than `node_wait` without any.

Members record where they run (node id and IP, pid), for the run record and the summary.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable

import ray
from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 10.0


class NoActorsError(RuntimeError):
    """No member of a pool has been available for `node_wait` seconds."""


class ActorStartError(RuntimeError):
    """An actor died while it was being created (its constructor raised: a bad checkpoint)."""


@dataclasses.dataclass
class Member:
    handle: Any
    kind: str
    created: float
    where: dict[str, Any] | None = None  # node_id, node_ip, pid once it has answered
    available: bool = False
    unavailable_since: float | None = None
    ended: str | None = None  # "given up" (silent too long), "died" (at creation), "stopped" (end of run)
    served: int = 0  # calls routed to it

    def describe(self) -> dict[str, Any]:
        where = self.where or {}
        state = self.ended or ("alive" if self.available else "unavailable" if where else "not placed")
        return {"kind": self.kind, "node_ip": where.get("node_ip"), "node_id": where.get("node_id"),
                "pid": where.get("pid"), "state": state, "calls": self.served}


class ActorPool:
    def __init__(self, kind: str, create: Callable[[], Any], target: Callable[[], int], *,
                 node_wait: float, give_up_after: float, replace_after: float) -> None:
        self.kind = kind
        self._create = create
        self._target = target
        self.node_wait = node_wait
        self.give_up_after = give_up_after
        self.replace_after = replace_after
        self.members: list[Member] = []
        self.retired: list[Member] = []  # given up, kept for the record
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._none_since: float | None = time.monotonic()
        self._changed = threading.Condition(self._lock)
        self.start_error: BaseException | None = None  # why the last member that died at creation died
        self.closed = False

    def grow(self) -> int:
        """Create members up to the target; returns how many were created. A member silent for
        longer than `replace_after` no longer counts: its replacement starts while it may still
        come back (a restart in place), and whichever is surplus then goes."""
        with self._lock:
            if self.closed:
                return 0
            now = time.monotonic()
            counted = [m for m in self.members if m.available or m.unavailable_since is None
                       or now - m.unavailable_since < self.replace_after]
            missing = self._target() - len(counted)
            for _ in range(max(0, missing)):
                self.members.append(Member(self._create(), self.kind, now))
        return max(0, missing)

    def shrink(self) -> None:
        """Kill members beyond the target (the cluster shrank under them, or another pool needs
        their CPUs): first those not answering, then those never placed, then the newest."""
        with self._lock:
            surplus = len(self.members) - self._target()
            if surplus <= 0:
                return
            order = sorted(self.members, key=lambda m: (2 if m.available else 1 if m.where is None else 0, -m.created))
            for member in order[:surplus]:
                self._retire(member, "given up" if member.where is not None else None)

    def maintain(self) -> None:
        """Ping every member; mark who answers; give up on members silent for too long; grow."""
        members = list(self.members)
        pings = {m.handle.where.remote(): m for m in members}
        ready, _ = ray.wait(list(pings), num_returns=len(pings), timeout=PING_TIMEOUT_S) if pings else ([], [])
        now = time.monotonic()
        answered: dict[int, dict] = {}
        died: dict[int, BaseException] = {}
        for ref in ready:
            try:
                answered[id(pings[ref])] = ray.get(ref, timeout=PING_TIMEOUT_S)
            except ActorDiedError as exc:  # not restarting: its constructor raised, or it was killed
                died[id(pings[ref])] = exc
            except (RayActorError, GetTimeoutError):
                pass
        with self._lock:
            for m in members:
                if id(m) in died and m in self.members:
                    log.warning("a %s actor died: %s", self.kind, str(died[id(m)]).strip().splitlines()[-1:])
                    self.start_error = died[id(m)]
                    self._retire(m, "died")
                elif id(m) in answered:
                    m.where, m.available, m.unavailable_since = answered[id(m)], True, None
                else:
                    self._mark_unavailable(m, now)
                    placed_silent = m.where is not None and now - (m.unavailable_since or now) > self.give_up_after
                    if placed_silent:
                        log.warning("giving up the %s actor on node %s (pid %s): unavailable for %.0fs",
                                    self.kind, m.where.get("node_ip"), m.where.get("pid"), now - (m.unavailable_since or now))
                        self._retire(m, "given up")
            self._update_none_since(now)
            self._changed.notify_all()
        self.shrink()
        self.grow()

    def silent_nodes(self) -> set[str]:
        """The nodes of placed members that do not answer now."""
        with self._lock:
            return {m.where["node_id"] for m in self.members if m.where and not m.available}

    def give_up_on_nodes(self, lost: Iterable[str]) -> None:
        """Give up at once the silent members whose node is lost; their replacements start now."""
        lost = set(lost)
        with self._lock:
            for m in list(self.members):
                if m.where and not m.available and m.where["node_id"] in lost:
                    log.warning("giving up the %s actor on node %s (pid %s): its node was lost",
                                self.kind, m.where.get("node_ip"), m.where.get("pid"))
                    self._retire(m, "given up")
            self._changed.notify_all()
        self.grow()

    def mark_failed(self, member: Member) -> None:
        """A call to `member` failed for a reason its actor caused (died, restarting, lost)."""
        with self._lock:
            self._mark_unavailable(member, time.monotonic())
            self._update_none_since(time.monotonic())

    def pick(self) -> Member:
        """The next available member (round robin); waits while none is, at most `node_wait` in all
        since the pool last had one, then raises NoActorsError."""
        with self._lock:
            while True:
                if self.closed:
                    raise NoActorsError(f"the {self.kind} actors were stopped")
                available = [m for m in self.members if m.available]
                if available:
                    member = available[next(self._turn) % len(available)]
                    member.served += 1
                    return member
                waited = time.monotonic() - (self._none_since or time.monotonic())
                if waited >= self.node_wait:
                    raise NoActorsError(
                        f"no {self.kind} actor has been available for {waited:.0f}s (--node-wait {self.node_wait:.0f}): "
                        "the cluster has no node that can hold one")
                self._changed.wait(timeout=min(5.0, self.node_wait - waited))

    def wait_until_available(self) -> None:
        """Maintain until a member answers; raises ActorStartError when one died while it was
        created, NoActorsError after `node_wait`."""
        while True:
            self.maintain()
            with self._lock:
                if any(m.available for m in self.members):
                    return
                if self.start_error is not None:
                    raise ActorStartError(str(self.start_error)) from self.start_error
                waited = time.monotonic() - (self._none_since or time.monotonic())
            if waited >= self.node_wait:
                raise NoActorsError(f"no {self.kind} actor could be placed in {waited:.0f}s (--node-wait {self.node_wait:.0f})")
            time.sleep(1.0)

    def settled(self) -> bool:
        """Every member has answered a health check."""
        with self._lock:
            return all(m.available for m in self.members)

    def pids(self) -> list[int]:
        with self._lock:
            return [m.where["pid"] for m in self.members if m.where]

    def describe(self) -> list[dict[str, Any]]:
        return [m.describe() for m in self.retired + self.members]

    def kill_all(self) -> None:
        """Stop the pool: kill every member; callers waiting in `pick` are told at once."""
        with self._lock:
            self.closed = True
            for m in list(self.members):
                self._retire(m, "stopped")
            self._changed.notify_all()

    def _mark_unavailable(self, member: Member, now: float) -> None:
        if member.available or member.unavailable_since is None:
            member.unavailable_since = now
        member.available = False

    def _update_none_since(self, now: float) -> None:
        if any(m.available for m in self.members):
            self._none_since = None
        elif self._none_since is None:
            self._none_since = now

    def _retire(self, member: Member, ended: str | None) -> None:
        """Kill `member` for good; kept for the record with why it ended (None: not recorded)."""
        try:
            ray.kill(member.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        member.available, member.ended = False, ended
        self.members.remove(member)
        if ended:
            self.retired.append(member)

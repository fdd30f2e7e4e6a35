"""The cluster's nodes as the run sees them: alive, or lost.

Ray's control store declares a node dead only after its own health checks have failed for a
while (tens of seconds), and a short run can end before that. The run does not wait for it: a
node that holds actors which stopped answering is probed directly (a TCP connection to its
raylet's port); a raylet that refuses or does not answer on two passes in a row means the node
is gone, as a preempted instance is. Its actors are then given up at once instead of after
`give_up_after`, and the run record names the node.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

import ray

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
PROBE_FAILURES_TO_LOSE = 2  # consecutive failed probes of a suspect node before it counts as lost


def raylet_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the node's raylet accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class NodeWatch:
    """The nodes seen alive during the run, and those lost (declared dead by Ray, or whose
    raylet stopped answering while their actors were silent)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.lost: dict[str, str] = {}
        self._failed_probes: dict[str, int] = {}
        self.update()

    def update(self, suspects: Iterable[str] = ()) -> None:
        """Read the cluster's view; probe the raylets of `suspects` (node ids whose actors are silent)."""
        suspects = set(suspects)
        for node in ray.nodes():
            node_id, ip = node["NodeID"], node.get("NodeManagerAddress", "?")
            if node_id in self.lost:
                continue
            if not node["Alive"]:
                if node_id in self.seen:
                    self._lose(node_id, ip, "Ray declared it dead")
                continue
            self.seen[node_id] = ip
            if node_id not in suspects or not node.get("NodeManagerPort"):
                self._failed_probes.pop(node_id, None)
            elif raylet_answers(ip, int(node["NodeManagerPort"])):
                self._failed_probes.pop(node_id, None)
            else:
                self._failed_probes[node_id] = self._failed_probes.get(node_id, 0) + 1
                if self._failed_probes[node_id] >= PROBE_FAILURES_TO_LOSE:
                    self._lose(node_id, ip, "its raylet does not answer")

    def _lose(self, node_id: str, ip: str, why: str) -> None:
        self.lost[node_id] = ip
        log.warning("node %s (%s) was lost: %s", ip, node_id[:12], why)

    def lost_names(self) -> list[str]:
        return [f"{ip} (node {node_id[:12]})" for node_id, ip in self.lost.items()]

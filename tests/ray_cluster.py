"""A real multi-node Ray cluster on this machine, for the cluster tests: `ray start --head` and
`ray start --address=...` processes, each node with its own resources, token authentication on.

Every node is started with `--block` in a session of its own, so the test owns each node's whole
process tree (raylet, object store, agents, its workers) and can SIGKILL all of it at once, as a
preempted instance disappears. HOME is a folder of the cluster's own: the token Ray keeps at
~/.ray/auth_token is the test's, and the user's own is neither read nor replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.project import ROOT

RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNode:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.node_id = ""  # Ray's id of the node, once it has joined

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> int:
        """SIGKILL every process of the node at once; returns how many there were."""
        procs = self.processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        return len(procs)


class LocalRayCluster:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.home = work / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # AF_UNIX socket paths must stay short
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        self.env.update(HOME=str(self.home), RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0")
        self.nodes: list[RayNode] = []
        self.port = free_port()
        self.dashboard_port = free_port()
        self.ray("get-auth-token", "--generate")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def client_env(self) -> dict[str, str]:
        """What a user exports before `ray job submit`: token mode (the token is in ~/.ray)."""
        return {**self.env, "RAY_AUTH_MODE": "token"}

    def ray(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([RAY, *args], env=env or self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if done.returncode != 0 and args[:1] != ("job",):
            raise RuntimeError(f"ray {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        return done

    def _start(self, name: str, args: list[str], cpus: int, resources: dict[str, float] | None, gpus: int) -> RayNode:
        log = self.work / f"{name}.log"
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
        cmd = [RAY, "start", *args, f"--num-cpus={cpus}", f"--num-gpus={gpus}", "--block", "--disable-usage-stats",
               *[f"{p}={free_port()}" for p in ports]]
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        env = {**self.env, "RAY_AUTH_MODE": "token"}
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        node = RayNode(name, proc, log)
        self.nodes.append(node)
        return node

    def start_head(self, cpus: int, resources: dict[str, float] | None = None, gpus: int = 0) -> RayNode:
        head = self._start("head", ["--head", f"--port={self.port}", f"--dashboard-port={self.dashboard_port}",
                                    "--dashboard-host=127.0.0.1", f"--temp-dir={self.temp_dir}"], cpus, resources, gpus)
        head.node_id = self._joined(set())
        return head

    def add_node(self, name: str, cpus: int, resources: dict[str, float] | None = None, gpus: int = 0) -> RayNode:
        before = {n["NodeID"] for n in self.alive_nodes()}
        node = self._start(name, [f"--address={self.address}"], cpus, resources, gpus)
        node.node_id = self._joined(before)
        return node

    def _joined(self, before: set[str], timeout: float = 120) -> str:
        """The id of the node that joins beyond `before`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            new = {n["NodeID"] for n in self.alive_nodes()} - before
            if new:
                return new.pop()
            time.sleep(1)
        logs = "\n".join(f"--- {n.name}\n{n.log.read_text()[-1500:]}" for n in self.nodes)
        raise RuntimeError(f"no node joined the cluster in {timeout:.0f}s:\n{logs}")

    def alive_nodes(self) -> list[dict]:
        code = ("import json, ray; ray.init(address='auto', logging_level='ERROR'); "
                "print(json.dumps([n for n in ray.nodes() if n['Alive']]))")
        done = subprocess.run([sys.executable, "-c", code], env={**self.client_env, "RAY_ADDRESS": self.address},
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        if done.returncode != 0:
            return []
        return json.loads(done.stdout.strip().splitlines()[-1])

    def submit(self, args: list[str], *, timeout: float = 900) -> subprocess.Popen:
        """`ray job submit --working-dir . -- python jobs/label_cc12m.py ARGS`, as users run it."""
        cmd = [RAY, "job", "submit", f"--address={self.dashboard}", "--working-dir", str(ROOT), "--",
               "python", "jobs/label_cc12m.py", "--no-progress", *args]
        return subprocess.Popen(cmd, env=self.client_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=ROOT, start_new_session=True)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

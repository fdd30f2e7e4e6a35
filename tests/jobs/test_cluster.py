"""Beyond one machine's one node: a real multi-node Ray cluster on this machine, the job submitted
with `ray job submit` (token authentication on), and nodes lost (every process SIGKILLed, as a
preempted instance disappears) or added in the middle of the run.

A node may declare a GPU it does not have: the teacher actor is then placed on it and runs on
its CPU, which is enough to test placement (not speed).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from pipeline.tools.verify import verify_output
from tests.jobs.output_checks import check_output
from tests.ray_cluster import LocalRayCluster

pytestmark = pytest.mark.slow

# Inputs big enough that a shard takes a few seconds: time to lose a node in the middle of the run.
SLOW_FLAGS = ["--min-size", "320", "--max-size", "480", "--batch-size", "2"]


@pytest.fixture
def cluster(tmp_path):
    c = LocalRayCluster(tmp_path / "cluster")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def eight_shards(tmp_path_factory) -> Path:
    from pipeline.tools.sample_shards import write_sample_shards

    d = tmp_path_factory.mktemp("eight-shards")
    write_sample_shards(str(d), shards=8, samples=10, seed=3, max_side=640)
    return d


def _wait_for_manifests(out: Path, count: int, job, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list((out / "_manifests").glob("*.json"))) >= count:
            return
        assert job.poll() is None, f"the job ended early:\n{job.stdout.read()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {count} committed shard(s) in {timeout:.0f}s")


def _finish(job, timeout: float = 900) -> tuple[int, str]:
    out, _ = job.communicate(timeout=timeout)
    return job.returncode, out


def _record(out: Path) -> dict:
    return json.loads(max((out / "_runs").glob("*.json"), key=lambda p: p.stat().st_mtime).read_text())


def test_a_node_lost_and_a_node_added_mid_run(cluster, tiny_teacher, tmp_path) -> None:
    """Head and one worker node; after the first shard is committed the worker is killed while a
    new node joins: the job re-creates what was lost, gives work to the new node, and finishes."""
    from pipeline.tools.sample_shards import write_sample_shards

    shards = tmp_path / "shards"  # twice the shards of the other test: work left for the node that joins
    write_sample_shards(str(shards), shards=16, samples=10, seed=3, max_side=640)
    cluster.start_head(cpus=3)
    doomed = cluster.add_node("worker-1", cpus=3)
    out = tmp_path / "out"
    pattern = str(shards / "*.tar")
    job = cluster.submit(["--input", pattern, "--output", str(out), "--teacher", tiny_teacher, "--device", "cpu",
                          "--teacher-threads", "1", *SLOW_FLAGS])
    _wait_for_manifests(out, 1, job)
    joining: list = []
    joiner = threading.Thread(target=lambda: joining.append(cluster.add_node("worker-2", cpus=2)))
    joiner.start()
    assert doomed.kill() >= 3  # raylet, agents, object store, its actors' workers
    joiner.join(timeout=180)
    (joined,) = joining
    code, log = _finish(job)
    assert code == 0, log[-4000:]
    assert "succeeded" in log
    totals = check_output(str(out), pattern)
    assert totals["rows"] == 160
    report = verify_output(str(out), pattern)
    assert report.ok, report.lines()
    assert re.search(rf"NODE LOST \S+ \(node {doomed.node_id[:12]}\)", log), log[-4000:]
    record = _record(out)
    assert any(doomed.node_id.startswith(n.split("node ")[1].rstrip(")")) for n in record["nodes_lost"])
    assert record["shards_retried"] and re.search(r"RETRIED shard \S+: actor or object lost", log)
    on_new = [w for w in record["workers"] if w["node_id"] == joined.node_id]
    assert on_new and sum(w["calls"] for w in on_new) > 0, record["workers"]
    assert all(w["node_id"] != doomed.node_id or w["state"] == "given up" for w in record["workers"])
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


def test_teachers_on_the_gpu_node_which_is_lost_then_replaced(cluster, eight_shards, tiny_teacher, tmp_path) -> None:
    """The teacher goes to the node with a GPU and the CPU actors spread over every node. When
    the only GPU node is lost, the job waits --node-wait for another, then fails naming the shards
    still to do; with a new GPU node the same command labels them."""
    cluster.start_head(cpus=2)
    gpu_node = cluster.add_node("gpu-1", cpus=2, gpus=1)
    out = tmp_path / "out"
    pattern = str(eight_shards / "*.tar")
    args = ["--input", pattern, "--output", str(out), "--teacher", tiny_teacher, "--node-wait", "10", *SLOW_FLAGS]
    job = cluster.submit(args)
    _wait_for_manifests(out, 1, job)
    gpu_node.kill()
    code, log = _finish(job)
    assert code != 0, log[-3000:]
    record = _record(out)
    teachers = [w for w in record["workers"] if w["kind"] == "teacher" and w["node_id"]]
    assert teachers and all(w["node_id"] == gpu_node.node_id for w in teachers), record["workers"]
    cpu_nodes = {w["node_id"] for w in record["workers"] if w["kind"] == "cpu" and w["node_id"]}
    assert cpu_nodes == {cluster.nodes[0].node_id, gpu_node.node_id}, record["workers"]
    unfinished = sorted(record["shards_failed"])
    assert unfinished and all(f"FAILED shard {s}" in log for s in unfinished)
    assert "no teacher actor has been available" in log and "the same command labels the rest" in log, log[-3000:]
    cluster.add_node("gpu-2", cpus=2, gpus=1)
    code, log = _finish(cluster.submit(args))
    assert code == 0, log[-4000:]
    assert f"{len(unfinished)} shard(s) labelled" in log
    assert verify_output(str(out), pattern).ok

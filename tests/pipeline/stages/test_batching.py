"""Teacher batch forming: every image exactly once, bounded carry, little padding."""

from __future__ import annotations

import json
import random

import pytest

from pipeline.config import build_config
from pipeline.stages.batching import ShapeBatcher, padding_efficiency
from pipeline.stages.prepare import PreparedShard, ShardPreparer, TeacherBatch
from pipeline.tools.sample_shards import write_sample_shards
from schemas import Status
from teacher.resize import teacher_size
from tests.project import SHARED as SHARED_DATA


def _teacher_shapes(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(width, height) originals -> (height, width) at the teacher's 800/1333 size."""
    return [teacher_size(w, h)[::-1] for w, h in sizes]


def _mixed_shapes(n: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return _teacher_shapes([(rng.randint(200, 2000), rng.randint(200, 2000)) for _ in range(n)])


def _window_sort_batches(shapes: list[tuple[int, int]], window: int, batch: int) -> list[list[tuple[int, int]]]:
    """The previous scheme: sort each window by (height, width), cut it into batches."""
    out = []
    for s in range(0, len(shapes), window):
        part = sorted(shapes[s : s + window])
        out += [part[i : i + batch] for i in range(0, len(part), batch)]
    return out


def _run(shapes: list[tuple[int, int]], window: int, batch: int, carry: int) -> tuple[list[list[int]], int]:
    batcher: ShapeBatcher[int] = ShapeBatcher(batch, carry)
    batches, most_held = [], 0
    for s in range(0, len(shapes), window):
        batches += batcher.add((shapes[i], i) for i in range(s, min(s + window, len(shapes))))
        most_held = max(most_held, len(batcher))
    batches += batcher.flush()
    assert len(batcher) == 0
    return batches, most_held


@pytest.mark.parametrize("batch,carry,window", [(16, 48, 32), (4, 0, 10), (1, 5, 7), (5, 3, 4)])
def test_every_item_comes_out_once_in_full_batches_and_the_carry_is_bounded(batch, carry, window) -> None:
    shapes = _mixed_shapes(203, seed=batch)
    batches, most_held = _run(shapes, window, batch, carry)
    assert sorted(i for b in batches for i in b) == list(range(len(shapes)))
    assert all(len(b) == batch for b in batches[:-1]) and 1 <= len(batches[-1]) <= batch
    assert most_held <= max(carry, batch - 1)


def test_tightest_run_is_emitted_first() -> None:
    batcher: ShapeBatcher[str] = ShapeBatcher(2, carry=1)
    square, wide, wider = (800, 800), (800, 1200), (800, 1210)
    assert batcher.add([(square, "s"), (wide, "w1"), (wider, "w2")]) == [["w2", "w1"]]
    assert batcher.flush() == [["s"]]


def test_padding_efficiency() -> None:
    assert padding_efficiency([]) == 1.0
    assert padding_efficiency([[(800, 1333)] * 3]) == 1.0
    assert padding_efficiency([[(800, 1200), (1200, 800)]]) == pytest.approx((2 * 800 * 1200) / (2 * 1200 * 1200))
    assert padding_efficiency([[(800, 1200), (1200, 800)], [(800, 800)]]) == pytest.approx(
        (2 * 800 * 1200 + 800 * 800) / (2 * 1200 * 1200 + 800 * 800))


def test_packs_mixed_shapes_far_tighter_than_sorting_each_window() -> None:
    shapes = _mixed_shapes(2000, seed=7)
    old = padding_efficiency(_window_sort_batches(shapes, 64, 16))
    batches, _ = _run(shapes, 32, 16, 48)
    new = padding_efficiency([[shapes[i] for i in b] for b in batches])
    assert new > old + 0.1, (old, new)  # uniform sizes: far more aspect ratios than real photos


@pytest.mark.needs_shared_data
@pytest.mark.skipif(not (SHARED_DATA / "flickr30k_entities").is_dir(), reason=f"real data not found at {SHARED_DATA}")
def test_real_flickr30k_sizes_pack_above_ninety_five_percent() -> None:
    sizes = {}
    with open(SHARED_DATA / "flickr30k_entities" / "val.jsonl") as f:
        for line in f:
            row = json.loads(line)
            sizes[row["image_id"]] = (row["width"], row["height"])
    shapes = _teacher_shapes(list(sizes.values()))
    random.Random(0).shuffle(shapes)
    batches, _ = _run(shapes, 32, 16, 48)
    assert padding_efficiency([[shapes[i] for i in b] for b in batches]) > 0.95
    assert padding_efficiency(_window_sort_batches(shapes, 64, 16)) < 0.9


def test_preparer_sends_every_labelable_row_to_the_teacher_once(tmp_path, tiny_teacher) -> None:
    shard = write_sample_shards(tmp_path / "in", shards=1, samples=70, seed=3, max_side=900)[0]
    cfg = build_config({"input": shard, "output": str(tmp_path / "out"), "teacher": tiny_teacher, "batch_size": 4,
                        "min_size": 64, "max_size": 128})
    items = list(ShardPreparer(cfg, window=10, carry=6).prepare(shard))
    batches = [b for b in items if isinstance(b, TeacherBatch)]
    prepared = items[-1]
    assert isinstance(prepared, PreparedShard) and not any(isinstance(i, PreparedShard) for i in items[:-1])
    sent = [i for b in batches for i in b.rows]
    ok = [i for i, row in enumerate(prepared.rows) if row["status"] == Status.OK.value]
    assert sorted(sent) == ok and len(set(sent)) == len(sent)
    for b in batches:
        for i, req in zip(b.rows, b.requests):
            assert (req.height, req.width) == (prepared.rows[i]["height"], prepared.rows[i]["width"])
            assert req.caption == prepared.rows[i]["caption"]

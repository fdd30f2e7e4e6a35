"""The training loader over output shards: targets, filters, splitting, resume, a real model step."""

from __future__ import annotations

import collections
import itertools
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import features

from pipeline.io.committed import complete_shards
from pipeline.training.grounding_dino import check_tokenizer, grounding_dino_labels, use_per_sample_loss
from pipeline.training.loader import GroundingLoader, GroundingShards, collate
from pipeline.training.targets import ImageConfig, LabelFilter, TextConfig, filter_boxes, normalize_pixels
from schemas.rows import IMAGE_EXTENSIONS
from teacher.grounding import box_iou
from tests.pipeline.output_fixture import (
    build_output,
    committed_rows,
    make_row,
    moto_s3,
    tokenizer,
    upload,
    write_shard,
)
from tests.project import ROOT

SMALL = ImageConfig(min_size=64, max_size=96)


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("out")
    return root, build_output(root, shards=4, samples=20, seed=3)


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    return tokenizer(tmp_path_factory.mktemp("tok"))


def dataset(root: Path, tok, **kw) -> GroundingShards:
    kw.setdefault("image", SMALL)
    kw.setdefault("shuffle_buffer", 8)
    return GroundingShards(str(root), tok, **kw)


def keys_of(batches) -> list[str]:
    return [t["key"] for b in batches for t in b["targets"]]


def test_only_committed_shards_and_every_eligible_sample(output, tok) -> None:
    root, built = output
    expected = {r["key"] for r in committed_rows(built) if r["status"] == "ok" and r["boxes"]}
    got = keys_of(GroundingLoader(dataset(root, tok), batch_size=4))
    assert len(got) == len(set(got))
    assert set(got) == expected
    assert not any(k.startswith("00004_") for k in got)  # the shard without a manifest


def test_shard_patterns(output) -> None:
    root, _ = output
    assert [r.shard for r in complete_shards(f"{root}/wds/{{00000..00004}}.tar")] == ["00000", "00001", "00002", "00003"]
    assert [r.shard for r in complete_shards(f"{root}/wds/0000[13].tar")] == ["00001", "00003"]
    assert len(complete_shards([str(root), f"{root}/wds/00000.tar"])) == 4


def test_targets_follow_the_row(output, tok) -> None:
    root, built = output
    rows = {r["key"]: r for r in committed_rows(built)}
    ds = dataset(root, tok, text=TextConfig(max_text_len=64))
    for sample in itertools.islice(iter(ds), 12):
        row = rows[sample["key"]]
        h, w = sample["size"]
        assert sample["image"].shape == (3, h, w) and min(h, w) == 64 or max(h, w) == 96
        frame_h, frame_w = row["height"], row["width"]
        back = sample["boxes_xyxy"] * torch.tensor([frame_w / w, frame_h / h] * 2)
        by_score = sorted(row["boxes"], key=lambda b: -b["score"])
        want = torch.tensor([[b["x0"], b["y0"], b["x1"], b["y1"]] for b in by_score])
        assert torch.allclose(back, want, atol=1e-3)
        cx = (sample["boxes_xyxy"][:, 0] + sample["boxes_xyxy"][:, 2]) / 2 / w
        assert torch.allclose(sample["boxes"][:, 0], cx) and (sample["boxes"] >= 0).all() and (sample["boxes"] <= 1).all()
        for pos, phrase_id in zip(sample["positive_map"], sample["phrase_ids"]):
            text = tok.decode(sample["input_ids"][pos[: len(sample["input_ids"])]])
            assert text.replace(" ", "") == row["phrases"][phrase_id]["text"].lower().replace(" ", "")


def test_filters(output, tok) -> None:
    root, _ = output
    flt = LabelFilter(min_score=0.4, nms_iou=0.5, min_boxes=2)
    samples = list(dataset(root, tok, label_filter=flt))
    assert samples
    for s in samples:
        assert len(s["boxes"]) >= 2 and (s["scores"] >= 0.4).all()
        iou = box_iou(s["boxes_xyxy"], s["boxes_xyxy"])
        same = s["phrase_ids"][:, None] == s["phrase_ids"][None, :]
        assert not ((iou > 0.5) & same & ~torch.eye(len(iou), dtype=torch.bool)).any()
    unfiltered = {s["key"] for s in dataset(root, tok, label_filter=LabelFilter(min_boxes=2))}
    assert {s["key"] for s in samples} < unfiltered


def test_filter_boxes_nms_per_phrase_by_hand() -> None:
    """The loader's NMS is the teacher's (`teacher.grounding.greedy_nms`): per phrase, by score."""
    xyxy = [[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]]
    boxes = [dict(phrase=p, x0=a, y0=b, x1=c, y1=d, score=s)
             for (a, b, c, d), p, s in zip(xyxy, [0, 0, 1, 0, 0], [0.8, 0.9, 0.7, 0.6, 0.3])]
    kept = filter_boxes({"boxes": boxes}, LabelFilter(min_score=0.5, nms_iou=0.5))
    assert [b["score"] for b in kept] == [0.9, 0.7, 0.6]
    assert [b["score"] for b in filter_boxes({"boxes": boxes}, LabelFilter(max_boxes=2))] == [0.9, 0.8]


def test_filter_boxes_uses_the_clip_rescored_score_when_there_is_one() -> None:
    """A re-scored output (YOLO-World) is thresholded and ordered by `rescored`, not the teacher's score."""
    boxes = [dict(phrase=0, x0=0, y0=0, x1=10, y1=10, score=0.9, clip_score=0.1, rescored=0.3),
             dict(phrase=1, x0=20, y0=0, x1=30, y1=10, score=0.4, clip_score=0.9, rescored=0.6)]
    kept = filter_boxes({"boxes": boxes}, LabelFilter(min_score=0.5))
    assert [b["phrase"] for b in kept] == [1]
    assert [b["phrase"] for b in filter_boxes({"boxes": boxes}, LabelFilter())] == [1, 0]


def test_collate_pads_images_and_text(output, tok) -> None:
    root, _ = output
    samples = list(itertools.islice(iter(dataset(root, tok)), 5))
    batch = collate(samples, pad_token_id=tok.pad_token_id, size_divisor=32)
    assert batch["pixel_values"].shape[2] % 32 == 0 and batch["pixel_values"].shape[3] % 32 == 0
    for i, s in enumerate(samples):
        h, w = s["size"]
        assert int(batch["pixel_mask"][i].sum()) == h * w
        assert torch.equal(batch["pixel_values"][i, :, :h, :w], s["image"])
        n = len(s["input_ids"])
        assert batch["attention_mask"][i].sum() == n
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all()


def test_uint8_images_normalised_later_match(output, tok) -> None:
    root, _ = output
    normalised = list(itertools.islice(iter(dataset(root, tok)), 3))
    raw = list(itertools.islice(iter(dataset(root, tok, image=ImageConfig(min_size=64, max_size=96, normalize=False))), 3))
    batch = collate(raw)
    assert batch["pixel_values"].dtype == torch.uint8
    later = normalize_pixels(batch["pixel_values"], SMALL)
    for i, s in enumerate(normalised):
        h, w = s["size"]
        assert torch.allclose(later[i, :, :h, :w], s["image"], atol=1e-5)


def test_split_by_node_and_worker_is_a_partition(output, tok) -> None:
    root, _ = output
    everything = keys_of(GroundingLoader(dataset(root, tok), batch_size=4))
    parts = [keys_of(GroundingLoader(dataset(root, tok, rank=r, world_size=2), batch_size=3, num_workers=2)) for r in (0, 1)]
    assert parts[0] and parts[1]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(everything)


@pytest.mark.parametrize("num_workers,epochs,stop", [(0, 2, 7), (2, None, 9), (2, 2, 13)])
def test_resume_gives_the_same_order(output, tok, num_workers: int, epochs, stop: int) -> None:
    root, _ = output
    total = 30 if epochs is None else None

    def run(state=None):
        loader = GroundingLoader(dataset(root, tok, seed=7, epochs=epochs), batch_size=3, num_workers=num_workers)
        if state is not None:
            loader.load_state_dict(state)
        return loader, iter(loader)

    loader, it = run()
    reference = [[t["key"] for t in b["targets"]] for b in itertools.islice(it, total)]
    loader, it = run()
    for _ in range(stop):
        next(it)
    state = loader.state_dict()
    assert state["samples_seen"] == sum(len(b) for b in reference[:stop])
    _, resumed = run(state)
    rest = [[t["key"] for t in b["targets"]] for b in itertools.islice(resumed, None if total is None else total - stop)]
    assert rest == reference[stop:]
    other_seed = GroundingLoader(dataset(root, tok, seed=8, epochs=epochs), batch_size=3, num_workers=num_workers)
    assert [[t["key"] for t in b["targets"]] for b in itertools.islice(other_seed, stop)] != reference[:stop]


def test_epochs_reshuffle_and_resampled_streams_forever(output, tok) -> None:
    root, built = output
    n = len({r["key"] for r in committed_rows(built) if r["status"] == "ok" and r["boxes"]})
    two = keys_of(GroundingLoader(dataset(root, tok, epochs=2), batch_size=1))
    assert len(two) == 2 * n and sorted(two[:n]) == sorted(two[n:]) and two[:n] != two[n:]
    forever = GroundingLoader(dataset(root, tok, epochs=None, resampled=True, rank=3, world_size=8), batch_size=4)
    assert len(keys_of(itertools.islice(forever, 3 * n // 4 + 1))) > 3 * n


def test_reads_s3(output, tok) -> None:
    root, built = output
    with moto_s3() as bucket:
        upload(root, f"{bucket}/run1")
        assert [r.shard for r in complete_shards(f"{bucket}/run1")] == ["00000", "00001", "00002", "00003"]
        got = keys_of(GroundingLoader(GroundingShards(f"{bucket}/run{{1,2}}", tok, image=SMALL), batch_size=4, num_workers=2))
        with pytest.warns(UserWarning, match=re.escape(f"{bucket}/runs does not exist")):  # a mistyped prefix
            assert list(GroundingLoader(GroundingShards(f"{bucket}/runs", tok, image=SMALL), batch_size=4)) == []
    assert set(got) == {r["key"] for r in committed_rows(built) if r["status"] == "ok" and r["boxes"]}


def test_every_image_extension_the_job_writes(tmp_path, tok) -> None:
    exts = sorted(IMAGE_EXTENSIONS if features.check("avif") else IMAGE_EXTENSIONS - {"avif"})
    rng = random.Random(5)
    rows = []
    for ext in exts:
        row = make_row("00000", len(rows), rng)
        while not row["boxes"]:
            row = make_row("00000", len(rows), rng)
        rows.append({**row, "image_ext": ext})
    write_shard(tmp_path, "00000", rows)
    assert {s["key"] for s in dataset(tmp_path, tok)} == {r["key"] for r in rows}


def test_importable_without_ray() -> None:
    code = "import sys, pipeline.training.loader, pipeline.training.grounding_dino; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def tiny_grounding_dino(vocab_size: int):
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig

    torch.manual_seed(0)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                                   image_size=128, out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=20, max_text_len=64, encoder_n_points=2,
        decoder_n_points=2, use_timm_backbone=False, use_pretrained_backbone=False, auxiliary_loss=True,
    )
    return GroundingDinoForObjectDetection(config)


def test_label_groups_are_the_phrases(output, tok) -> None:
    from transformers.models.grounding_dino.modeling_grounding_dino import build_label_maps

    root, _ = output
    ds = dataset(root, tok, text=TextConfig(max_text_len=64, prompt="phrases"))
    batch = collate(list(itertools.islice(iter(ds), 4)), pad_token_id=tok.pad_token_id)
    maps = build_label_maps(torch.zeros(4, 20, 64), batch["input_ids"])
    for label, target, label_map in zip(grounding_dino_labels(batch), batch["targets"], maps):
        assert len(label["class_labels"]) == len(target["boxes"])
        assert torch.equal(label_map[label["class_labels"]].bool(), target["positive_map"])


def test_tiny_grounding_dino_trains_on_loader_batches(output, tok) -> None:
    check_tokenizer(tok)
    root, _ = output
    ds = dataset(root, tok, image=ImageConfig(min_size=96, max_size=128), text=TextConfig(max_text_len=64, prompt="phrases"),
                 epochs=None)
    model = use_per_sample_loss(tiny_grounding_dino(tok.vocab_size))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for batch in itertools.islice(GroundingLoader(ds, batch_size=2), 4):
        out = model(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"], input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"],
                    labels=grounding_dino_labels(batch))
        out.loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(out.loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert len(set(losses)) == len(losses) and losses[-1] < losses[0]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_keeps_the_epochs_shards_when_more_are_committed_meanwhile(tmp_path, tok, num_workers: int) -> None:
    built = build_output(tmp_path, shards=3, samples=12, seed=5, uncommitted=1)

    def loader(epochs: int = 1) -> GroundingLoader:
        return GroundingLoader(dataset(tmp_path, tok, seed=1, epochs=epochs), batch_size=2, num_workers=num_workers)

    epoch = keys_of(loader())  # one uninterrupted epoch over the three committed shards
    first = loader(epochs=2)
    it = iter(first)
    before = keys_of(itertools.islice(it, 3))
    state = first.state_dict()
    write_shard(tmp_path, built[3].shard, built[3].rows, commit=True)  # the job commits another shard
    resumed = loader(epochs=2)
    resumed.load_state_dict(state)
    seen = collections.Counter(before + keys_of(resumed))
    new_keys = {r["key"] for r in built[3].rows} & set(seen)
    assert new_keys, "the next epoch takes in the new shard"
    # The interrupted epoch ends over the shards it began with; the next one adds the new shard.
    assert {k: seen[k] for k in epoch} == {k: 2 for k in epoch}
    assert {k: seen[k] for k in new_keys} == {k: 1 for k in new_keys}


@pytest.mark.parametrize("where, reason", [
    ("typo", "typo does not exist"),
    ("empty", "has no committed shard yet"),
    ("empty/wds/*.tar", "no tar matching .*empty/wds/\\*.tar has a manifest"),
    ("typo/wds/*.tar", "typo does not exist"),
    ("{empty,typo}", "empty has no committed shard yet .*; .*typo does not exist"),
])
def test_a_loader_with_nothing_to_read_says_why(tmp_path, tok, where, reason) -> None:
    (tmp_path / "empty").mkdir()
    loader = GroundingLoader(dataset(tmp_path / where, tok), batch_size=2)
    with pytest.warns(UserWarning, match=f"GroundingLoader has no data: .*{reason}"):
        assert list(loader) == []


def test_a_loader_with_shards_does_not_warn(output, tok) -> None:
    import warnings

    root, _ = output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert next(iter(GroundingLoader(dataset(root, tok), batch_size=2)))

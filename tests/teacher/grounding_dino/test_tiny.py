"""The tiny teacher is a real checkpoint: loaded by the same code as a real one, with a usable
vocabulary laid out like BERT's (Grounding DINO hard-codes those special-token ids)."""

import json

import numpy as np
from transformers import AutoTokenizer

from teacher.load import load_teacher
from teacher.protocol import GroundingSettings, Teacher, TeacherRequest, concurrent_calls


def test_tiny_checkpoint_files_and_tokenizer(tiny_teacher):
    cfg = json.load(open(f"{tiny_teacher}/config.json"))
    assert cfg["model_type"] == "grounding-dino"
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    assert tok.vocab_size > 1000
    assert tok.convert_tokens_to_ids(["[CLS]", "[SEP]", ".", "?"]) == [101, 102, 1012, 1029]
    ids = tok("A red car near the old house.")["input_ids"]
    assert tok.unk_token_id not in ids and ids[0] == 101 and ids[-1] == 102


def test_tiny_teacher_predicts_valid_boxes_for_a_mixed_batch(tiny_teacher):
    teacher = load_teacher(tiny_teacher, GroundingSettings(box_threshold=0.0, max_boxes=5), device="cpu")
    assert teacher.revision and teacher.teacher_id == tiny_teacher
    rng = np.random.default_rng(0)
    captions = [("a red car next to a white house", [(0, 9), (21, 32)]), ("two dogs", [(0, 8)])]
    reqs = [TeacherRequest(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), 640, 480, c, s) for c, s in captions]
    out = teacher.predict(reqs)
    assert len(out) == 2
    for dets, (caption, spans) in zip(out, captions):
        assert 0 < len(dets) <= 5
        for d in dets:
            assert 0 <= d.phrase < len(spans)
            assert 0 <= d.x0 <= d.x1 <= 640 and 0 <= d.y0 <= d.y1 <= 480 and 0 <= d.score <= 1
    alone = teacher.predict(reqs[1:])
    assert [(d.phrase, round(d.score, 4)) for d in alone[0]] == [(d.phrase, round(d.score, 4)) for d in out[1]]


def test_pickle_only_checkpoint_is_refused_without_the_flag(tmp_path):
    import pytest

    from teacher.checkpoints import CheckpointError, check_weight_format

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="--allow-pickle-checkpoint"):
        check_weight_format(str(tmp_path), allow_pickle=False)
    check_weight_format(str(tmp_path), allow_pickle=True)


def test_concurrent_predict_calls_give_the_sequential_results(tiny_teacher):
    """Callers overlap host work with another call's device pass; each pads into its own buffer,
    and tokenising (the fast tokenizer's truncation and padding settings are shared) is serialised.
    Long captions are split into several prompts, so a wrong truncation would change the output."""
    from concurrent.futures import ThreadPoolExecutor

    teacher = load_teacher(tiny_teacher, GroundingSettings(box_threshold=0.0, max_boxes=5), device="cpu")
    rng = np.random.default_rng(1)
    long_caption = " and ".join(["a red car next to a white house"] * 40) + " and two dogs"
    long_spans = [(0, 9), (len(long_caption) - 8, len(long_caption))]
    batches = []
    for b in range(12):
        shape = (48 + 8 * (b % 6), 72 - 4 * (b % 6), 3)
        captions = [("a dog and a cat", [(0, 5), (10, 15)]), (long_caption, long_spans)][: 1 + b % 2] * 2
        batches.append([TeacherRequest(rng.integers(0, 255, shape, dtype=np.uint8), 320, 240, c, sp) for c, sp in captions])

    def rounded(out):
        return [[(d.phrase, round(d.score, 5), round(d.x0, 3), round(d.y1, 3)) for d in dets] for dets in out]

    sequential = [rounded(teacher.predict(b)) for b in batches]
    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            concurrent = [rounded(out) for out in pool.map(teacher.predict, batches)]
        assert concurrent == sequential
    assert teacher.concurrent_calls == 1  # a CPU teacher's forward already uses every core
    assert isinstance(teacher, Teacher) and concurrent_calls(teacher) == 1


def test_concurrent_calls_never_see_each_others_tokenizer_settings(tiny_teacher):
    """The same, with the forward replaced by a cheap function of the tokens, so that the calls'
    tokenising overlaps as much as possible (without the tokenizer lock this fails in most runs)."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import torch

    teacher = load_teacher(tiny_teacher, GroundingSettings(box_threshold=0.0, max_boxes=3), device="cpu")

    def token_model(input_ids, **_):
        b, t = input_ids.shape
        logits = torch.full((b, 4, 256), -20.0)
        logits[:, :, :t] = torch.sin(input_ids.float()[:, None, :] + torch.arange(4.0)[None, :, None])
        return SimpleNamespace(logits=logits, pred_boxes=torch.full((b, 4, 4), 0.5))

    teacher.model = token_model
    long_caption = " and ".join(["a red car next to a white house"] * 40) + " and two dogs"
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    batches = [[TeacherRequest(pixels, 8, 8, long_caption, [(0, 9), (len(long_caption) - 8, len(long_caption))]),
                TeacherRequest(pixels, 8, 8, f"dog number {i}", [(0, 3)])] for i in range(300)]
    sequential = [teacher.predict(b) for b in batches]
    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(teacher.predict, batches)) == sequential


def test_padding_never_carries_pixels_of_an_earlier_batch(tiny_teacher):
    """The staging buffer is reused; a batch padded inside it must equal one padded fresh."""
    settings = GroundingSettings(box_threshold=0.0, max_boxes=5)
    used, fresh = load_teacher(tiny_teacher, settings, device="cpu"), load_teacher(tiny_teacher, settings, device="cpu")
    rng = np.random.default_rng(3)
    big = [TeacherRequest(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), 96, 96, "a dog", [(0, 5)]) for _ in range(3)]
    mixed = [TeacherRequest(rng.integers(0, 255, shape, dtype=np.uint8), 80, 60, "a red car", [(0, 9)])
             for shape in [(40, 64, 3), (64, 32, 3), (48, 48, 3)]]
    import torch

    used.predict(big)
    with torch.inference_mode():  # the staging buffer was made inside predict's inference mode
        pixels, _ = used._pad_images([r.pixels for r in mixed])
    assert int(pixels[0, 40:].sum()) == 0 and int(pixels[1, :, 32:].sum()) == 0 and int(pixels[2, 48:].sum()) == 0
    assert used.predict(mixed) == fresh.predict(mixed)

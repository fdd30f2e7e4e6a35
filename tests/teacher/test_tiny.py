"""The tiny teacher is a real checkpoint: loaded by the same code as a real one, with a usable
vocabulary laid out like BERT's (Grounding DINO hard-codes those special-token ids)."""

import json

import numpy as np
from transformers import AutoTokenizer

from teacher.load import load_teacher
from teacher.protocol import GroundingSettings, TeacherRequest


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
    """Callers overlap host work with another call's device pass; each pads into its own buffer."""
    from concurrent.futures import ThreadPoolExecutor

    teacher = load_teacher(tiny_teacher, GroundingSettings(box_threshold=0.0, max_boxes=5), device="cpu")
    rng = np.random.default_rng(1)
    batches = []
    for b in range(8):
        shape = (64 + 8 * b, 96 - 4 * b, 3)
        batches.append([TeacherRequest(rng.integers(0, 255, shape, dtype=np.uint8), 320, 240, "a dog and a cat", [(0, 5), (10, 15)])
                        for _ in range(3)])

    def rounded(out):
        return [[(d.phrase, round(d.score, 5), round(d.x0, 3), round(d.y1, 3)) for d in dets] for dets in out]

    sequential = [rounded(teacher.predict(b)) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        concurrent = [rounded(out) for out in pool.map(teacher.predict, batches)]
    assert concurrent == sequential
    assert teacher.concurrent_calls == 1  # a CPU teacher's forward already uses every core

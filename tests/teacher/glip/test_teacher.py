"""GlipTeacher through the Teacher protocol, from a converted (scaled-down golden) directory."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from teacher.glip import GlipTeacher, is_glip_checkpoint_dir, load_glip_teacher, preprocess
from teacher.glip.inference import detect
from teacher.glip.text import Prompt, encode_prompts
from teacher.protocol import GroundingSettings, Teacher, TeacherRequest

pytestmark = pytest.mark.needs_shared_data

SETTINGS = GroundingSettings(box_threshold=0.0, nms_iou=0.6, max_boxes=100)


@pytest.fixture(scope="module")
def teacher(golden_checkpoint_dir) -> GlipTeacher:
    return load_glip_teacher(str(golden_checkpoint_dir), SETTINGS, "cpu")


@pytest.fixture(scope="module")
def small_teacher(golden_checkpoint_dir, tmp_path_factory) -> GlipTeacher:
    """The same weights with a smaller test size in config.json (keeps CPU tests quick)."""
    out = tmp_path_factory.mktemp("glip_small")
    for f in golden_checkpoint_dir.iterdir():
        shutil.copy(f, out / f.name)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(min_size_test=128, max_size_test=192)
    (out / "config.json").write_text(json.dumps(cfg))
    return load_glip_teacher(str(out), SETTINGS, "cpu")


def _request(pixels: np.ndarray, caption: str, spans, frame=None) -> TeacherRequest:
    h, w = pixels.shape[:2]
    fw, fh = frame or (w, h)
    return TeacherRequest(pixels=pixels, width=fw, height=fh, caption=caption, spans=spans)


def test_is_a_teacher(teacher, golden_checkpoint_dir) -> None:
    assert isinstance(teacher, Teacher)
    assert is_glip_checkpoint_dir(golden_checkpoint_dir)
    assert teacher.teacher_id.startswith("glip-golden:") and teacher.revision and teacher.device == "cpu"


def test_golden_request_equals_model_detections_in_request_frame(teacher, golden_model, golden_meta,
                                                                 golden_pixels) -> None:
    """Half-size pixels in a full-size frame: the teacher resizes to its test size, runs the
    official post-processing, and scales boxes to width x height."""
    spans = [(p["start"], p["end"]) for p in golden_meta["phrases"]]
    (dets,) = teacher.predict([_request(golden_pixels, golden_meta["caption"], spans, frame=(750, 1000))])
    cfg = golden_model.config
    resized = preprocess.resize_pixels(golden_pixels, cfg.min_size_test, cfg.max_size_test)
    img = preprocess.normalize(resized, cfg.pixel_mean, cfg.pixel_std)
    ids, mask, maps = encode_prompts(teacher.tokenizer, [Prompt(golden_meta["caption"], [0, 1, 2, 3], spans)], 256)
    (ref,) = detect(golden_model, preprocess.pad_batch([img], 32), [tuple(img.shape[1:])], ids, mask, maps)
    assert len(dets) == len(ref.scores) > 0
    sx, sy = 750 / img.shape[2], 1000 / img.shape[1]
    for d, box, score, label in zip(dets, ref.boxes.tolist(), ref.scores.tolist(), ref.labels.tolist()):
        assert d.phrase == label - 1 and d.score == pytest.approx(score, abs=1e-6)
        assert [d.x0, d.y0, d.x1, d.y1] == pytest.approx([box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy], abs=1e-3)


def test_mixed_batch_invariants_and_order(small_teacher, golden_pixels) -> None:
    small = golden_pixels[::2, ::2]
    reqs = [
        _request(golden_pixels, "a man in an orange hat", [(0, 5), (9, 22)]),
        _request(small, "a red car near a blue shirt", [(17, 27), (0, 9)], frame=(375, 500)),
        _request(golden_pixels, "nothing to ground", []),
        _request(golden_pixels[:200], "a man", [(0, 5)]),
    ]
    out = small_teacher.predict(reqs)
    assert len(out) == 4 and out[2] == []
    for req, dets in zip(reqs, out):
        assert len(dets) <= SETTINGS.max_boxes
        for d in dets:
            assert 0 <= d.phrase < len(req.spans) and 0.0 <= d.score <= 1.0
            assert 0 <= d.x0 <= d.x1 <= req.width and 0 <= d.y0 <= d.y1 <= req.height
    assert out[0] and out[1] and out[3]


def test_batched_equals_alone_for_same_size_images(small_teacher, golden_pixels) -> None:
    """Different captions in one batch; same-size images get the same padding, hence the
    same result as alone."""
    a = _request(golden_pixels, "a man in an orange hat", [(0, 5), (9, 22)])
    b = _request(golden_pixels[:, ::-1].copy(), "a red car", [(0, 9)])
    together = small_teacher.predict([a, b])
    alone = [small_teacher.predict([a])[0], small_teacher.predict([b])[0]]
    for x, y in zip(together, alone):
        assert len(x) == len(y) > 0
        for p, q in zip(x, y):
            assert p.phrase == q.phrase and p.score == pytest.approx(q.score, abs=1e-5)
            assert [p.x0, p.y0, p.x1, p.y1] == pytest.approx([q.x0, q.y0, q.x1, q.y1], abs=1e-3)


def test_threshold_and_max_boxes(small_teacher, golden_pixels) -> None:
    strict = GlipTeacher(small_teacher.model, small_teacher.tokenizer, GroundingSettings(box_threshold=0.6, max_boxes=3),
                         "cpu", None, small_teacher.teacher_id, small_teacher.revision)
    (dets,) = strict.predict([_request(golden_pixels, "a man", [(0, 5)])])
    assert len(dets) <= 3 and all(d.score >= 0.6 for d in dets)


def test_bad_spec_is_refused(tmp_path, golden_checkpoint_dir) -> None:
    with pytest.raises(ValueError, match="not a GLIP teacher spec"):
        load_glip_teacher(str(tmp_path), SETTINGS, "cpu")
    with pytest.raises(ValueError, match="not 'glip-t'"):
        load_glip_teacher(f"glip-t:{golden_checkpoint_dir}", SETTINGS, "cpu")

"""The teacher's device pass does not make the host wait on the GPU before its result is ready.

Audited on the CPU: `HostSyncAudit` records the operations that would wait on a GPU.
"""

import numpy as np
import pytest

from teacher.fast.host_sync import TENSOR_CHECKS_ENV, HostSyncAudit, skip_transformers_tensor_checks
from teacher.load import load_teacher
from teacher.protocol import GroundingSettings, TeacherRequest


def _audit_predict(teacher) -> HostSyncAudit:
    audit = HostSyncAudit()
    device_pass = teacher._device_pass

    def audited(*args):
        with audit:
            return device_pass(*args)

    teacher._device_pass = audited
    rng = np.random.default_rng(0)
    captions = [("a red car next to a white house", [(0, 9), (21, 32)]), ("two dogs", [(0, 8)])]
    teacher.predict([TeacherRequest(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), 320, 240, c, s) for c, s in captions])
    return audit


def _deformable_attention_layers(teacher) -> int:
    return sum(type(m).__name__ == "GroundingDinoMultiscaleDeformableAttention" for m in teacher.model.modules())


def test_transformers_shape_checks_read_back_once_per_deformable_attention_layer(tiny_teacher, monkeypatch):
    monkeypatch.setenv(TENSOR_CHECKS_ENV, "0")
    teacher = load_teacher(tiny_teacher, GroundingSettings(box_threshold=0.0), device="cpu")
    audit = _audit_predict(teacher)
    assert sum(audit.readbacks.values()) == _deformable_attention_layers(teacher) > 0
    assert {where.split(":")[0] for _, where in audit.readbacks} == {"import_utils.py"}


def test_device_pass_reads_nothing_back_with_the_checks_skipped(tiny_teacher, monkeypatch):
    monkeypatch.setenv(TENSOR_CHECKS_ENV, "1")
    teacher = load_teacher(tiny_teacher, GroundingSettings(box_threshold=0.0), device="cpu")
    audit = _audit_predict(teacher)
    assert not audit.readbacks
    # What remains are transformers' own small uploads; the teacher's inputs all travel through
    # pinned non-blocking copies, so none of them may come from this project's code.
    assert audit.uploads and all(where.startswith("modeling_grounding_dino.py:") for _, where in audit.uploads)


@pytest.mark.parametrize("label", ["if tensor", "float(tensor)", "boolean mask index", "torch.tensor"])
def test_audit_records_each_kind_of_wait_where_it_happens(label):
    import torch

    x = torch.arange(6.0)
    with HostSyncAudit() as audit:
        if label == "if tensor":
            bool((x > 2).any())
        elif label == "float(tensor)":
            float(x.sum())
        elif label == "boolean mask index":
            x[x > 1].sum()
        else:
            torch.tensor([1.0, 2.0])
        x.sum()  # a plain device operation: never recorded
    waits = audit.uploads if label == "torch.tensor" else audit.readbacks
    assert sum(waits.values()) == 1
    assert not (audit.readbacks if label == "torch.tensor" else audit.uploads)
    assert all(where.startswith("test_host_sync.py:test_audit_records") for _, where in waits)


@pytest.mark.parametrize("user_value, skipped", [(None, True), ("0", False), ("1", True)])
def test_skipping_the_checks_keeps_a_users_choice(monkeypatch, user_value, skipped):
    monkeypatch.setenv(TENSOR_CHECKS_ENV, "placeholder")  # so the test restores the variable afterwards
    if user_value is None:
        monkeypatch.delenv(TENSOR_CHECKS_ENV)
    else:
        monkeypatch.setenv(TENSOR_CHECKS_ENV, user_value)
    assert skip_transformers_tensor_checks() is skipped
    import os

    assert os.environ[TENSOR_CHECKS_ENV] == (user_value or "1")

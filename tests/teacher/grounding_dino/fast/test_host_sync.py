"""The teacher's device pass does not make the host wait on the GPU before its result is ready.

Audited on the CPU: `HostSyncAudit` records the operations that would wait on a GPU.
"""

import threading

import numpy as np
import pytest
import torch
from transformers.models.grounding_dino import modeling_grounding_dino

from teacher.grounding_dino.fast.host_sync import HostSyncAudit, tensor_checks_skipped
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


@pytest.fixture
def teacher(tiny_teacher):
    return load_teacher(tiny_teacher, GroundingSettings(box_threshold=0.0), device="cpu")


def test_transformers_shape_checks_read_back_once_per_deformable_attention_layer(teacher):
    assert not teacher.skip_tensor_checks  # the CPU path keeps every check
    audit = _audit_predict(teacher)
    assert sum(audit.readbacks.values()) == _deformable_attention_layers(teacher) > 0
    assert {where.split(":")[0] for _, where in audit.readbacks} == {"import_utils.py"}


def test_device_pass_reads_nothing_back_with_the_checks_skipped(teacher):
    teacher.skip_tensor_checks = True  # what the GPU fast path sets
    audit = _audit_predict(teacher)
    assert not audit.readbacks
    # What remains are transformers' own small uploads; the teacher's inputs all travel through
    # pinned non-blocking copies, so none of them may come from this project's code.
    assert audit.uploads and all(where.startswith("modeling_grounding_dino.py:") for _, where in audit.uploads)


def test_checks_are_skipped_only_inside_the_block_and_in_its_thread(teacher):
    text = teacher.tokenizer(["a dog ."], return_tensors="pt")
    inputs = {
        "input_ids": text["input_ids"], "attention_mask": text["attention_mask"],
        "pixel_values": torch.rand(1, 3, 64, 96), "pixel_mask": torch.ones(1, 64, 96, dtype=torch.long),
    }

    def readbacks() -> int:
        with torch.inference_mode(), HostSyncAudit() as audit:
            teacher.model(**inputs)
        return sum(audit.readbacks.values())

    layers = _deformable_attention_layers(teacher)
    in_thread: list[int] = []
    with tensor_checks_skipped(teacher.model) as found:
        assert found
        inside = readbacks()
        worker = threading.Thread(target=lambda: in_thread.append(readbacks()))
        worker.start()
        worker.join()
    assert (inside, in_thread, readbacks()) == (0, [layers], layers)

    check = modeling_grounding_dino.torch_compilable_check  # the installed switch
    with pytest.raises(ValueError, match="outside"):
        check(torch.tensor(False), "outside")
    with tensor_checks_skipped(teacher.model):
        check(torch.tensor(False), "a tensor check is skipped")
        with pytest.raises(ValueError, match="plain"):
            check(False, "a plain condition is still checked")


def test_a_model_without_tensor_checks_is_left_alone():
    with tensor_checks_skipped(torch.nn.Linear(2, 2)) as found:
        assert not found


@pytest.mark.parametrize("label", ["if tensor", "float(tensor)", "boolean mask index", "tolist", "torch.tensor"])
def test_audit_records_each_kind_of_wait_where_it_happens(label):
    x = torch.arange(6.0)
    with HostSyncAudit() as audit:
        if label == "if tensor":
            bool((x > 2).any())
        elif label == "float(tensor)":
            float(x.sum())
        elif label == "boolean mask index":
            x[x > 1].sum()
        elif label == "tolist":
            x.tolist()
        else:
            torch.tensor([1.0, 2.0])
        x.sum()  # a plain device operation: never recorded
    waits = audit.uploads if label == "torch.tensor" else audit.readbacks
    assert sum(waits.values()) == 1
    assert not (audit.readbacks if label == "torch.tensor" else audit.uploads)
    assert all(where.startswith("test_host_sync.py:test_audit_records") for _, where in waits)
    assert "tolist" not in torch.Tensor.__dict__  # the audit put the methods back

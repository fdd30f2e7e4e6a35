"""install_fast_attention on tiny random Grounding DINO models: same outputs as eager, on CPU.

The kernel runs in Triton's interpreter (TRITON_INTERPRET=1), so the patched forward exercises
the real kernel on the real call sites (encoder and decoder, padding masks, batch of two).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from transformers import (  # noqa: E402
    BertConfig,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    MMGroundingDinoConfig,
    MMGroundingDinoForObjectDetection,
    SwinConfig,
)

import teacher.grounding_dino.fast_attention as fast_attention  # noqa: E402
from teacher.grounding_dino.fast_attention import (  # noqa: E402
    fast_attention_report,
    install_fast_attention,
    uninstall_fast_attention,
)

TEXT_LEN = 16
# Not square, so that x/y mix-ups show; 64 x 96 gives levels 8x12, 4x6, 2x3, 1x2 (128 rows: one
# kernel block) and no 1x1 level, where GroupNorm refuses a batch of one.
HEIGHT, WIDTH = 64, 96


def tiny_config_kwargs() -> dict:
    """Swin backbone with embed_dim 24, d_model 32, 1 encoder and 2 decoder layers, 4 levels."""
    return dict(
        backbone_config=SwinConfig(
            embed_dim=24,
            depths=[1, 1, 1, 1],
            num_heads=[1, 2, 2, 4],
            window_size=4,
            image_size=64,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=1000,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_n_points=2,
        decoder_n_points=2,
        num_queries=10,
        max_text_len=32,
    )


def tiny_inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, (batch, TEXT_LEN), generator=gen)
    input_ids[:, 0], input_ids[:, -1] = 101, 102
    attention_mask = torch.ones(batch, TEXT_LEN, dtype=torch.long)
    attention_mask[-1, TEXT_LEN - 3 :] = 0  # one padded prompt
    pixel_mask = torch.ones(batch, HEIGHT, WIDTH, dtype=torch.long)
    pixel_mask[-1, :, 72:] = 0  # one padded image: the value masks of the encoder matter
    return {
        "pixel_values": torch.randn(batch, 3, HEIGHT, WIDTH, generator=gen),
        "pixel_mask": pixel_mask,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros(batch, TEXT_LEN, dtype=torch.long),
    }


def run(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs)
    return out.logits, out.pred_boxes


@pytest.mark.parametrize(
    "config_cls,model_cls,batch",
    [
        (GroundingDinoConfig, GroundingDinoForObjectDetection, 2),
        (MMGroundingDinoConfig, MMGroundingDinoForObjectDetection, 1),
    ],
)
def test_patched_model_matches_eager(monkeypatch: pytest.MonkeyPatch, config_cls, model_cls, batch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    torch.manual_seed(0)
    model = model_cls(config_cls(**tiny_config_kwargs())).eval()
    inputs = tiny_inputs(batch)
    eager_logits, eager_boxes = run(model, inputs)
    state_before = set(model.state_dict())

    patched = install_fast_attention(model, strict=True)
    # One MSDA per encoder layer and per decoder layer.
    assert patched == 1 + 2
    assert install_fast_attention(model) == 0  # idempotent
    assert set(model.state_dict()) == state_before  # checkpoints unaffected

    logits, boxes = run(model, inputs)
    report = fast_attention_report(model)
    assert report["calls"] == {"triton": 3} and report["errors"] == []
    # -inf marks text positions past the prompt; assert_close treats equal infinities as equal.
    torch.testing.assert_close(logits, eager_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(boxes, eager_boxes, rtol=1e-4, atol=1e-5)

    assert uninstall_fast_attention(model) == 3
    assert fast_attention_report(model)["patched"] == 0


def test_cpu_without_interpreter_uses_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(GroundingDinoConfig(**tiny_config_kwargs())).eval()
    inputs = tiny_inputs(1)
    eager = run(model, inputs)
    assert install_fast_attention(model) == 3
    patched = run(model, inputs)
    assert fast_attention_report(model)["calls"] == {"eager": 3}
    torch.testing.assert_close(patched, eager, rtol=0, atol=0)


def test_kernel_failure_falls_back_to_eager_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that raises (say a compile error on an unknown GPU) degrades, unless strict."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")

    def broken(*args, **kwargs):
        raise RuntimeError("simulated compile failure")

    monkeypatch.setattr(fast_attention, "msda_triton", broken)
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(GroundingDinoConfig(**tiny_config_kwargs())).eval()
    inputs = tiny_inputs(1)
    eager = run(model, inputs)

    install_fast_attention(model)
    patched = run(model, inputs)
    report = fast_attention_report(model)
    assert report["calls"] == {"eager": 3}
    assert report["errors"] == ["RuntimeError: simulated compile failure"]
    torch.testing.assert_close(patched, eager, rtol=0, atol=0)

    uninstall_fast_attention(model)
    install_fast_attention(model, strict=True)
    with pytest.raises(RuntimeError, match="simulated"):
        run(model, inputs)


def test_install_without_triton_keeps_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_attention, "triton_import_error", lambda: "ImportError: no triton")
    model = GroundingDinoForObjectDetection(GroundingDinoConfig(**tiny_config_kwargs())).eval()
    assert install_fast_attention(model) == 0
    assert fast_attention_report(model)["patched"] == 0

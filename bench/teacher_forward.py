"""What the teacher benchmark runs: the seeded Grounding DINO, its input batches and forward callables.

Used by `bench/gpu_teacher.py`: `build_model` (the default config or a tiny CPU one, random
weights), `make_batch` (uint8 NHWC images and phrase-like prompts, as the CPU decode stage hands
them over), `Normalizer` (host uint8 -> normalised device fp32), `forward_fn` (eager or bf16
autocast, from host batches or device-resident inputs) and `cuda_graph_fn` (a forward replayed
through a CUDA graph).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_model(size: str, device: torch.device) -> torch.nn.Module:
    """Seeded random Grounding DINO: the default config, or a tiny one for CPU smoke runs."""
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig

    if size == "full":
        config = GroundingDinoConfig()
    else:
        config = GroundingDinoConfig(
            backbone_config=SwinConfig(
                embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=4,
                out_features=["stage2", "stage3", "stage4"],
            ),
            text_config=BertConfig(
                vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64,
            ),
            d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=20,
            max_text_len=64,
        )
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config)
    # transformers zero-initialises the last layer of each box head (as DINO trains it), so a
    # random model's boxes would be its proposals, equal in every precision once the same
    # queries are picked. Random weights there, like every other linear layer, make the box
    # comparison of the accuracy checks mean something.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "bbox_embed" in name and ".layers.2." in name:
                param.normal_(0.0, config.init_std)
    return model.to(device).eval()


def make_batch(n: int, height: int, width: int, text_len: int, vocab: int, seed: int) -> dict[str, torch.Tensor]:
    """uint8 NHWC images as the CPU decode stage hands them over, and phrase-like prompts."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, height, width, 3), dtype=torch.uint8, generator=gen)
    ids = torch.randint(min(1000, vocab // 2), vocab, (n, text_len), generator=gen)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS], [SEP] in BERT's vocabulary
    ids[:, 5::6] = 1012 if vocab > 1012 else vocab - 1  # ".": several phrases per prompt
    return {
        "images": images,
        "input_ids": ids,
        "attention_mask": torch.ones(n, text_len, dtype=torch.long),
        "token_type_ids": torch.zeros(n, text_len, dtype=torch.long),
    }


class Normalizer:
    """uint8 NHWC host batch -> normalised fp32 NCHW on the device, in one multiply-add."""

    def __init__(self, device: torch.device) -> None:
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) / std
        self.device = device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        return torch.addcmul(-self.shift, x, self.scale).contiguous()


def to_device_text(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The prompt tensors of a host batch, on the device."""
    return {k: batch[k].to(device, non_blocking=True) for k in ("input_ids", "attention_mask", "token_type_ids")}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_ctx(device: torch.device, enabled: bool, cache: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `enabled`, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    # Inside a CUDA graph capture the weight-cast cache must be off (PyTorch's graph notes).
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)


Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def forward_fn(
    model: torch.nn.Module, device: torch.device, *, autocast: bool, from_host: bool, autocast_cache: bool = True
) -> Callable[[dict[str, torch.Tensor]], Outputs]:
    """A callable mapping a host batch to `Outputs`; `from_host` includes transfer + normalisation.

    Outputs: token logits, boxes, the encoder's vision memory (before the two-stage top-k, so it
    varies smoothly with the arithmetic) and the initial reference points (which proposals the
    top-k selected).
    """
    normalize = Normalizer(device)

    def prepare(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"pixel_values": normalize(batch["images"]), **to_device_text(batch, device)}

    def run(inputs: dict[str, torch.Tensor]) -> Outputs:
        with torch.inference_mode(), autocast_ctx(device, autocast, autocast_cache):
            out = model(**inputs)
        return out.logits, out.pred_boxes, out.encoder_last_hidden_state_vision, out.init_reference_points

    if from_host:
        return lambda batch: run(prepare(batch))
    cache: dict[int, dict[str, torch.Tensor]] = {}

    def resident(batch: dict[str, torch.Tensor]) -> Outputs:
        key = id(batch["images"])
        if key not in cache:
            cache.clear()
            with torch.inference_mode():
                cache[key] = prepare(batch)
        return run(cache[key])

    return resident


def cuda_graph_fn(
    fn: Callable[[dict[str, torch.Tensor]], Outputs], batch: dict[str, torch.Tensor], device: torch.device
) -> Callable[[dict[str, torch.Tensor]], Outputs]:
    """Capture `fn(batch)` once into a CUDA graph; replaying it re-reads `batch`'s host memory.

    Any host-device sync inside the forward (an `.item()`, a pageable copy) makes the capture
    fail: the caller catches that and reports it.
    """
    static = batch  # the graph's H2D copies read these (pinned) host tensors on every replay
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn(static)
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn(static)

    def replay(new_batch: dict[str, torch.Tensor]) -> Outputs:
        if new_batch is not static:
            torch.cuda.current_stream(device).synchronize()  # the last replay may still read them
            for k, v in new_batch.items():
                static[k].copy_(v)
        graph.replay()
        return outputs

    return replay


class _TorchWithTopk:
    """The torch namespace as Grounding DINO's module sees it, with `topk` replaced."""

    def __init__(self, topk: Callable) -> None:
        self.topk = topk

    def __getattr__(self, name: str):
        return getattr(torch, name)


@contextlib.contextmanager
def query_selection(record: list[torch.Tensor] | None = None, force: list[torch.Tensor] | None = None):
    """Record the two-stage top-k proposal indices of each forward, or force recorded ones.

    With random weights the encoder's proposal scores are near ties, so a bf16 forward picks other
    queries than the fp32 reference and its logits and boxes belong to different queries. Forcing
    the reference's pick compares the same queries: the numerical error of everything else.
    """
    from transformers.models.grounding_dino import modeling_grounding_dino as gd

    forced = iter(force or [])

    def topk(input: torch.Tensor, k: int, dim: int = -1, *args, **kwargs):
        values, indices = torch.topk(input, k, dim, *args, **kwargs)
        if force is not None:
            indices = next(forced).to(indices.device)
            values = torch.gather(input, dim, indices)
        if record is not None:
            record.append(indices.detach().clone())
        return values, indices

    original = gd.torch
    gd.torch = _TorchWithTopk(topk)
    try:
        yield
    finally:
        gd.torch = original

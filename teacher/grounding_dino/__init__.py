"""The Grounding DINO family through `transformers` (`teacher.py`), the default backend: any
zero-shot detection checkpoint of that family, with the grounding semantics applied on its token
logits. `fast/` and `fast_attention.py` are its fused GPU path (Triton deformable attention);
`tiny.py` writes the tiny random checkpoint the tests and the demo use (`glip-tiny-teacher`)."""

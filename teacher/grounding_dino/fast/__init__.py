"""The Grounding DINO teacher's fast GPU path: a fused multi-scale deformable attention kernel.

The public entry points live in `teacher.grounding_dino.fast_attention`; this package holds the
pieces: `msda_reference` (plain PyTorch, the definition of the operation), `msda_triton` (the
Triton launcher; Triton is imported only when a kernel is first needed, so that
`TRITON_INTERPRET=1` set by a test or a user before the first call takes effect), and
`host_sync` (transformers' tensor checks skipped inside the forward, and the audit that finds them).
"""

"""The teachers: grounding models that box the phrases of a caption, one folder per backend.

Backends (each provides `teacher.protocol.Teacher`; `teacher.load.load_teacher` picks one from
the `--teacher` value, parsed once by `teacher.spec.TeacherSpec`):

    glip/             native GLIP-T / GLIP-L (official checkpoints, converted or .pth)
    grounding_dino/   the Grounding DINO family through `transformers` (the default), with its
                      fused GPU path (`fast/`, `fast_attention.py`) and its tiny random checkpoint
    clip/             CLIP, not a teacher but the rescorer of any teacher's boxes (`--rescorer`),
                      and its tiny random checkpoint

A new backend goes in a folder of its own beside these (an OWLv2 teacher: `teacher/owlv2/`),
provides the protocol, loads a Hugging Face checkpoint through `teacher.pretrained`, names its
resize rule in `teacher.resize` (and `TeacherSpec.resize_rule`), and is picked in `teacher/load.py`.
Backends import the shared modules below, never each other (an import-linter contract).

Shared by every backend:

    protocol.py       what a backend provides; the request and detection types
    load.py           pick and load the backend a --teacher value names
    spec.py           parse a --teacher value once (hub id, directory, s3:// prefix, glip-x:PATH)
    checkpoints.py    locate and check a checkpoint; copy an s3:// prefix once per node
    pretrained.py     the one loader of Hugging Face checkpoints (model, tokenizer, processor)
    resize.py         each backend's input size rule
    precision.py      bf16 autocast on a GPU, fp32 weights cast once
    grounding.py      grounding maths: phrases to tokens, phrase scores, NMS, box packing
    prompts.py        captions to prompts within the text encoder's token limit
    box_policy.py     after any backend: CLIP re-scoring and NMS across phrases
    resilient.py      a failed batch retried and split, so one bad sample costs only its row
    tiny_checkpoints.py  what every tiny random checkpoint shares (its words, its command line)
"""

"""GLIP-T / GLIP-L as a teacher backend: native PyTorch + transformers' BertModel, loading
the official checkpoints (see teacher/glip/README.md)."""

from teacher.glip.checkpoint import is_glip_checkpoint_dir
from teacher.glip.teacher import GlipTeacher, load_glip_teacher

__all__ = ["GlipTeacher", "is_glip_checkpoint_dir", "load_glip_teacher"]

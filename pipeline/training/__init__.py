"""Training reads the labels: `GroundingShards` streams committed output shards into a student's
`GroundingLoader` (no Ray), `targets` turns a row into a target, `grounding_dino` adapts batches
to `transformers`' Grounding DINO loss."""

from pipeline.training.loader import GroundingLoader, GroundingShards, collate
from pipeline.training.targets import ImageConfig, LabelFilter, TextConfig

__all__ = ["GroundingLoader", "GroundingShards", "ImageConfig", "LabelFilter", "TextConfig", "collate"]

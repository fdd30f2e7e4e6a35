"""The earlier import path of the Grounding DINO training adapter: use `pipeline.training.grounding_dino`."""

from pipeline.training.grounding_dino import *  # noqa: F401,F403

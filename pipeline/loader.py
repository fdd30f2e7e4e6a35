"""The earlier import path of the training loader: use `pipeline.training`."""

from pipeline.training.loader import *  # noqa: F401,F403
from pipeline.training.targets import ImageConfig, LabelFilter, TextConfig  # noqa: F401

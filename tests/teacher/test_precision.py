"""Which arithmetic a teacher runs, and what casting the weights once does."""

import pytest
import torch
from torch import nn

from teacher.precision import autocast_dtype, precast_weights


@pytest.mark.parametrize("device, precision, expected", [
    ("cuda", "bf16", torch.bfloat16),
    ("cuda:1", "bf16", torch.bfloat16),
    ("cuda", "fp32", None),
    ("cpu", "bf16", None),  # a CPU teacher computes in fp32 whatever the setting
    ("cpu", "fp32", None),
])
def test_autocast_dtype(device, precision, expected):
    assert autocast_dtype(device, precision) is expected


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="'fp16' is not one of bf16, fp32"):
        autocast_dtype("cuda", "fp16")


def test_precast_casts_matmul_and_conv_weights_and_keeps_norms_in_fp32():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 3, 8, 8))
    assert precast_weights(model, torch.bfloat16) == 2
    assert model[0].weight.dtype == model[0].bias.dtype == model[3].weight.dtype == torch.bfloat16
    assert model[1].weight.dtype == torch.float32

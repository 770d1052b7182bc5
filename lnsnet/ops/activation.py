"""relu and leaky relu.

relu selects values, so it is exact.  leaky relu multiplies the negative
values by the slope: the slope's exponent round(gamma * log2 slope) is a
constant, computed once per (slope, gamma) at the float boundary like a
table entry, and then added to exponents.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from lnsnet.format import LNSFormat
from lnsnet.tensor import Function, Tensor, quantize, working_gamma


@lru_cache(maxsize=None)
def slope_exponent(slope: float, gamma: int) -> int:
    """The exponent of the slope at gamma (one encode, cached)."""
    _, exp = LNSFormat(32, gamma).encode(slope)
    return int(exp)


class ReLU(Function):
    def forward(self, x: Tensor) -> Tensor:
        self.positive = x.sign > 0
        return quantize(np.where(self.positive, x.sign, 0), np.where(self.positive, x.exp, 0), x.fmt)

    def backward(self, g: Tensor):
        return (self.gradient(np.where(self.positive, g.sign, 0), np.where(self.positive, g.exp, 0),
                              g.fmt.gamma),)


class LeakyReLU(Function):
    def forward(self, x: Tensor, negative_slope: float) -> Tensor:
        if not 0 < negative_slope < 1:
            raise ValueError(f"leaky_relu: negative_slope={negative_slope} must be in (0, 1)")
        self.x, self.slope = x, negative_slope
        exp = np.where(x.sign < 0, x.exp.astype(np.int64) + slope_exponent(negative_slope, x.fmt.gamma), x.exp)
        return quantize(x.sign, exp, x.fmt)

    def backward(self, g: Tensor):
        gamma = working_gamma(g, self.x)
        exp = g.exp_at(gamma)
        exp = np.where(self.x.sign > 0, exp, exp + slope_exponent(self.slope, gamma))
        return (self.gradient(g.sign, exp, gamma),)


def relu(x: Tensor) -> Tensor:
    return ReLU.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return LeakyReLU.apply(x, negative_slope=negative_slope)

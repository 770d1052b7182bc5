"""Conversion of a tensor to another format (bits, gamma).

The exponents are rescaled to the new gamma (an integer shift, rounded to
nearest) and requantized to the new width.  The gradient passes straight
through: rounding is treated as the identity, as quantization-aware training
does, and is only requantized to the backward format.
"""
from __future__ import annotations

from lnsnet.format import LNSFormat
from lnsnet.tensor import Function, Tensor, quantize


def convert(x: Tensor, fmt: LNSFormat, underflow: str = "flush") -> Tensor:
    """x's values in fmt, outside any graph."""
    return quantize(x.sign, x.exp, fmt, underflow=underflow, src_gamma=x.fmt.gamma)


class Cast(Function):
    def forward(self, x: Tensor, fmt: LNSFormat, underflow: str = "flush",
                converted: Tensor | None = None) -> Tensor:
        """converted: convert(x, fmt, underflow) when the caller already has it (a cache)."""
        value = converted if converted is not None else convert(x, fmt, underflow)
        # A fresh Tensor each time: the graph links to it, never to the caller's cached one.
        return Tensor(value.sign, value.exp, value.fmt, value.scale)

    def backward(self, g: Tensor):
        return (self.as_gradient(g),)


def cast(x: Tensor, fmt: LNSFormat, underflow: str = "flush") -> Tensor:
    """x in fmt; x itself when it already is."""
    if x.fmt == fmt:
        return x
    return Cast.apply(x, fmt=fmt, underflow=underflow)

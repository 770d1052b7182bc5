"""Elementwise add, sub, mul, div and neg, with NumPy broadcasting.

Forward: the LNS kernel on the operands (⊕/⊖ from the SB/DB tables, exact
exponent sums for mul/div), rounded once to the operands' format.
Backward: each operand's gradient is computed at the finer of the gradient's
and the operands' gamma (both convert to it exactly), then summed over the
axes along which that operand was broadcast and rounded once to the backward
format.  A number or array operand is encoded in the tensor operand's format.
"""
from __future__ import annotations

import numpy as np

from lnsnet import kernels
from lnsnet.ops.reduce import reduce_to_shape
from lnsnet.tables import tables_for
from lnsnet.tensor import Function, Tensor, quantize, tensor, working_gamma


def _operands(a, b) -> tuple[Tensor, Tensor]:
    if not isinstance(a, Tensor):
        a = tensor(a, fmt=b.fmt)
    if not isinstance(b, Tensor):
        b = tensor(b, fmt=a.fmt)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"shapes {a.shape} and {b.shape} do not broadcast") from None
    return a, b


class _Binary(Function):
    """Keeps the operands and turns a full-shape gradient into each operand's."""

    def keep(self, a: Tensor, b: Tensor) -> None:
        self.a, self.b = a, b

    def operand_gradient(self, sign, exp, gamma: int, operand: Tensor) -> Tensor:
        tables = tables_for(gamma)
        sign, exp = reduce_to_shape(sign, exp, operand.shape, tables, self.mode)
        return self.gradient(sign, exp, gamma)


class Add(_Binary):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.keep(a, b)
        return quantize(*kernels.add(a.sign, a.exp, b.sign, b.exp, a.fmt.tables), a.fmt)

    def backward(self, g: Tensor):
        gamma = g.fmt.gamma
        return (self.operand_gradient(g.sign, g.exp, gamma, self.a) if self.needs_grad[0] else None,
                self.operand_gradient(g.sign, g.exp, gamma, self.b) if self.needs_grad[1] else None)


class Sub(_Binary):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.keep(a, b)
        return quantize(*kernels.sub(a.sign, a.exp, b.sign, b.exp, a.fmt.tables), a.fmt)

    def backward(self, g: Tensor):
        gamma = g.fmt.gamma
        return (self.operand_gradient(g.sign, g.exp, gamma, self.a) if self.needs_grad[0] else None,
                self.operand_gradient(-g.sign, g.exp, gamma, self.b) if self.needs_grad[1] else None)


class Mul(_Binary):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.keep(a, b)
        return quantize(*kernels.mul(a.sign, a.exp, b.sign, b.exp), a.fmt)

    def backward(self, g: Tensor):
        gamma = working_gamma(g, self.a)
        ge = g.exp_at(gamma)
        a, b = self.a, self.b
        ga = gb = None
        if self.needs_grad[0]:
            ga = self.operand_gradient(*kernels.mul(g.sign, ge, b.sign, b.exp_at(gamma)), gamma, a)
        if self.needs_grad[1]:
            gb = self.operand_gradient(*kernels.mul(g.sign, ge, a.sign, a.exp_at(gamma)), gamma, b)
        return ga, gb


class Div(_Binary):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.keep(a, b)
        return quantize(*kernels.div(a.sign, a.exp, b.sign, b.exp), a.fmt)

    def backward(self, g: Tensor):
        gamma = working_gamma(g, self.a)
        ge, ae, be = g.exp_at(gamma), self.a.exp_at(gamma), self.b.exp_at(gamma)
        ga = gb = None
        if self.needs_grad[0]:  # g / b
            ga = self.operand_gradient(*kernels.div(g.sign, ge, self.b.sign, be), gamma, self.a)
        if self.needs_grad[1]:  # -g * a / b**2, as one exact exponent sum
            sign, exp = kernels.mul(g.sign, ge, self.a.sign, ae)
            sign, exp = kernels.div(sign, exp, *kernels.square(self.b.sign, be))
            gb = self.operand_gradient(-sign, exp, gamma, self.b)
        return ga, gb


class Neg(Function):
    def forward(self, x: Tensor) -> Tensor:
        return Tensor(-x.sign, x.exp, x.fmt, x.scale)

    def backward(self, g: Tensor):
        return (self.gradient(-g.sign, g.exp, g.fmt.gamma),)


def add(a, b) -> Tensor:
    return Add.apply(*_operands(a, b))


def sub(a, b) -> Tensor:
    return Sub.apply(*_operands(a, b))


def mul(a, b) -> Tensor:
    return Mul.apply(*_operands(a, b))


def div(a, b) -> Tensor:
    return Div.apply(*_operands(a, b))


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)

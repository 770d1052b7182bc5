"""Sums and means over axes, and the reductions other ops' backward passes need.

A sum over several axes is done as one reduction (the axes are moved to the
end and merged), so each result is rounded once, in the precision's
accumulation mode.  Dividing by a count n subtracts the exponent of n, which
comes from the integer n itself through the linear-to-log conversion
(kernels.from_fixed): no float, one rounding.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from lnsnet import kernels
from lnsnet.tables import Tables, tables_for
from lnsnet.tensor import Function, Tensor, quantize


def sum_axes(sign, exp, axes: tuple[int, ...], tables: Tables, mode: str):
    """(sign, exp) summed over the given (non-negative, distinct) axes, which are removed."""
    sign = np.asarray(sign)
    exp = np.asarray(exp, dtype=np.int64)
    if not axes:
        return sign, exp
    kept = [i for i in range(sign.ndim) if i not in axes]
    kept_shape = tuple(sign.shape[i] for i in kept)
    merged = kept_shape + (math.prod(sign.shape[i] for i in axes),)
    order = kept + list(axes)
    return kernels.lns_sum(np.transpose(sign, order).reshape(merged),
                           np.transpose(exp, order).reshape(merged), tables, axis=-1, mode=mode)


def reduce_to_shape(sign, exp, shape: tuple[int, ...], tables: Tables, mode: str):
    """Undo broadcasting: sum a gradient over the axes along which shape was broadcast."""
    sign = np.asarray(sign)
    lead = sign.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and sign.shape[lead + i] != 1)
    s, x = sum_axes(sign, exp, axes, tables, mode)
    return s.reshape(shape), x.reshape(shape)


def count_exponent(n: int, gamma: int) -> int:
    """round(gamma * log2 n) for a positive integer n, from the integer itself."""
    _, exp = kernels.from_fixed(np.int64(n), 0, tables_for(gamma))
    return int(exp)


def _broadcast_back(g: Tensor, shape_kept: tuple[int, ...], shape: tuple[int, ...]):
    """A gradient of a reduced result spread back over the input's shape."""
    sign = np.broadcast_to(g.sign.reshape(shape_kept), shape).copy()
    exp = np.broadcast_to(g.exp.reshape(shape_kept), shape).copy()
    return sign, exp


class Sum(Function):
    def forward(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        self.axes = normalize_axis_tuple(range(x.ndim) if axis is None else axis, x.ndim)
        self.in_shape = x.shape
        self.kept_shape = tuple(1 if i in self.axes else n for i, n in enumerate(x.shape))
        sign, exp = sum_axes(x.sign, x.exp, self.axes, x.fmt.tables, self.mode)
        if keepdims:
            sign, exp = sign.reshape(self.kept_shape), exp.reshape(self.kept_shape)
        return quantize(sign, exp, x.fmt)

    def backward(self, g: Tensor):
        sign, exp = _broadcast_back(g, self.kept_shape, self.in_shape)
        return (self.gradient(sign, exp, g.fmt.gamma),)


class Mean(Function):
    def forward(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        self.axes = normalize_axis_tuple(range(x.ndim) if axis is None else axis, x.ndim)
        self.in_shape = x.shape
        self.kept_shape = tuple(1 if i in self.axes else n for i, n in enumerate(x.shape))
        self.count = math.prod(x.shape[i] for i in self.axes)
        if self.count == 0:
            raise ValueError(f"mean over axes {self.axes} of shape {x.shape}: no elements")
        sign, exp = sum_axes(x.sign, x.exp, self.axes, x.fmt.tables, self.mode)
        exp = exp - count_exponent(self.count, x.fmt.gamma)
        if keepdims:
            sign, exp = sign.reshape(self.kept_shape), exp.reshape(self.kept_shape)
        return quantize(sign, exp, x.fmt)

    def backward(self, g: Tensor):
        sign, exp = _broadcast_back(g, self.kept_shape, self.in_shape)
        exp = exp.astype(np.int64) - count_exponent(self.count, g.fmt.gamma)
        return (self.gradient(sign, exp, g.fmt.gamma),)


def sum(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 (the op's name)
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    return Mean.apply(x, axis=axis, keepdims=keepdims)

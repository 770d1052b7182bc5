"""max_pool2d and avg_pool2d over (N, C, H, W), no padding; stride defaults to the kernel size.

max picks a value (exact) by comparing signs and exponents, no decoding.
avg is a window sum in the precision's accumulation mode minus the exponent
of the window size (one rounding).  Both backward passes hand each window's
gradient to its input positions, offset by offset: within one offset the
windows hit distinct positions, so each offset is one vectorized ⊕ into the
input gradient.  With stride >= kernel (no overlap) every input position
gets one gradient, which is simply copied; overlapping windows add with ⊕,
the classic LNS sum.
"""
from __future__ import annotations

import numpy as np

from lnsnet import kernels
from lnsnet.ops.reduce import count_exponent
from lnsnet.ops.window import output_size, pair, windows
from lnsnet.tables import tables_for
from lnsnet.tensor import Function, Tensor, quantize


class _Pool(Function):
    """Window geometry and the offset-by-offset scatter of window gradients."""

    def window_rows(self, x: Tensor, kernel_size, stride):
        """(N, C, Ho, Wo, kh*kw) copies of x's windows, sign and exponent."""
        self.kernel = pair(kernel_size, "kernel_size")
        self.stride = pair(stride if stride is not None else kernel_size, "stride")
        if min(self.kernel) < 1 or min(self.stride) < 1:
            raise ValueError(f"pool: kernel {self.kernel} and stride {self.stride} must be >= 1")
        if x.ndim != 4 or x.shape[2] < self.kernel[0] or x.shape[3] < self.kernel[1]:
            raise ValueError(f"pool: input of shape {x.shape} must be (N, C, H, W) "
                             f"with H, W at least the kernel {self.kernel}")
        self.x_shape = x.shape
        self.out_hw = tuple(output_size(x.shape[2 + i], self.kernel[i], self.stride[i], 0) for i in (0, 1))
        size = self.kernel[0] * self.kernel[1]

        def rows(array):
            return windows(array, self.kernel, self.stride).reshape(x.shape[:2] + self.out_hw + (size,))

        return rows(x.sign), rows(x.exp)

    def scatter(self, parts, gamma: int):
        """Sum the window gradients parts(offset) -> (sign, exp) of shape (N, C, Ho, Wo) into x's shape."""
        acc_sign = np.zeros(self.x_shape, np.int8)
        acc_exp = np.zeros(self.x_shape, np.int64)
        (kh, kw), (sh, sw), (ho, wo) = self.kernel, self.stride, self.out_hw
        tables = tables_for(gamma)
        overlapping = sh < kh or sw < kw
        for offset in range(kh * kw):
            u, v = divmod(offset, kw)
            spots = (slice(None), slice(None), slice(u, u + (ho - 1) * sh + 1, sh),
                     slice(v, v + (wo - 1) * sw + 1, sw))
            if overlapping:
                acc_sign[spots], acc_exp[spots] = kernels.add(acc_sign[spots], acc_exp[spots], *parts(offset), tables)
            else:  # each spot is written once: the ⊕ with zero would only copy
                acc_sign[spots], acc_exp[spots] = parts(offset)
        return self.gradient(acc_sign, acc_exp, gamma)


class MaxPool2d(_Pool):
    def forward(self, x: Tensor, kernel_size, stride=None) -> Tensor:
        sign, exp = self.window_rows(x, kernel_size, stride)
        self.winner = kernels.argmax(sign, exp, axis=-1)[..., None]
        return quantize(np.take_along_axis(sign, self.winner, -1)[..., 0],
                        np.take_along_axis(exp, self.winner, -1)[..., 0], x.fmt)

    def backward(self, g: Tensor):
        won = self.winner[..., 0]

        def parts(offset):
            hit = won == offset
            return np.where(hit, g.sign, 0), np.where(hit, g.exp, 0)

        return (self.scatter(parts, g.fmt.gamma),)


class AvgPool2d(_Pool):
    def forward(self, x: Tensor, kernel_size, stride=None) -> Tensor:
        sign, exp = self.window_rows(x, kernel_size, stride)
        sign, exp = kernels.lns_sum(sign, exp, x.fmt.tables, axis=-1, mode=self.mode)
        size = self.kernel[0] * self.kernel[1]
        return quantize(sign, exp - count_exponent(size, x.fmt.gamma), x.fmt)

    def backward(self, g: Tensor):
        gamma = g.fmt.gamma
        share = (g.sign, g.exp.astype(np.int64) - count_exponent(self.kernel[0] * self.kernel[1], gamma))
        return (self.scatter(lambda offset: share, gamma),)


def max_pool2d(x: Tensor, kernel_size, stride=None) -> Tensor:
    return MaxPool2d.apply(x, kernel_size=kernel_size, stride=stride)


def avg_pool2d(x: Tensor, kernel_size, stride=None) -> Tensor:
    return AvgPool2d.apply(x, kernel_size=kernel_size, stride=stride)

"""conv2d (cross-correlation, as in deep-learning libraries) with stride and zero padding.

Forward: im2col turns every window into a row, and one matmul kernel call
multiplies the rows by the weights (bias included as one more term, see
ops/matmul.py): each output is one reduction, rounded once.
Backward: the weight and bias gradients are the rows' products with the
output gradient (again one matmul; the rows are unfolded again from the
input rather than kept).  The input gradient is the transposed
convolution, done the same way rather than by scattering window gradients
back (which would need an LNS sum per overlap): the output gradient is
dilated by the stride, padded by k-1 on each side, and correlated with the
flipped weights, so every input gradient is again a single reduction.
"""
from __future__ import annotations

import numpy as np

from lnsnet import kernels
from lnsnet.ops.matmul import Affine
from lnsnet.ops.window import im2col, output_size, pair
from lnsnet.tables import tables_for
from lnsnet.tensor import Tensor, quantize, working_gamma

# Window entries the input gradient unfolds at once (about 1.3 MB).
WINDOW_BUDGET = 1 << 18


def _rows_to_nchw(rows: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """(n*h*w, c) -> (n, c, h, w)."""
    return rows.reshape(n, h, w, rows.shape[1]).transpose(0, 3, 1, 2)


class Conv2d(Affine):
    def forward(self, x: Tensor, w: Tensor, b: Tensor | None = None, stride=1, padding=0) -> Tensor:
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        if w.ndim != 4 or x.ndim != 4 or x.shape[1] != w.shape[1]:
            raise ValueError(f"conv2d: input of shape {x.shape} does not match weight of shape {w.shape} "
                             f"(expected (N, {w.shape[1] if w.ndim == 4 else 'C'}, H, W))")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"conv2d: bias of shape {b.shape} does not match weight of shape {w.shape}")
        if min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"conv2d: stride {self.stride} must be >= 1 and padding {self.padding} >= 0")
        kernel = w.shape[2:]
        ho, wo = (output_size(x.shape[2 + i], kernel[i], self.stride[i], self.padding[i]) for i in (0, 1))
        if ho < 1 or wo < 1:
            raise ValueError(f"conv2d: input of shape {x.shape} is smaller than the kernel of weight "
                             f"shape {w.shape} with padding {self.padding}")
        self.x = x
        sign, exp = self.affine_forward(w, b)
        n = x.shape[0]
        return quantize(_rows_to_nchw(sign, n, ho, wo), _rows_to_nchw(exp, n, ho, wo), x.fmt)

    def rows(self, ones: int) -> tuple[np.ndarray, np.ndarray]:
        kernel = self.w.shape[2:]
        return (im2col(self.x.sign, kernel, self.stride, self.padding, ones, fill=1),
                im2col(self.x.exp, kernel, self.stride, self.padding, ones, fill=0))

    def backward(self, g: Tensor):
        gamma = working_gamma(g, self.w)
        g_exp = g.exp_at(gamma)
        gx = self.input_gradient(g.sign, g_exp, gamma) if self.needs_grad[0] else None
        out = self.w.shape[0]
        # (out, N*Ho*Wo), the windows' order: one copy, which the kernel reads as it is.
        g_cols = (g.sign.transpose(1, 0, 2, 3).reshape(out, -1), g_exp.transpose(1, 0, 2, 3).reshape(out, -1))
        return self.gradients(gx, *self.weight_gradients(*g_cols, gamma))

    def input_gradient(self, g_sign: np.ndarray, g_exp: np.ndarray, gamma: int) -> Tensor:
        """The transposed convolution of the output gradient (see the module docstring)."""
        n, c, h, w = self.x.shape
        out, _, kh, kw = self.w.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        hp, wp = h + 2 * ph, w + 2 * pw
        ho, wo = g_sign.shape[2:]
        # The dilated gradient sits k-1 in from the top-left of a grid whose
        # stride-1 windows land on every padded input position.
        grid_shape = (n, out, hp + kh - 1, wp + kw - 1)
        spots = (slice(None), slice(None), slice(kh - 1, kh + (ho - 1) * sh, sh),
                 slice(kw - 1, kw + (wo - 1) * sw, sw))
        grid_sign = np.zeros(grid_shape, np.int8)
        grid_exp = np.zeros(grid_shape, g_exp.dtype)
        grid_sign[spots], grid_exp[spots] = g_sign, g_exp
        flipped = (slice(None), slice(None), slice(None, None, -1), slice(None, None, -1))
        w_sign = self.w.sign[flipped].transpose(0, 2, 3, 1).reshape(out * kh * kw, c)
        w_exp = self.w.exp_at(gamma)[flipped].transpose(0, 2, 3, 1).reshape(out * kh * kw, c)
        # The windows of a few images at a time: each row is its own
        # reduction, so the blocks change nothing but the peak memory (the
        # whole batch's windows would be 9 bytes x n*hp*wp x out*kh*kw).
        images_per_block = max(1, WINDOW_BUDGET // (hp * wp * out * kh * kw))
        blocks = [kernels.matmul(im2col(grid_sign[i:i + images_per_block], (kh, kw), (1, 1), (0, 0)),
                                 im2col(grid_exp[i:i + images_per_block], (kh, kw), (1, 1), (0, 0)),
                                 w_sign, w_exp, tables_for(gamma), self.mode)
                  for i in range(0, n, images_per_block)]
        sign = np.concatenate([s for s, _ in blocks])
        exp = np.concatenate([x for _, x in blocks])
        inside = (slice(None), slice(None), slice(ph, ph + h), slice(pw, pw + w))
        return self.gradient(_rows_to_nchw(sign, n, hp, wp)[inside], _rows_to_nchw(exp, n, hp, wp)[inside], gamma)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
    """x (N, C, H, W) correlated with weight (O, C, kh, kw), plus bias (O,)."""
    if bias is None:
        return Conv2d.apply(x, weight, stride=stride, padding=padding)
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)

"""matmul (2-D and batched, NumPy's rules) and linear (x @ w.T + b).

Each result element is one reduction by the matmul kernel, rounded once, in
the precision's accumulation mode.  linear carries its bias as one more term
of every dot product (a column of ones appended to x, the bias appended to
w), so the bias is summed in the same accumulator instead of being ⊕-added
after a rounding; its gradient falls out of the weight-gradient matmul the
same way.
"""
from __future__ import annotations

import numpy as np

from lnsnet import kernels
from lnsnet.format import rescale
from lnsnet.ops.reduce import reduce_to_shape
from lnsnet.tables import tables_for
from lnsnet.tensor import Function, Tensor, quantize, working_gamma


def _swap(array: np.ndarray) -> np.ndarray:
    return np.swapaxes(array, -1, -2)


class MatMul(Function):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match (inner sizes differ)")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch axes of {a.shape} and {b.shape} do not broadcast") from None
        self.a, self.b = a, b
        return quantize(*kernels.matmul(a.sign, a.exp, b.sign, b.exp, a.fmt.tables, self.mode), a.fmt)

    def backward(self, g: Tensor):
        a, b = self.a, self.b
        gamma = working_gamma(g, a)
        tables = tables_for(gamma)
        ge = g.exp_at(gamma)
        ga = gb = None
        if self.needs_grad[0]:  # g @ b.T, summed over b's broadcast batch axes
            sign, exp = kernels.matmul(g.sign, ge, _swap(b.sign), _swap(b.exp_at(gamma)), tables, self.mode)
            ga = self.gradient(*reduce_to_shape(sign, exp, a.shape, tables, self.mode), gamma)
        if self.needs_grad[1]:  # a.T @ g
            sign, exp = kernels.matmul(_swap(a.sign), _swap(a.exp_at(gamma)), g.sign, ge, tables, self.mode)
            gb = self.gradient(*reduce_to_shape(sign, exp, b.shape, tables, self.mode), gamma)
        return ga, gb


def weight_matrix(w: Tensor, b: Tensor | None):
    """w (out, k) and bias (out,) as the right operand (k [+1], out) of x @ w.T + b."""
    sign, exp = w.sign.reshape(w.shape[0], -1).T, w.exp.reshape(w.shape[0], -1).T
    if b is None:
        return sign, exp
    return np.vstack([sign, b.sign[None, :]]), np.vstack([exp, b.exp[None, :]])


class Affine(Function):
    """rows (R, k) @ w.reshape(out, k).T + b -> (R, out): shared by linear and conv2d.

    The subclass turns its input into rows (linear: as is; conv2d: im2col),
    with a last column of ones (sign 1, exponent 0) when there is a bias,
    and its input gradient back; this class does the products and the
    gradients of w and b.  The rows are made again for the weight gradient
    rather than kept from the forward pass: the subclass keeps its input,
    which the graph holds anyway, and LeNet's conv1 rows are 6 MiB.
    """

    def rows(self, ones: int) -> tuple[np.ndarray, np.ndarray]:
        """The input as (R, k + ones) sign and exponent rows, the last `ones` columns ones."""
        raise NotImplementedError

    def affine_forward(self, w: Tensor, b: Tensor | None):
        self.w, self.has_bias = w, b is not None
        return kernels.matmul(*self.rows(int(self.has_bias)), *weight_matrix(w, b), w.fmt.tables, self.mode)

    def weight_gradients(self, g_sign, g_exp, gamma: int):
        """(gradient of w or None, gradient of b or None) from the output gradient at gamma,
        laid out (out, R): the left operand of its product with the rows."""
        want_w = self.needs_grad[1]
        want_b = self.has_bias and self.needs_grad[2]
        if not (want_w or want_b):
            return None, None
        w = self.w
        rows_sign, rows_exp = self.rows(int(self.has_bias))
        sign, exp = kernels.matmul(g_sign, g_exp, rows_sign, rescale(rows_exp, w.fmt.gamma, gamma),
                                   tables_for(gamma), self.mode)
        k = w.size // w.shape[0]
        gw = self.gradient(sign[:, :k].reshape(w.shape), exp[:, :k].reshape(w.shape), gamma) if want_w else None
        gb = self.gradient(sign[:, k], exp[:, k], gamma) if want_b else None
        return gw, gb

    def gradients(self, gx, gw, gb):
        """The backward result: one entry per input (the bias only when there is one)."""
        return (gx, gw, gb) if self.has_bias else (gx, gw)


class Linear(Affine):
    def rows(self, ones: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.x.shape[-1]
        sign, exp = self.x.sign.reshape(-1, k), self.x.exp.reshape(-1, k)
        if not ones:
            return sign, exp
        rows = sign.shape[0]
        return (np.concatenate([sign, np.ones((rows, ones), sign.dtype)], axis=1),
                np.concatenate([exp, np.zeros((rows, ones), exp.dtype)], axis=1))

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
            raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape {w.shape} "
                             f"(expected {w.shape[1]} features in the last axis)")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias of shape {b.shape} does not match weight of shape {w.shape}")
        self.x = x
        sign, exp = self.affine_forward(w, b)
        out_shape = x.shape[:-1] + (w.shape[0],)
        return quantize(sign.reshape(out_shape), exp.reshape(out_shape), x.fmt)

    def backward(self, g: Tensor):
        w = self.w
        gamma = working_gamma(g, w)
        g_sign, g_exp = g.sign.reshape(-1, w.shape[0]), g.exp_at(gamma).reshape(-1, w.shape[0])
        gx = None
        if self.needs_grad[0]:  # g @ w
            sign, exp = kernels.matmul(g_sign, g_exp, w.sign, w.exp_at(gamma), tables_for(gamma), self.mode)
            gx = self.gradient(sign.reshape(self.x.shape), exp.reshape(self.x.shape), gamma)
        return self.gradients(gx, *self.weight_gradients(g_sign.T, g_exp.T, gamma))


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b; a 1-D operand is a row (left) or a column (right) vector, as in NumPy."""
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2] if b.ndim >= 2 else None
    if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != inner_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match (inner sizes differ)")
    if a.ndim == 1 and b.ndim == 1:
        return MatMul.apply(a.reshape(1, -1), b.reshape(-1, 1)).reshape(())
    if a.ndim == 1:
        out = MatMul.apply(a.reshape(1, -1), b)
        return out.reshape(out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        return MatMul.apply(a, b.reshape(-1, 1)).reshape(a.shape[:-1])
    return MatMul.apply(a, b)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, weight of shape (out, in)."""
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)

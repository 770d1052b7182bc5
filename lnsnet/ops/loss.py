"""Softmax cross-entropy, fused and integer-only, averaged over the batch.

The work is the kernel kernels.softmax_cross_entropy (read its docstring for
the steps).  It runs at an inner gamma finer than the formats involved:
at least 2**10 and 16 times the finer of the logits' and the backward gamma
(up to 2**16), so that the softmax's own roundings (the exp, the sums) stay
far below one step of the format and the gradient leaving the loss carries
essentially only its final rounding.  The tables that needs are a few
hundred kB, built once, and the loss is N x K work, negligible next to a
layer.  The mean divides by N by subtracting the exponent of N.
"""
from __future__ import annotations

import numpy as np

from lnsnet import kernels
from lnsnet.format import LIMIT_OCTAVES, MAX_FRAC_BITS, rescale
from lnsnet.kernels.softmax import LOSS_FRAC
from lnsnet.ops.reduce import count_exponent
from lnsnet.tables import tables_for
from lnsnet.tensor import Function, Tensor, quantize

MIN_INNER_GAMMA = 1 << 10
INNER_REFINEMENT = 16


def inner_gamma(*gammas: int) -> int:
    return min(max(MIN_INNER_GAMMA, INNER_REFINEMENT * max(gammas)), 1 << MAX_FRAC_BITS)


def _check_labels(labels, logits_shape: tuple[int, ...]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    if labels.shape != logits_shape[:1]:
        raise ValueError(f"cross_entropy: labels of shape {labels.shape} do not match "
                         f"logits of shape {logits_shape} (expected ({logits_shape[0]},))")
    classes = logits_shape[1]
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        shown = sorted({int(v) for v in labels[bad]})[:10]
        raise ValueError(f"cross_entropy: {int(bad.sum())} label(s) outside 0..{classes - 1} "
                         f"for logits of shape {logits_shape}: {shown}")
    return labels.astype(np.int64)


class CrossEntropy(Function):
    def forward(self, logits: Tensor, labels) -> Tensor:
        if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
            raise ValueError(f"cross_entropy: logits must be (N, classes) with N, classes >= 1, "
                             f"got shape {logits.shape}")
        labels = _check_labels(labels, logits.shape)
        gamma = inner_gamma(logits.fmt.gamma, self.precision.backward.gamma)
        inner = tables_for(gamma)
        loss, grad_sign, grad_exp = kernels.softmax_cross_entropy(
            logits.sign, logits.exp, labels, logits.fmt.tables, inner, LIMIT_OCTAVES * gamma, self.mode)
        batch_exp = count_exponent(logits.shape[0], gamma)
        self.gamma = gamma
        self.grad_sign = grad_sign
        self.grad_exp = np.where(grad_sign != 0, grad_exp - batch_exp, 0)
        sign, exp = kernels.from_fixed(loss.sum(), -LOSS_FRAC, inner)
        return quantize(sign, exp - batch_exp, logits.fmt, src_gamma=gamma)

    def backward(self, g: Tensor):
        gamma = max(self.gamma, g.fmt.gamma)
        sign, exp = kernels.mul(self.grad_sign, rescale(self.grad_exp, self.gamma, gamma),
                                g.sign, g.exp_at(gamma))
        return (self.gradient(sign, exp, gamma),)


def cross_entropy(logits: Tensor, labels) -> Tensor:
    """Mean over the batch of -log softmax(logits)[label]; labels an integer array (N,)."""
    return CrossEntropy.apply(logits, labels)

"""Softmax cross-entropy from integers, NumPy reference (DESIGN.md sections 2 and 3).

For each row v of logits and its label y:

1. v to fixed point with LOSS_FRAC fraction bits (POW2 table), and
   d = v - max(v) <= 0 in integers, so that every e**d is at most 1;
2. e_j = e**d_j as LNS at the inner gamma (exp_of_fixed: one integer
   multiply by round(log2(e) * 2**30), a shift and a rounding);
3. S = sum_j e_j, and S' = the same sum without the label's term, each one
   reduction in the accumulation mode;
4. the gradient of the loss with respect to the logits, softmax - onehot:
   e_j / S off the label, and -S' / S at the label.  Computing the label's
   entry as -S'/S rather than e_y/S - 1 keeps it accurate when the model is
   confident (e_y/S close to 1 would cancel);
5. the loss ln S - d_y in fixed point: ln S = (exponent of S / gamma) * ln 2,
   one integer multiply by round(ln(2) * 2**30) and a shift.

S >= 1 (its largest term is e**0 = 1), so ln S >= 0 and the loss is >= 0.
"""
from __future__ import annotations

import numpy as np

from lnsnet.kernels.accumulate import reduce_last
from lnsnet.kernels.fixed import shift_round, to_fixed
from lnsnet.kernels.transcend import CONST_BITS, EXP_FRAC, EXP_INPUT_CEIL, LN2, exp_of_fixed
from lnsnet.tables import Tables

# The logits' fixed point matches exp_of_fixed's own input precision.
LOSS_FRAC = EXP_FRAC


def softmax_cross_entropy(sign, exp, labels, tables: Tables, inner: Tables, limit: int,
                          mode: str = "linear"):
    """Per-row loss and gradient of softmax cross-entropy.

    sign, exp: logits (N, K) in the gamma of `tables`; labels (N,) in 0..K-1.
    inner: the tables of the gamma the softmax is computed at; limit: the
    largest exponent magnitude at that gamma (smaller e**d flush to zero).
    Returns loss (N,) int64 with LOSS_FRAC fraction bits, and softmax - onehot
    as sign (N, K) int8 and exponent (N, K) int64 at the inner gamma.
    """
    v = to_fixed(sign, exp, LOSS_FRAC, tables)
    # A logit more than 2**11 below its row's largest has e**d = 0 at any
    # gamma; clamping d there also bounds a sample's loss (~2048 nats), so
    # the loss sums below cannot overflow.
    d = np.maximum(v - v.max(axis=-1, keepdims=True), -EXP_INPUT_CEIL)
    e_sign, e_exp = exp_of_fixed(d, LOSS_FRAC, inner.gamma, limit)
    total_sign, total_exp = reduce_last(e_sign, e_exp, inner, mode)
    is_label = np.arange(v.shape[-1]) == np.asarray(labels)[:, None]
    rest_sign, rest_exp = reduce_last(np.where(is_label, 0, e_sign), e_exp, inner, mode)

    grad_sign = np.where(is_label, -rest_sign[:, None], e_sign).astype(np.int8)
    grad_exp = np.where(is_label, rest_exp[:, None], e_exp) - total_exp[:, None]
    grad_exp = np.where(grad_sign != 0, grad_exp, 0)

    ln_scaled = total_exp * LN2  # ln S with CONST_BITS + f fraction bits
    ln_total = shift_round(ln_scaled, LOSS_FRAC - CONST_BITS - inner.frac_bits)
    d_label = np.take_along_axis(d, np.asarray(labels)[:, None], axis=-1)[:, 0]
    return ln_total - d_label, grad_sign, grad_exp

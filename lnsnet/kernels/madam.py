"""Madam's per-weight integer arithmetic (lnsnet.optim.madam), NumPy reference.

A Madam step is two elementwise passes with a requantization of v between
them (which needs v's largest exponent, so it cannot be fused in):

- madam_moment: beta*v ⊕ (1-beta)*g**2, before v is requantized;
- madam_exponents: the new master exponents from g, the weights and the
  requantized v: g* = min(g / sqrt(v_hat), g_bound) in the log domain, then
  sign(w)*g* (plus the decay) in fixed point times the step factor, shifted
  and rounded, subtracted from x and capped at x_max.

Exponents are in the state format's gamma (the caller rescales g); the
weights' exponents stay in their own gamma, which is what the step factor
is built for.
"""
from __future__ import annotations

import numpy as np

from lnsnet.kernels.elementwise import add, sqrt, square
from lnsnet.kernels.fixed import to_fixed
from lnsnet.tables import Tables


def same_shapes(name: str, *arrays) -> None:
    """Raise ValueError unless every array has the first one's shape (no broadcasting here)."""
    shapes = [np.shape(a) for a in arrays]
    if any(shape != shapes[0] for shape in shapes):
        raise ValueError(f"{name}: operands of shapes {shapes}; they must all be the same")


def madam_moment(g_sign, g_exp, v_sign, v_exp, *, beta: int, one_minus_beta: int, tables: Tables):
    """(sign, int64 exponent) of beta*v ⊕ (1-beta)*g**2; beta and one_minus_beta are exponents."""
    same_shapes("madam_moment", g_sign, g_exp, v_sign, v_exp)
    sq_sign, sq_exp = square(g_sign, g_exp)
    return add(v_sign, np.asarray(v_exp, dtype=np.int64) + beta, sq_sign, sq_exp + one_minus_beta, tables)


def madam_exponents(g_sign, g_exp, w_sign, w_exp, v_sign, v_exp, *, correction: int, bound: int,
                    decay: int, factor: int, shift: int, x_max: int, frac: int, tables: Tables,
                    offset=None) -> np.ndarray:
    """x - round(factor * drive / 2**shift), capped at x_max, as int64.

    correction: the exponent of 1 - beta**t; bound: that of g_bound;
    drive = sign(w)*g* in fixed point with frac fraction bits, plus decay
    where w is nonzero.  The rounding is to nearest (half away from zero),
    or stochastic with offset (int64, each in [0, 2**shift)) added to the
    magnitude below the cut.
    """
    same_shapes("madam_exponents", g_sign, g_exp, w_sign, w_exp, v_sign, v_exp,
                *(() if offset is None else (offset,)))
    _, root = sqrt(v_sign, np.asarray(v_exp, dtype=np.int64) - correction)
    ratio = np.minimum(np.asarray(g_exp, dtype=np.int64) - root, bound)
    w_sign = np.asarray(w_sign, dtype=np.int8)
    drive = to_fixed(np.asarray(g_sign, dtype=np.int8) * w_sign, ratio, frac, tables)
    value = (drive + np.where(w_sign != 0, decay, 0)) * factor
    below = (1 << (shift - 1)) if offset is None else offset
    step = np.sign(value) * ((np.abs(value) + below) >> shift)
    return np.minimum(np.asarray(w_exp, dtype=np.int64) - step, x_max)

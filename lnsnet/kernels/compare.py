"""Ordering of LNS values, NumPy reference: compare, maximum, max along an axis.

LNS values order by sign first, then by exponent (reversed for negatives);
no decoding is needed.
"""
from __future__ import annotations

import numpy as np

from lnsnet.kernels.elementwise import broadcast


def compare(sa, xa, sb, xb) -> np.ndarray:
    """-1, 0 or +1 as a <, ==, > b (int8)."""
    sa, xa, sb, xb = broadcast(sa, xa, sb, xb)
    sa = sa.astype(np.int8)
    sb = sb.astype(np.int8)
    by_exp = sa * np.sign(xa.astype(np.int64) - xb.astype(np.int64))
    return np.where(sa != sb, np.sign(sa - sb), np.where(sa == 0, 0, by_exp)).astype(np.int8)


def maximum(sa, xa, sb, xb):
    """Elementwise larger of a and b."""
    a_wins = compare(sa, xa, sb, xb) >= 0
    sa, xa, sb, xb = broadcast(sa, xa, sb, xb)
    return (np.where(a_wins, sa, sb).astype(np.int8),
            np.where(a_wins, xa, xb).astype(np.int64))


def order_key(sign, exp) -> np.ndarray:
    """An int64 key that sorts like the values: s * (x - min x + 1), x the nonzero exponents."""
    sign, exp = np.asarray(sign), np.asarray(exp)
    nonzero = sign != 0
    low = int(exp[nonzero].min()) if nonzero.any() else 0
    # One int64 array, worked in place: a max-pool's windows are many.
    key = exp.astype(np.int64)
    key -= low - 1
    key *= sign if sign.dtype.kind == "i" else sign.astype(np.int64)
    return key


def argmax(sign, exp, axis=-1) -> np.ndarray:
    """Index of the largest value along axis (the first one on ties)."""
    return np.argmax(order_key(sign, exp), axis=axis)


def max_along(sign, exp, axis=-1):
    """(sign, exp, index) of the largest value along axis."""
    idx = np.expand_dims(argmax(sign, exp, axis), axis)
    s = np.take_along_axis(np.asarray(sign), idx, axis).squeeze(axis)
    x = np.take_along_axis(np.asarray(exp, dtype=np.int64), idx, axis).squeeze(axis)
    return s.astype(np.int8), x, idx.squeeze(axis)

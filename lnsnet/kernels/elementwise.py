"""Elementwise LNS arithmetic, NumPy reference: multiply, divide, square, sqrt, ⊕ and ⊖.

Inputs are (sign, exponent) integer arrays that broadcast; results are a
sign array (int8) and an exponent array (int64) that is not yet quantized to
a B-bit format (the tensor layer requantizes).  The C twin of `add` is
native/elementwise.c.
"""
from __future__ import annotations

import numpy as np

from lnsnet.tables import Tables


def broadcast(*arrays):
    """Broadcast operands, or raise ValueError naming every shape."""
    try:
        return np.broadcast_arrays(*arrays)
    except ValueError:
        shapes = " and ".join(str(np.shape(a)) for a in arrays)
        raise ValueError(f"shapes {shapes} do not broadcast") from None


def mul(sa, xa, sb, xb):
    """(sa*sb, xa+xb): exact."""
    sa, xa, sb, xb = broadcast(sa, xa, sb, xb)
    sign = (sa.astype(np.int8) * sb.astype(np.int8)).astype(np.int8)
    # both as int64: int64 with uint64 would promote to float64
    exp = np.where(sign != 0, xa.astype(np.int64) + xb.astype(np.int64), 0)
    return sign, exp


def div(sa, xa, sb, xb):
    """(sa*sb, xa-xb): exact.  Dividing by an LNS zero is an error."""
    sa, xa, sb, xb = broadcast(sa, xa, sb, xb)
    zero = sb == 0
    if zero.any():
        first = tuple(int(i) for i in np.argwhere(zero)[0])
        raise ZeroDivisionError(
            f"LNS divide: {int(zero.sum())} zero divisor(s); the first at index {first}")
    sign = (sa.astype(np.int8) * sb.astype(np.int8)).astype(np.int8)
    exp = np.where(sign != 0, xa.astype(np.int64) - xb.astype(np.int64), 0)
    return sign, exp


def square(s, x):
    """x*2; the sign becomes |s|."""
    s = np.asarray(s)
    return np.abs(s).astype(np.int8), np.where(s != 0, np.asarray(x, dtype=np.int64) * 2, 0)


def check_nonnegative(s) -> None:
    """Raise ValueError, saying where, if any sign is negative (a square root's operand)."""
    if (s < 0).any():
        first = tuple(int(i) for i in np.argwhere(s < 0)[0])
        raise ValueError(f"LNS sqrt: {int((s < 0).sum())} negative value(s); the first at index {first}")


def sqrt(s, x):
    """x halved, rounded to nearest (ties toward the larger magnitude)."""
    s = np.asarray(s)
    check_nonnegative(s)
    return s.astype(np.int8), np.where(s != 0, (np.asarray(x, dtype=np.int64) + 1) >> 1, 0)


def _table_at(table: np.ndarray, d: np.ndarray) -> np.ndarray:
    """table[d], and 0 past the essential zero."""
    inside = d < len(table)
    return np.where(inside, table[np.where(inside, d, 0)], 0)


def add(sa, xa, sb, xb, tables: Tables):
    """⊕, the Gaussian logarithm (DESIGN.md section 2).

    With d = |xa - xb| and xm the larger exponent: same signs give xm + SB[d],
    opposite signs xm + DB[d] with the sign of the larger operand, and d = 0
    with opposite signs gives exactly zero.
    """
    sa, xa, sb, xb = broadcast(sa, xa, sb, xb)
    sa = sa.astype(np.int8)
    sb = sb.astype(np.int8)
    xa = xa.astype(np.int64)
    xb = xb.astype(np.int64)
    a_larger = xa >= xb
    # |xa - xb| as uint64: exact for any two int64 exponents, where a signed
    # difference could wrap negative (the C twin computes d the same way).
    d = np.where(a_larger, xa - xb, xb - xa).astype(np.uint64)
    xm = np.where(a_larger, xa, xb)
    same = sa == sb
    corr = np.where(same, _table_at(tables.sb, d), _table_at(tables.db, d))
    sign = np.where(a_larger, sa, sb)
    exp = xm + corr
    cancel = ~same & (d == 0)
    sign = np.where(cancel, 0, sign)
    # An operand that is zero leaves the other unchanged.
    sign = np.where(sa == 0, sb, np.where(sb == 0, sa, sign)).astype(np.int8)
    exp = np.where(sa == 0, xb, np.where(sb == 0, xa, exp))
    exp = np.where(sign != 0, exp, 0)
    return sign, exp


def sub(sa, xa, sb, xb, tables: Tables):
    """⊖: a ⊕ (-b)."""
    return add(sa, xa, -np.asarray(sb, dtype=np.int8), xb, tables)

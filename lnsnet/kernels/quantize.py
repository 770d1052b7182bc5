"""Requantizing exponents into a B-bit window, NumPy reference.

This is the integer work of LNSFormat.requantize (lnsnet.format), which
checks its arguments and sets the parameters: clip far-out exponents so no
shift can wrap them, move them from the source gamma to the format's (an
exact left shift, or a right shift after adding half or a stochastic
offset), find the window's top t, saturate above it, and flush or saturate
below it.
"""
from __future__ import annotations

import numpy as np

# What every stored tensor holds (lnsnet.format re-exports these).
SIGN_DTYPE = np.int8
EXP_DTYPE = np.int32


def operands(sign, exp, offset):
    """int8 signs, int32 or int64 exponents (other types become int64) and an int64 offset
    or None, all of one shape."""
    sign, exp = np.asarray(sign, dtype=SIGN_DTYPE), np.asarray(exp)
    if exp.dtype not in (np.int32, np.int64):
        exp = exp.astype(np.int64)
    if offset is not None:
        offset = np.asarray(offset, dtype=np.int64)
    for name, array in (("sign", sign), ("offset", offset)):
        if array is not None and array.shape != exp.shape:
            raise ValueError(f"requantize: {name} shape {array.shape} != exponent shape {exp.shape}")
    return sign, exp, offset


def requantize(sign, exp, *, far: int, shift: int, t: int | None, span: int, limit: int,
               flush: bool, offset=None):
    """(sign, exp, t) with exp in [t - span, t] (and in [-limit, limit]) or the sign 0.

    sign, exp and offset: see operands.  Exponents are first clipped to
    +-far.  shift > 0 divides by 2**shift: offset (each in [0, 2**shift))
    is added first, or 2**(shift-1) when it is None (nearest, ties up);
    shift < 0 multiplies by 2**-shift.  t None: the largest exponent with a
    nonzero sign (0 when there is none).  t is then clipped to
    [span - limit, limit].  Exponents below the window flush to zero when
    flush, else saturate to its bottom.
    """
    sign, exp, offset = operands(sign, exp, offset)
    exp = np.clip(exp.astype(np.int64), -far, far)
    if shift > 0:
        exp = (exp + ((1 << (shift - 1)) if offset is None else offset)) >> shift
    elif shift < 0:
        exp = exp << -shift
    nonzero = sign != 0
    if t is None:
        t = int(exp[nonzero].max()) if nonzero.any() else 0
    t = min(max(t, span - limit), limit)
    # A window wider than the engine's range (span > 2 * limit, e.g. 32 bits)
    # still ends at -limit: nothing below it is held.
    low = max(t - span, -limit)
    out = np.minimum(exp, t)
    if flush:
        sign = np.where(nonzero & (out < low), 0, sign).astype(SIGN_DTYPE)
    out = np.maximum(out, low)
    return sign, np.where(sign != 0, out, 0).astype(EXP_DTYPE), t

"""Conversions between LNS and wide fixed-point integers, NumPy reference.

to_fixed turns (s, x) into round(v * 2**frac) through the POW2 table;
from_fixed turns an integer n * 2**e0 back into (s, x), rounded to nearest in
the log domain: the leading-one position gives the octave, the LOG2 table
over the next f+1 bits and one comparison with BOUND give the fraction
(lnsnet/tables.py says why one comparison is enough).
"""
from __future__ import annotations

import numpy as np

from lnsnet.tables import MANT_BITS, POW2_BITS, Tables

# Fixed-point magnitudes are kept below 2**FIXED_CEIL_BITS so that sums of a
# few of them and products with 30-bit constants stay inside int64.
FIXED_CEIL_BITS = 62


def bit_length(v: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values, by binary search on shifts."""
    v = np.asarray(v, dtype=np.int64).copy()
    n = np.zeros(v.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        high = v >> step
        has = high != 0
        n += np.where(has, step, 0)
        v = np.where(has, high, v)
    return n + (v != 0)


def shift_round(v: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """v * 2**shift for non-negative v: exact left shifts, right shifts rounded half up."""
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    right = np.clip(-shift, 0, 63)
    left = np.clip(shift, 0, 62)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    down = np.where(right >= 63, 0, (v + half) >> right)
    return np.where(shift >= 0, v << left, down)


def to_fixed(sign, exp, frac: int, tables: Tables) -> np.ndarray:
    """round(s * 2**(x/gamma) * 2**frac) as int64, saturating at 2**FIXED_CEIL_BITS - 1."""
    # int8 as in the C twin: a float sign would turn sign * mag into a float
    # and round away the low bits of magnitudes above 2**53.
    sign = np.asarray(sign, dtype=np.int8)
    p = np.asarray(exp, dtype=np.int64)
    q = p >> tables.frac_bits
    r = p & (tables.gamma - 1)
    shift = q + frac - POW2_BITS
    ceiling = np.int64((1 << FIXED_CEIL_BITS) - 1)
    # POW2 < 2**(POW2_BITS+1): a left shift past this would overflow.
    too_big = shift > FIXED_CEIL_BITS - POW2_BITS - 1
    mag = np.where(too_big, ceiling, shift_round(tables.pow2[r], np.where(too_big, 0, shift)))
    return np.where(sign != 0, sign * mag, 0).astype(np.int64)


def from_fixed(value, e0, tables: Tables):
    """(sign, exponent) of value * 2**e0, rounded to nearest in the log domain.

    e0 may be an array broadcasting with value.  Zero gives sign 0.
    """
    value = np.asarray(value, dtype=np.int64)
    sign = np.sign(value).astype(np.int8)
    mag = np.abs(value)
    n = bit_length(mag) - 1
    up = np.clip(MANT_BITS - n, 0, 63)
    down = np.clip(n - MANT_BITS, 0, 63)
    mant = (mag << up) >> down
    f = tables.frac_bits
    bucket = (mant >> (MANT_BITS - f - 1)) & ((1 << (f + 1)) - 1)
    k = tables.log2[bucket].astype(np.int64)
    k += (k < tables.gamma) & (mant >= tables.bound[np.minimum(k, tables.gamma - 1)])
    exp = (n + np.asarray(e0, dtype=np.int64)) * tables.gamma + k
    return sign, np.where(sign != 0, exp, 0)

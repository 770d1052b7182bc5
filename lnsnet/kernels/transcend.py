"""exp and log from integers, NumPy reference (DESIGN.md section 2).

exp(v) = 2**(v * log2 e): convert v to fixed point, multiply by the integer
LOG2E = round(log2(e) * 2**CONST_BITS), shift and round; the result is the new
exponent directly.  log(v) = (x / gamma) * ln 2: multiply the exponent by
LN2 = round(ln(2) * 2**CONST_BITS) and convert that fixed-point number back
to LNS.  The two constants are the only floats, computed once at import.
"""
from __future__ import annotations

import math

import numpy as np

from lnsnet.kernels.fixed import from_fixed, shift_round, to_fixed
from lnsnet.tables import Tables

CONST_BITS = 30
LOG2E = round(math.log2(math.e) * 2 ** CONST_BITS)
LN2 = round(math.log(2.0) * 2 ** CONST_BITS)
# exp takes its input with EXP_FRAC fraction bits: the input's own rounding
# then moves the result by at most gamma * log2(e) * 2**-(EXP_FRAC+1) steps,
# 7e-4 steps at gamma = 2**10.
EXP_FRAC = 20
# |v| beyond 2**11 gives e**v far outside any exponent the engine holds, and
# keeps v_fix * LOG2E inside int64 (11 + 20 + 31 bits).
EXP_INPUT_CEIL = (1 << (11 + EXP_FRAC)) - 1


def exp_of_fixed(v_fix, frac: int, gamma: int, limit: int):
    """(sign, exponent) of e**(v_fix * 2**-frac); results below 2**(-limit/gamma) flush to zero."""
    v = np.clip(np.asarray(v_fix, dtype=np.int64), -EXP_INPUT_CEIL, EXP_INPUT_CEIL)
    if frac > EXP_FRAC:
        v = np.where(v >= 0, shift_round(v, EXP_FRAC - frac), -shift_round(-v, EXP_FRAC - frac))
        frac = EXP_FRAC
    f = gamma.bit_length() - 1
    prod = v * LOG2E
    shift = frac + CONST_BITS - f
    y = np.where(prod >= 0, shift_round(prod, -shift), -shift_round(-prod, -shift))
    sign = np.where(y < -limit, 0, 1).astype(np.int8)
    return sign, np.where(sign != 0, np.minimum(y, limit), 0)


def exp(sign, x, tables: Tables, limit: int):
    """(sign, exponent) of e**v for v = s * 2**(x/gamma)."""
    return exp_of_fixed(to_fixed(sign, x, EXP_FRAC, tables), EXP_FRAC, tables.gamma, limit)


def ln_fixed(x, tables: Tables):
    """ln(2**(x/gamma)) as an integer with CONST_BITS + f fraction bits."""
    return np.asarray(x, dtype=np.int64) * LN2


def log(sign, x, tables: Tables):
    """(sign, exponent) of ln(v) for v > 0."""
    sign = np.asarray(sign)
    if (sign <= 0).any():
        first = tuple(int(i) for i in np.argwhere(sign <= 0)[0])
        raise ValueError(
            f"LNS log: {int((sign <= 0).sum())} value(s) not positive; the first at index {first}")
    return from_fixed(ln_fixed(x, tables), -(CONST_BITS + tables.frac_bits), tables)

"""The read-only tables ("ROMs") of an LNS format, built once per gamma.

Float arithmetic is allowed here: it runs once, when a table is built, the
way ROM contents are computed before a chip is made (DESIGN.md section 3).

- SB[d] = round(gamma * log2(1 + 2**(-d/gamma)))   same-sign addition
- DB[d] = round(gamma * log2(1 - 2**(-d/gamma)))   opposite-sign addition, d >= 1
  Both stop at the essential zero; beyond the table the correction is 0.
  Ties round half away from zero.
- POW2[r] = round(2**(r/gamma) * 2**POW2_BITS)      log -> linear, r = 0..gamma-1
- MITCHELL[r] = (1 + r/gamma) * 2**POW2_BITS         Mitchell's approximation of POW2
- BOUND[k] = 2**((k + 0.5)/gamma) * 2**MANT_BITS     rounding boundaries, linear -> log
- LOG2[j]: how many BOUND entries lie at or below the mantissa bucket j, for the
  top f+1 fraction bits after the leading one.  With f+1 bits a bucket is at
  most 1/(2 gamma) wide, narrower than the gap between two boundaries
  (>= ln2/gamma), so one comparison with BOUND finishes the rounding.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

# POW2 precision: 2**-25 relative, 0.003 LNS steps at gamma = 2**16 and
# 5e-5 steps at gamma = 2**10, small against the half-step rounding.
POW2_BITS = 24
# The normalized mantissa of a linear accumulator, in [2**MANT_BITS, 2**(MANT_BITS+1)).
MANT_BITS = 61


def round_half_away(y: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (the contract's table rounding)."""
    return np.sign(y) * np.floor(np.abs(y) + 0.5)


class Tables(NamedTuple):
    gamma: int
    frac_bits: int
    sb: np.ndarray        # int32, length n
    db: np.ndarray        # int32, length n; db[0] is unused (d = 0 cancels exactly)
    pow2: np.ndarray      # int64, gamma entries
    mitchell: np.ndarray  # int64, gamma entries
    bound: np.ndarray     # int64, gamma entries
    log2: np.ndarray      # int32, 2**(f+1) entries

    @property
    def essential_zero(self) -> int:
        """The first d at which both SB and DB are 0 for good."""
        return len(self.sb)


def _gaussian_logs(gamma: int):
    # Beyond d_max both corrections are below half a step: 2**(-d/gamma) is
    # then smaller than 2**(0.5/gamma) - 1 (and than 1 - 2**(-0.5/gamma)).
    d_max = int(np.ceil(-gamma * np.log2(1.0 - 2.0 ** (-0.5 / gamma)))) + 2
    d = np.arange(d_max + 1, dtype=np.float64)
    u = np.exp2(-d / gamma)
    sb = round_half_away(gamma * np.log1p(u) / np.log(2.0))
    with np.errstate(divide="ignore"):
        db = round_half_away(gamma * np.log1p(-u) / np.log(2.0))
    db[0] = 0
    nonzero = np.flatnonzero((sb != 0) | (db != 0))
    n = int(nonzero[-1]) + 1
    return sb[:n].astype(np.int32), db[:n].astype(np.int32)


@lru_cache(maxsize=None)
def tables_for(gamma: int) -> Tables:
    f = gamma.bit_length() - 1
    sb, db = _gaussian_logs(gamma)
    r = np.arange(gamma, dtype=np.float64)
    pow2 = np.round(np.exp2(r / gamma) * 2.0 ** POW2_BITS).astype(np.int64)
    mitchell = (np.int64(1) << POW2_BITS) + (np.arange(gamma, dtype=np.int64) << (POW2_BITS - f))
    bound = np.round(np.exp2((r + 0.5) / gamma) * 2.0 ** MANT_BITS).astype(np.int64)
    buckets = (np.int64(1) << MANT_BITS) + (np.arange(2 ** (f + 1), dtype=np.int64) << (MANT_BITS - f - 1))
    log2 = np.searchsorted(bound, buckets, side="right").astype(np.int32)
    for arr in (sb, db, pow2, mitchell, bound, log2):
        arr.flags.writeable = False
    return Tables(gamma, f, sb, db, pow2, mitchell, bound, log2)

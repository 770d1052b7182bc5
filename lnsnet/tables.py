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

SB and DB of a fine gamma are long (about 17.5 gamma entries each: 9 MiB
for Madam's state format, gamma = 2**16), so they are held packed; the
NumPy reference reads them whole (Tables.sb, Tables.db, built on first
use), the C kernels packed.  Packed, a table is its first `dense` entries
as they are, then blocks of PACK_BLOCK entries: each block's first entry
and a word whose bit i says whether entry i differs from entry i-1.  Past
d = gamma both tables move by at most one step per entry (the slope of SB
is at most 1/2, that of DB at most 1 there), SB down and DB up, so an entry
is its block's first one minus (SB) or plus (DB) the bits up to i.
"""
from __future__ import annotations

from functools import cached_property, lru_cache

import numpy as np

# POW2 precision: 2**-25 relative, 0.003 LNS steps at gamma = 2**16 and
# 5e-5 steps at gamma = 2**10, small against the half-step rounding.
POW2_BITS = 24
# The normalized mantissa of a linear accumulator, in [2**MANT_BITS, 2**(MANT_BITS+1)).
MANT_BITS = 61


def round_half_away(y: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (the contract's table rounding)."""
    return np.sign(y) * np.floor(np.abs(y) + 0.5)


# Tables of up to this many entries are held whole; past it, packed from d = gamma on.
DENSE_MAX = 4096
PACK_BLOCK = 64


class PackedTable:
    """One of SB and DB, packed (see the module docstring); `step` is -1 for
    SB (falling) and +1 for DB (rising)."""

    def __init__(self, table: np.ndarray, dense: int, step: int, name: str):
        self.length, self.dense, self.step = len(table), min(dense, len(table)), step
        self.head = _read_only(table[:self.dense].astype(np.int32))
        rest = table[self.dense:].astype(np.int64)
        moves = np.diff(rest)
        if np.any((moves != 0) & (moves != step)):
            raise ValueError(f"{name}: past d = {self.dense} the table moves by more than one "
                             f"step of {step:+d} per entry, so it cannot be packed")
        blocks = -(-len(rest) // PACK_BLOCK)
        changed = np.zeros(blocks * PACK_BLOCK, dtype=bool)
        changed[1:len(rest)] = moves != 0
        changed[::PACK_BLOCK] = False  # bit 0: the block's first entry is stored whole
        self.base = _read_only(rest[::PACK_BLOCK].astype(np.int32))
        self.steps = _read_only(
            np.packbits(changed.reshape(blocks, PACK_BLOCK), axis=1, bitorder="little")
            .view("<u8").ravel().astype(np.uint64))

    def at(self, d: np.ndarray) -> np.ndarray:
        """Entries at d (any shape of non-negative integers), 0 from the length on:
        what the C kernels read, here for the tests that hold it to the table."""
        d = np.asarray(d, dtype=np.int64)
        out = np.zeros(d.shape, dtype=np.int64)
        in_head = d < self.dense
        out[in_head] = self.head[d[in_head]]
        packed = (d >= self.dense) & (d < self.length)
        e = d[packed] - self.dense
        block, bit = e // PACK_BLOCK, (e % PACK_BLOCK).astype(np.uint64)
        below = self.steps[block] & ((np.uint64(2) << bit) - np.uint64(1))
        moves = np.unpackbits(below.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1, dtype=np.int64)
        out[packed] = self.base[block] + self.step * moves
        return out

    @property
    def nbytes(self) -> int:
        return self.head.nbytes + self.base.nbytes + self.steps.nbytes


class Tables:
    """The ROMs of one gamma; build them with tables_for (cached)."""

    def __init__(self, gamma: int):
        f = gamma.bit_length() - 1
        if gamma != 1 << f or f < 0:
            raise ValueError(f"tables: gamma must be a power of two, got {gamma}")
        self.gamma, self.frac_bits = gamma, f
        sb, db = _gaussian_logs(gamma)
        # The first d at which both SB and DB are 0 for good.
        self.essential_zero = len(sb)
        dense = len(sb) if len(sb) <= DENSE_MAX else gamma
        self.sb_packed = PackedTable(sb, dense, -1, "SB")
        self.db_packed = PackedTable(db, dense, +1, "DB")
        r = np.arange(gamma, dtype=np.float64)
        self.pow2 = np.round(np.exp2(r / gamma) * 2.0 ** POW2_BITS).astype(np.int64)
        self.mitchell = (np.int64(1) << POW2_BITS) + (np.arange(gamma, dtype=np.int64) << (POW2_BITS - f))
        self.bound = np.round(np.exp2((r + 0.5) / gamma) * 2.0 ** MANT_BITS).astype(np.int64)
        buckets = (np.int64(1) << MANT_BITS) + (np.arange(2 ** (f + 1), dtype=np.int64) << (MANT_BITS - f - 1))
        self.log2 = np.searchsorted(self.bound, buckets, side="right").astype(np.int32)
        for arr in (self.pow2, self.mitchell, self.bound, self.log2):
            _read_only(arr)

    @cached_property
    def sb(self) -> np.ndarray:
        """SB whole (int32, essential_zero entries), built again on first use."""
        return _read_only(_gaussian_logs(self.gamma)[0])

    @cached_property
    def db(self) -> np.ndarray:
        """DB whole (int32, essential_zero entries); db[0] is unused (d = 0 cancels exactly)."""
        return _read_only(_gaussian_logs(self.gamma)[1])


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


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
    return Tables(gamma)

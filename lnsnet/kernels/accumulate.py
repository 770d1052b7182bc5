"""Reductions of LNS products, NumPy reference: sum along an axis and matmul.

Three accumulation modes (DESIGN.md section 2):

linear (default)  each product p = xa + xb is split into q = p >> f and
                  r = p & (gamma-1); its magnitude POW2[r] is placed in a
                  64-bit accumulator aligned to a base exponent P (an upper
                  bound of the products of this reduction) and summed exactly
                  in integers; from_fixed rounds the sum back to (s, x).
mitchell          the same with 2**(r/gamma) ~ 1 + r/gamma (MITCHELL table).
logadd            ⊕ of the products in index order: the classic LNS MAC.

Alignment: with qb = P >> f, a product contributes
    (TABLE[r] << L) >> (qb - q)        (truncated toward zero, then signed)
in units of 2**(qb - POW2_BITS - L).  L = 38 - bit_length(K) is the largest
left margin for which K terms below 2**(POW2_BITS + 1 + L) cannot overflow
int64; products within L octaves of P are therefore summed exactly, those
further down lose at most one unit each.

The base P: for sum, the largest exponent of the row; for matmul,
max_k xa[i, k] + max_k xb[k, j], which bounds every product of (i, j)
without a second pass over K.  The C twin is native/accumulate.c.
"""
from __future__ import annotations

import numpy as np

from lnsnet.kernels.elementwise import add
from lnsnet.kernels.fixed import from_fixed
from lnsnet.tables import POW2_BITS, Tables

MODES = ("linear", "logadd", "mitchell")
# K < 2**MAX_K_BITS keeps the left margin L at least 6 bits.
MAX_K_BITS = 32


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"accumulation mode {mode!r} is not one of {MODES}")
    return mode


def left_margin(k: int) -> int:
    """L for a reduction of k terms (see the module docstring)."""
    if k >= 1 << MAX_K_BITS:
        raise ValueError(f"reduction of {k} terms: at most 2**{MAX_K_BITS} - 1 are supported")
    return 63 - (POW2_BITS + 1) - int(k).bit_length()


def linear_sum(sign, exp, base, tables: Tables, mode: str = "linear"):
    """Sum products (sign, exp) of shape (..., K) along the last axis.

    base (shape (...)) bounds exp along that axis.  Returns (sign, exp) of shape (...).
    """
    table = tables.mitchell if mode == "mitchell" else tables.pow2
    sign = np.asarray(sign)
    p = np.asarray(exp, dtype=np.int64)
    k = p.shape[-1]
    margin = left_margin(k)
    f = tables.frac_bits
    qb = np.asarray(base, dtype=np.int64) >> f
    q = p >> f
    drop = np.clip(qb[..., None] - q, 0, 63)
    terms = (table[p & (tables.gamma - 1)] << margin) >> drop
    acc = np.where(sign != 0, sign * terms, 0).sum(axis=-1, dtype=np.int64)
    return from_fixed(acc, qb - POW2_BITS - margin, tables)


def logadd_sum(sign, exp, tables: Tables):
    """⊕ of (sign, exp) of shape (..., K) along the last axis, in index order."""
    sign = np.asarray(sign)
    exp = np.asarray(exp, dtype=np.int64)
    acc_s = np.zeros(sign.shape[:-1], dtype=np.int8)
    acc_x = np.zeros(sign.shape[:-1], dtype=np.int64)
    for i in range(sign.shape[-1]):
        acc_s, acc_x = add(acc_s, acc_x, sign[..., i], exp[..., i], tables)
    return acc_s, acc_x


def _row_base(sign, exp):
    """Largest exponent of the nonzero entries along the last axis (0 if none)."""
    low = np.iinfo(np.int64).min // 4
    return np.where(np.asarray(sign) != 0, exp, low).max(axis=-1, initial=low)


def reduce_last(sign, exp, tables: Tables, mode: str = "linear", base=None):
    """Sum along the last axis in the given mode."""
    check_mode(mode)
    if mode == "logadd":
        return logadd_sum(sign, exp, tables)
    if base is None:
        base = _row_base(sign, exp)
    return linear_sum(sign, exp, base, tables, mode)


def lns_sum(sign, exp, tables: Tables, axis=-1, mode: str = "linear"):
    """Sum along one axis."""
    sign = np.moveaxis(np.asarray(sign), axis, -1)
    exp = np.moveaxis(np.asarray(exp, dtype=np.int64), axis, -1)
    return reduce_last(sign, exp, tables, mode)


def matmul_2d(sa, xa, sb, xb, tables: Tables, mode: str = "linear", row_block: int = 16):
    """(M, K) @ (K, N).  Rows are done in blocks to bound the (rows, K, N) products."""
    check_mode(mode)
    sa, xa = np.asarray(sa), np.asarray(xa, dtype=np.int64)
    sb, xb = np.asarray(sb), np.asarray(xb, dtype=np.int64)
    m, k = sa.shape
    n = sb.shape[1]
    out_s = np.zeros((m, n), dtype=np.int8)
    out_x = np.zeros((m, n), dtype=np.int64)
    a_max = _row_base(sa, xa)
    b_max = _row_base(sb.T, xb.T)
    sb_t, xb_t = sb.T, xb.T
    for lo in range(0, m, row_block):
        hi = min(lo + row_block, m)
        ps = sa[lo:hi, None, :] * sb_t[None, :, :]
        px = xa[lo:hi, None, :] + xb_t[None, :, :]
        base = a_max[lo:hi, None] + b_max[None, :]
        out_s[lo:hi], out_x[lo:hi] = reduce_last(ps, px, tables, mode, base=base)
    return out_s, out_x


def matmul_batch_shape(a_shape, b_shape) -> tuple[int, ...]:
    """The broadcast batch shape of a matmul, or ValueError naming both shapes."""
    if len(a_shape) < 2 or len(b_shape) < 2:
        raise ValueError(f"matmul needs operands of at least 2 dimensions, got {a_shape} and {b_shape}")
    if a_shape[-1] != b_shape[-2]:
        raise ValueError(f"matmul: inner sizes differ: {a_shape} @ {b_shape}")
    try:
        return np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch shapes of {a_shape} and {b_shape} do not broadcast") from None


def matmul(sa, xa, sb, xb, tables: Tables, mode: str = "linear"):
    """Matmul with NumPy's rules: 2-D, or batched over broadcasting leading axes."""
    sa, xa, sb, xb = (np.asarray(v) for v in (sa, xa, sb, xb))
    batch = matmul_batch_shape(sa.shape, sb.shape)
    # as in the C twin, an exponent may be given in any shape that broadcasts to its sign's
    sa, xa = np.broadcast_arrays(sa, xa)
    sb, xb = np.broadcast_arrays(sb, xb)
    if sa.ndim == 2 and sb.ndim == 2:
        return matmul_2d(sa, xa, sb, xb, tables, mode)
    sa, xa = (np.broadcast_to(v, batch + sa.shape[-2:]) for v in (sa, xa))
    sb, xb = (np.broadcast_to(v, batch + sb.shape[-2:]) for v in (sb, xb))
    out_s = np.zeros(batch + (sa.shape[-2], sb.shape[-1]), dtype=np.int8)
    out_x = np.zeros(out_s.shape, dtype=np.int64)
    for idx in np.ndindex(*batch):
        out_s[idx], out_x[idx] = matmul_2d(sa[idx], xa[idx], sb[idx], xb[idx], tables, mode)
    return out_s, out_x

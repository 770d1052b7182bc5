"""The one module that imports the compiled C extension (lnsnet._native_c).

Everything else calls the kernels through lnsnet.kernels, which asks
`enabled()` whether to use C or the NumPy references.  LNSNET_NATIVE=0 forces
the references.

Each function here has the signature of its NumPy reference and returns the
same integers, dtypes and shapes.  Before every call it does what the C side
cannot: broadcasting, conversion to contiguous int8 signs and int64
exponents, shape checks, and sizing the output and scratch buffers, so that
no Python call can make a kernel read or write out of bounds.  Inputs the C
kernels are not written for (exponents beyond +-2**50, far outside the
engine's +-1000 octaves; a fixed-point fraction that is not a plain integer)
go to the NumPy reference instead.

LNSNET_SIMD=portable|avx2|avx512 caps the SIMD code the kernels choose at
run time (for comparing them); by default they use the best the CPU has.
"""
from __future__ import annotations

import math
import os
import threading

import numpy as np

from lnsnet.kernels import accumulate as _accumulate
from lnsnet.kernels import elementwise as _elementwise
from lnsnet.kernels import fixed as _fixed
from lnsnet.kernels import madam as _madam
from lnsnet.kernels import quantize as _quantize
from lnsnet.kernels.elementwise import broadcast
from lnsnet.tables import MANT_BITS, PACK_BLOCK, POW2_BITS, Tables

try:
    from lnsnet._native_c import ffi, lib
except ImportError:  # not compiled: the NumPy references take over
    ffi = lib = None

SIMD_LEVELS = ("portable", "avx2", "avx512")
# Exponents the C kernels take: their int64 sums and shifts cannot overflow.
EXP_BOUND = 1 << 50
FRAC_BOUND = 1 << 40

_C_TYPES = {np.dtype(np.int8): "int8_t[]", np.dtype(np.int32): "int32_t[]",
            np.dtype(np.int64): "int64_t[]", np.dtype(np.uint64): "uint64_t[]"}


def available() -> bool:
    """True when the C extension was built and imports."""
    return lib is not None


def enabled() -> bool:
    """True when kernels run in C: built, and not switched off by LNSNET_NATIVE=0."""
    return available() and os.environ.get("LNSNET_NATIVE", "1") != "0"


def simd_level() -> str:
    """The SIMD code the C kernels use: 'avx512', 'avx2' or 'portable'."""
    return ffi.string(lib.lns_simd_level()).decode() if available() else "none"


def limit_simd(name: str) -> str:
    """Use at most the named SIMD level (tests compare them); returns the level in use."""
    if name not in SIMD_LEVELS:
        raise ValueError(f"SIMD level {name!r} is not one of {SIMD_LEVELS}")
    lib.lns_simd_limit(SIMD_LEVELS.index(name))
    return simd_level()


_threads = 1


def threads() -> int:
    """Threads the C matmul uses (OpenMP's default: one per core)."""
    return _threads


def set_threads(count: int) -> None:
    """Threads for every C kernel called from this thread."""
    global _threads
    if count < 1:
        raise ValueError(f"threads must be at least 1, got {count}")
    _threads = int(count)
    if lib is not None:
        lib.lns_set_threads(_threads)


if available():
    if (lib.LNS_POW2_BITS, lib.LNS_MANT_BITS, lib.LNS_FIXED_CEIL_BITS) != (
            POW2_BITS, MANT_BITS, _fixed.FIXED_CEIL_BITS):
        raise ImportError("lnsnet._native_c was built for other table constants; rebuild it")
    _threads = max(1, lib.lns_num_threads())
    if os.environ.get("LNSNET_SIMD"):
        limit_simd(os.environ["LNSNET_SIMD"])


# ---- buffers -----------------------------------------------------------------

def _buf(arr: np.ndarray):
    """A cffi view of a C-contiguous int8/int32/int64 array (no copy)."""
    if not arr.flags.c_contiguous:
        raise ValueError("native: internal error, a buffer is not contiguous")
    return ffi.from_buffer(_C_TYPES[arr.dtype], arr)


def _signs(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int8)


def _exps(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _narrow(a) -> bool:
    """Integers of 32 bits or fewer: within EXP_BOUND without looking
    (tensors hold int32 exponents)."""
    dtype = np.asarray(a).dtype
    return dtype.kind in "iu" and dtype.itemsize <= 4


def _in_bounds(*exps: np.ndarray) -> bool:
    """Every (int64) exponent within +-EXP_BOUND."""
    return all(x.size == 0 or (int(x.min()) >= -EXP_BOUND and int(x.max()) <= EXP_BOUND)
               for x in exps)


def _checked_exps(*arrays) -> tuple[list[np.ndarray], bool]:
    """The arrays as contiguous int64, and whether every value is within
    +-EXP_BOUND (a 32-bit array is, without the pass that looks)."""
    exps = [_exps(a) for a in arrays]
    return exps, all(_narrow(a) or _in_bounds(x) for a, x in zip(arrays, exps))


INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _int32_exps(*arrays) -> tuple[list[np.ndarray], bool]:
    """The arrays as contiguous int32, the reductions' width, and whether
    every value fits.  An int32 array passes as it is; a wider one is looked
    at, and narrowed only when it fits (otherwise returned as it is)."""
    exps, fits = [], True
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind == "i" and a.dtype.itemsize <= 4:
            exps.append(np.ascontiguousarray(a, dtype=np.int32))
            continue
        if a.dtype.kind not in "iu" or (a.size and (int(a.min()) < INT32_MIN or int(a.max()) > INT32_MAX)):
            fits = False
            exps.append(a)
            continue
        exps.append(np.ascontiguousarray(a, dtype=np.int32))
    return exps, fits


_tables_cache: dict[int, tuple] = {}
_scratch = threading.local()


# The matmul scratch a product may use: a larger 2-D product is done in row
# blocks that fit (its rows are independent, so the result is the same).
# Without the cap LeNet's conv1 forward pass alone would take 36 MiB.
SCRATCH_BUDGET_WORDS = 1 << 18  # 2 MiB
# Row blocks have at least this many rows: each block builds B's variant
# rows again (C work that grows with k and n, not with the rows), and too
# few rows do not pay for it.  LeNet's conv1 weight gradient (6 rows, a sum
# of 50,176 products) took 5 times as long in blocks of 2 rows.
MIN_BLOCK_ROWS = 128
# The largest scratch kept between calls.  A product that row blocks cannot
# shrink past it (fewer than 2 * MIN_BLOCK_ROWS rows, or a scratch that is
# mostly B's: a 1024 x 1024 B takes 5 MiB, and logadd's is all B's) gets a
# buffer for its call only.
SCRATCH_KEEP_WORDS = 1 << 18  # 2 MiB


def _scratch_words(words: int) -> np.ndarray:
    """A matmul scratch of at least `words` words: up to SCRATCH_KEEP_WORDS,
    this thread's buffer, grown when needed and kept (a fresh one per call
    would pay its page faults every time); past it, one for this call only."""
    if words > SCRATCH_KEEP_WORDS:
        return np.empty(words, dtype=np.int64)
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or len(buffer) < words:
        buffer = np.empty(max(words, 1), dtype=np.int64)
        _scratch.buffer = buffer
    return buffer


def _c_tables(tables: Tables):
    """The lns_tables struct for these tables, built once (checked, then cached)."""
    cached = _tables_cache.get(id(tables))
    if cached is not None and cached[0] is tables:
        return cached[1]
    gamma, f = int(tables.gamma), int(tables.frac_bits)
    if gamma != 1 << f or not 0 <= f <= 16:
        raise ValueError(f"native: tables with gamma={gamma}, frac_bits={f} are inconsistent")
    arrays = {
        "pow2": _exps(tables.pow2), "mitchell": _exps(tables.mitchell),
        "bound": _exps(tables.bound), "log2": np.ascontiguousarray(tables.log2, dtype=np.int32),
    }
    # SB and DB packed (lnsnet.tables.PackedTable); an empty part gets one
    # unread entry, so that no pointer is NULL.
    for name, packed in (("sb", tables.sb_packed), ("db", tables.db_packed)):
        blocks = -(-(packed.length - packed.dense) // PACK_BLOCK)
        if (packed.length != tables.essential_zero or packed.dense != tables.sb_packed.dense
                or len(packed.head) != packed.dense or len(packed.base) != blocks
                or len(packed.steps) != blocks):
            raise ValueError(f"native: packed {name} table does not match the tables' shape")
        arrays[name] = np.ascontiguousarray(packed.head if len(packed.head) else [0], dtype=np.int32)
        arrays[name + "_base"] = np.ascontiguousarray(packed.base if len(packed.base) else [0], dtype=np.int32)
        arrays[name + "_steps"] = np.ascontiguousarray(packed.steps if len(packed.steps) else [0],
                                                       dtype=np.uint64)
    for name in ("pow2", "mitchell", "bound"):
        if arrays[name].shape != (gamma,):
            raise ValueError(f"native: {name} table has shape {arrays[name].shape}, expected ({gamma},)")
    for name in ("pow2", "mitchell"):
        if arrays[name].min() < 0 or arrays[name].max() >= 1 << (POW2_BITS + 1):
            raise ValueError(f"native: {name} entries must lie in 0..2**{POW2_BITS + 1}")
    log2 = arrays["log2"]
    if log2.shape != (2 * gamma,) or log2.min() < 0 or log2.max() > gamma:
        raise ValueError(f"native: log2 table must have {2 * gamma} entries in 0..{gamma}")
    struct = ffi.new("lns_tables *")
    struct.frac_bits = f
    views = {name: ffi.from_buffer(_C_TYPES[a.dtype], a) for name, a in arrays.items()}
    for name, view in views.items():
        setattr(struct, name, view)
    struct.n = tables.essential_zero
    struct.dense = tables.sb_packed.dense
    _tables_cache[id(tables)] = (tables, struct, arrays, views)
    return struct


# ---- elementwise ----------------------------------------------------------------

def _gaussian(sa, xa, sb, xb, tables: Tables, negate_b: bool):
    sa, xa, sb, xb = broadcast(sa, xa, sb, xb)
    shape = sa.shape
    sa, sb = _signs(sa), _signs(sb)
    xa, xb = _exps(xa), _exps(xb)
    out_s = np.empty(shape, dtype=np.int8)
    out_x = np.empty(shape, dtype=np.int64)
    lib.lns_add(out_s.size, _buf(sa), _buf(xa), _buf(sb), _buf(xb), int(negate_b),
                _c_tables(tables), _buf(out_s), _buf(out_x))
    return out_s, out_x


def add(sa, xa, sb, xb, tables: Tables):
    """⊕ (lnsnet.kernels.elementwise.add) in C."""
    return _gaussian(sa, xa, sb, xb, tables, negate_b=False)


def sub(sa, xa, sb, xb, tables: Tables):
    """⊖ (lnsnet.kernels.elementwise.sub) in C."""
    return _gaussian(sa, xa, sb, xb, tables, negate_b=True)


# ---- fixed point ------------------------------------------------------------------

def to_fixed(sign, exp, frac: int, tables: Tables) -> np.ndarray:
    """lnsnet.kernels.fixed.to_fixed in C."""
    sign, exp = np.broadcast_arrays(np.asarray(sign), np.asarray(exp, dtype=np.int64))
    shape = sign.shape
    sign, exp = _signs(sign), _exps(exp)
    if (not isinstance(frac, (int, np.integer)) or isinstance(frac, bool)
            or abs(int(frac)) > FRAC_BOUND or not _in_bounds(exp)):
        return _fixed.to_fixed(sign.reshape(shape), exp.reshape(shape), frac, tables)
    out = np.empty(shape, dtype=np.int64)
    lib.lns_to_fixed(out.size, _buf(sign), _buf(exp), int(frac), _c_tables(tables), _buf(out))
    return out


def from_fixed(value, e0, tables: Tables):
    """lnsnet.kernels.fixed.from_fixed in C.  As there, the sign has value's
    shape and the exponent the shape of value and e0 broadcast."""
    value = np.asarray(value, dtype=np.int64)
    v, e = np.broadcast_arrays(value, np.asarray(e0, dtype=np.int64))
    shape = v.shape
    v, e = _exps(v), _exps(e)
    out_s = np.empty(shape, dtype=np.int8)
    out_x = np.empty(shape, dtype=np.int64)
    lib.lns_from_fixed(out_s.size, _buf(v), _buf(e), _c_tables(tables), _buf(out_s), _buf(out_x))
    if value.shape != shape:
        out_s = np.sign(value).astype(np.int8)
    return out_s, out_x


# ---- requantization -------------------------------------------------------------------

_REQUANTIZE = {np.dtype(np.int32): ("lns_requantize_top_i32", "lns_requantize_i32"),
               np.dtype(np.int64): ("lns_requantize_top_i64", "lns_requantize_i64")}


def requantize(sign, exp, *, far: int, shift: int, t: int | None, span: int, limit: int,
               flush: bool, offset=None):
    """lnsnet.kernels.quantize.requantize in C."""
    sign, exp, offset = _quantize.operands(sign, exp, offset)
    if not (0 <= far <= EXP_BOUND and abs(shift) <= 62):
        return _quantize.requantize(sign, exp, far=far, shift=shift, t=t, span=span, limit=limit,
                                    flush=flush, offset=offset)
    names = _REQUANTIZE[exp.dtype]
    shape = sign.shape
    sign, exp = np.ascontiguousarray(sign), np.ascontiguousarray(exp)
    offset_buf = ffi.NULL if offset is None else _buf(np.ascontiguousarray(offset))
    q = ffi.new("lns_requant *")
    q.far, q.shift, q.flush = int(far), int(shift), int(bool(flush))
    top_of, write = (getattr(lib, name) for name in names)
    if t is None:
        found = ffi.new("int64_t *")
        t = int(found[0]) if top_of(sign.size, _buf(sign), _buf(exp), offset_buf, q, found) else 0
    t = min(max(int(t), span - limit), limit)
    q.top, q.low = t, max(t - span, -limit)
    out_s = np.empty(shape, dtype=np.int8)
    out_x = np.empty(shape, dtype=np.int32)
    write(sign.size, _buf(sign), _buf(exp), offset_buf, q, _buf(out_s), _buf(out_x))
    return out_s, out_x, t


# ---- the Madam step ---------------------------------------------------------------------

def madam_moment(g_sign, g_exp, v_sign, v_exp, *, beta: int, one_minus_beta: int, tables: Tables):
    """lnsnet.kernels.madam.madam_moment in C."""
    _madam.same_shapes("madam_moment", g_sign, g_exp, v_sign, v_exp)
    shape = np.shape(g_sign)
    g_sign, v_sign = _signs(g_sign), _signs(v_sign)
    (g_exp, v_exp), bounded = _checked_exps(g_exp, v_exp)
    if not (bounded and max(abs(beta), abs(one_minus_beta)) <= EXP_BOUND):
        return _madam.madam_moment(g_sign.reshape(shape), g_exp.reshape(shape), v_sign.reshape(shape),
                                   v_exp.reshape(shape), beta=beta, one_minus_beta=one_minus_beta,
                                   tables=tables)
    out_s = np.empty(shape, dtype=np.int8)
    out_x = np.empty(shape, dtype=np.int64)
    lib.lns_madam_moment(out_s.size, _buf(g_sign), _buf(g_exp), _buf(v_sign), _buf(v_exp), int(beta),
                         int(one_minus_beta), _c_tables(tables), _buf(out_s), _buf(out_x))
    return out_s, out_x


def madam_exponents(g_sign, g_exp, w_sign, w_exp, v_sign, v_exp, *, correction: int, bound: int,
                    decay: int, factor: int, shift: int, x_max: int, frac: int, tables: Tables,
                    offset=None) -> np.ndarray:
    """lnsnet.kernels.madam.madam_exponents in C."""
    _madam.same_shapes("madam_exponents", g_sign, g_exp, w_sign, w_exp, v_sign, v_exp,
                       *(() if offset is None else (offset,)))
    shape = np.shape(g_sign)
    signs = [_signs(a) for a in (g_sign, w_sign, v_sign)]
    exps, bounded = _checked_exps(g_exp, w_exp, v_exp)
    _elementwise.check_nonnegative(signs[2])
    constants = (correction, bound, decay, factor, x_max)
    if not (bounded and all(abs(int(v)) <= EXP_BOUND for v in constants)
            and 1 <= shift <= 62 and abs(frac) <= FRAC_BOUND):
        return _madam.madam_exponents(
            *(a.reshape(shape) for a in (signs[0], exps[0], signs[1], exps[1], signs[2], exps[2])),
            correction=correction, bound=bound, decay=decay, factor=factor, shift=shift, x_max=x_max,
            frac=frac, tables=tables, offset=offset)
    c = ffi.new("lns_madam *")
    c.correction, c.bound, c.decay, c.factor, c.x_max = (int(v) for v in constants)
    c.shift, c.frac = int(shift), int(frac)
    offset_buf = ffi.NULL if offset is None else _buf(_exps(offset))
    out = np.empty(shape, dtype=np.int64)
    lib.lns_madam_exponents(out.size, _buf(signs[0]), _buf(exps[0]), _buf(signs[1]), _buf(exps[1]),
                            _buf(signs[2]), _buf(exps[2]), c, offset_buf, _c_tables(tables), _buf(out))
    return out


# ---- reductions ---------------------------------------------------------------------

_MODE_IDS = {"linear": 0, "logadd": 1, "mitchell": 2}


def _margin(k: int, mode: str) -> int:
    return 0 if mode == "logadd" else _accumulate.left_margin(k)


def lns_sum(sign, exp, tables: Tables, axis=-1, mode: str = "linear"):
    """lnsnet.kernels.accumulate.lns_sum in C."""
    _accumulate.check_mode(mode)
    sign = np.moveaxis(np.asarray(sign), axis, -1)
    exp = np.moveaxis(np.asarray(exp), axis, -1)
    sign, exp = np.broadcast_arrays(sign, exp)
    shape = sign.shape
    k = shape[-1]
    margin = _margin(k, mode)
    sign = _signs(sign)
    (exp,), fits = _int32_exps(exp)
    if not fits:
        return _accumulate.lns_sum(sign, exp, tables, -1, mode)
    out_s = np.empty(shape[:-1], dtype=np.int8)
    out_x = np.empty(shape[:-1], dtype=np.int64)
    lib.lns_sum(out_s.size, k, _buf(sign), _buf(exp), _MODE_IDS[mode], margin,
                _c_tables(tables), _buf(out_s), _buf(out_x))
    return out_s, out_x


def _batch_offsets(own_batch: tuple, batch: tuple, matrix_size: int) -> np.ndarray:
    """Element offset of each batch element's matrix in a contiguous operand
    whose own batch shape broadcasts to `batch` (no copy for shared operands)."""
    index = np.arange(math.prod(own_batch), dtype=np.int64).reshape(own_batch)
    return np.ascontiguousarray(np.broadcast_to(index, batch).ravel() * matrix_size)


def matmul(sa, xa, sb, xb, tables: Tables, mode: str = "linear"):
    """lnsnet.kernels.accumulate.matmul in C: 2-D, or batched with NumPy's rules."""
    sa, xa, sb, xb = (np.asarray(v) for v in (sa, xa, sb, xb))
    batch = _accumulate.matmul_batch_shape(sa.shape, sb.shape)
    _accumulate.check_mode(mode)
    sa, xa = np.broadcast_arrays(sa, xa)
    sb, xb = np.broadcast_arrays(sb, xb)
    (m, k), n = sa.shape[-2:], sb.shape[-1]
    margin = _margin(k, mode)
    sa, sb = _signs(sa), _signs(sb)
    (xa, xb), fits = _int32_exps(xa, xb)
    if not fits:
        return _accumulate.matmul(sa, xa, sb, xb, tables, mode)
    a_offsets = _batch_offsets(sa.shape[:-2], batch, m * k)
    b_offsets = _batch_offsets(sb.shape[:-2], batch, k * n)
    count = len(a_offsets)
    out_s = np.empty(batch + (m, n), dtype=np.int8)
    out_x = np.empty(batch + (m, n), dtype=np.int64)
    c_tables = _c_tables(tables)
    mode_id = _MODE_IDS[mode]

    def words_for(rows: int) -> int:
        return lib.lns_matmul_scratch_words(count, rows, k, n, mode_id, c_tables, _threads)

    rows = max(m, 1)
    if count == 1 and m >= 2 * MIN_BLOCK_ROWS and words_for(m) > SCRATCH_BUDGET_WORDS:
        # Split only where the rows' part of the scratch is what passes the
        # budget: every block prepares all of B again.
        fixed = words_for(1)
        per_row = (words_for(m) - fixed) / (m - 1)
        if fixed <= SCRATCH_BUDGET_WORDS // 2:
            rows = max(1, int((SCRATCH_BUDGET_WORDS - fixed) / per_row))
            while rows > MIN_BLOCK_ROWS and words_for(rows) > SCRATCH_BUDGET_WORDS:
                rows -= 1 + rows // 16
            rows = max(rows, MIN_BLOCK_ROWS)
    scratch = _scratch_words(words_for(rows))
    one = np.zeros(1, dtype=np.int64)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        # Row blocks exist only for 2-D products (count 1): offsets then say where the block starts.
        a_start = a_offsets if rows == m else one + r0 * k
        status = lib.lns_matmul(count, r1 - r0, k, n, _buf(sa), _buf(xa), _buf(a_start),
                                _buf(sb), _buf(xb), _buf(b_offsets), mode_id, margin, c_tables,
                                _buf(scratch), len(scratch), _threads,
                                _buf(out_s.reshape(-1)[r0 * n:]), _buf(out_x.reshape(-1)[r0 * n:]))
        if status != 0:
            raise RuntimeError(f"native matmul failed with status {status}")
    return out_s, out_x

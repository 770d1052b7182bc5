"""The C kernels (lnsnet.native) equal their NumPy references bit for bit.

Every comparison checks values, dtypes and shapes of both outputs.  The
inputs: random operands and the edge cases the kernels branch on (zeros,
exact cancellation, differences past the essential zero, both ends of the
8-bit range, huge exponent differences, empty and size-1 shapes,
non-contiguous views), for gamma 1, 8, 64 and 1024 (both matmul strategies:
the variant-row fast path for gamma <= 16 and the generic one above), at
every SIMD level this CPU has.
"""
from __future__ import annotations

import argparse
import json
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lnsnet.kernels as dispatched
from lnsnet import LNSFormat, bench, native
from lnsnet.kernels import accumulate, elementwise, fixed, madam, quantize
from lnsnet.tables import Tables, tables_for

pytestmark = pytest.mark.skipif(not native.available(),
                                reason="the C extension lnsnet._native_c is not built")

GAMMAS = (1, 8, 64, 1024)
MODES = accumulate.MODES


def simd_levels():
    """The SIMD levels this CPU runs (the kernels cap themselves to these)."""
    if not native.available():
        return ["portable"]
    best = native.simd_level()
    return list(native.SIMD_LEVELS[:native.SIMD_LEVELS.index(best) + 1])


@pytest.fixture(params=simd_levels())
def simd(request):
    best = native.simd_level()
    native.limit_simd(request.param)
    yield request.param
    native.limit_simd(best)


def same(got, want):
    """Both (sign, exponent) pairs, or both arrays, identical in value, dtype and shape."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
        np.testing.assert_array_equal(g, w)


def operands(rng, shape, *, zeros=0.2, spread=126, offset=0, exp_dtype=np.int64):
    """Random signs (zeros with probability `zeros`) and exponents in
    offset - spread .. offset; a zero has exponent 0, as in every lnsnet array."""
    sign = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=shape,
                      p=[(1 - zeros) / 2, zeros, (1 - zeros) / 2])
    exp = rng.integers(offset - spread, offset + 1, size=shape)
    return sign, np.where(sign != 0, exp, 0).astype(exp_dtype)


def eight_bit(rng, shape, *, scale=1.0, zeros=0.0):
    """Normal data requantized to LNSFormat(8, 8), with zeros mixed in."""
    fmt = LNSFormat(8, 8)
    values = rng.standard_normal(shape) * scale
    values[rng.random(shape) < zeros] = 0.0
    sign, exp = fmt.encode(values)
    sign, exp, _ = fmt.requantize(sign, exp)
    return sign, exp


# ---- ⊕ and ⊖ -------------------------------------------------------------------

@pytest.mark.parametrize("gamma", GAMMAS)
def test_add_sub_random(gamma, simd):
    rng = np.random.default_rng(gamma)
    t = tables_for(gamma)
    n = len(t.sb)
    sa, xa = operands(rng, (3, 400), spread=3 * n)
    sb, xb = operands(rng, (400,), spread=3 * n)
    for name in ("add", "sub"):
        same(getattr(native, name)(sa, xa, sb, xb, t), getattr(elementwise, name)(sa, xa, sb, xb, t))


def test_add_fine_gamma_reads_packed_tables(simd):
    """At gamma = 2**16 (Madam's state format) SB and DB are packed past d = gamma: every
    lane reads them right, on each SIMD level, and the whole tables are never built."""
    t = Tables(1 << 16)  # not tables_for's: another test may have built its whole tables
    assert t.essential_zero > 16 * t.sb_packed.dense
    rng = np.random.default_rng(16)
    d = np.concatenate([rng.integers(0, t.essential_zero + 100, 4000),
                        np.arange(t.sb_packed.dense - 70, t.sb_packed.dense + 200),
                        np.arange(t.essential_zero - 200, t.essential_zero + 3)])
    xb = rng.integers(-1000, 1000, d.shape)
    signs = rng.choice(np.array([-1, 1], np.int8), (2,) + d.shape)
    out = native.add(signs[0], xb + d, signs[1], xb, t)
    assert "sb" not in vars(t) and "db" not in vars(t)
    same(out, elementwise.add(signs[0], xb + d, signs[1], xb, t))


def test_tables_that_do_not_agree_are_refused():
    """The C kernels trust the lengths of the tables they read: tables whose arrays do not
    agree with their gamma are refused before any kernel runs."""
    args = (np.ones(2, np.int8), np.zeros(2, np.int32), np.ones(2, np.int8), np.zeros(2, np.int32))
    t = Tables(1024)
    t.db_packed.steps = t.db_packed.steps[:-1]
    with pytest.raises(ValueError, match="packed db table does not match"):
        native.add(*args, t)
    t = Tables(1024)
    t.sb_packed.dense = 512
    with pytest.raises(ValueError, match="packed sb table does not match"):
        native.add(*args, t)
    t = Tables(8)
    t.pow2 = t.pow2[:4]
    with pytest.raises(ValueError, match="pow2 table has shape"):
        native.add(*args, t)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_add_edge_cases(gamma):
    t = tables_for(gamma)
    n = len(t.sb)
    d = np.concatenate([np.arange(n + 3), [10 * n, 10**6, 2 * 10**9]])
    x = np.full(d.shape, 17, dtype=np.int64)
    for s1, s2 in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (1, 0), (0, 0)):
        sa = np.full(d.shape, s1, dtype=np.int8)
        sb = np.full(d.shape, s2, dtype=np.int8)
        for xa, xb in ((x, x - d), (x - d, x), (-x, -x - d)):  # either one larger; d=0 cancels
            same(native.add(sa, xa, sb, xb, t), elementwise.add(sa, xa, sb, xb, t))
            same(native.sub(sa, xa, sb, xb, t), elementwise.sub(sa, xa, sb, xb, t))


def test_add_shapes_dtypes_and_views():
    rng = np.random.default_rng(5)
    t = tables_for(8)
    sa, xa = operands(rng, (6, 8))
    sb, xb = operands(rng, (8, 6))
    views = [
        (sa.T, xa.T, sb, xb),                            # transposed
        (sa[::2, ::3], xa[::2, ::3], sb[1:7:2, :3].T, xb[1:7:2, :3].T),  # strided
        (sa[:, :1], xa[:, :1].astype(np.int32), sb[0], xb[0]),  # int32 exponents, broadcast
        (sa[0, 0], xa[0, 0], sb, xb),                    # 0-d against 2-d
        (np.int8(1), 3, np.int8(-1), 3),                 # Python and NumPy scalars
        (sa[:0], xa[:0], sb[:0, :1], xb[:0, :1]),         # empty
        (sa[:1, :1], xa[:1, :1], sb[:1, :1], xb[:1, :1]),  # size 1
        (sa.astype(np.int64), xa, sb.T.astype(np.int32), xb.T),  # wider sign dtypes
    ]
    for args in views:
        same(native.add(*args, t), elementwise.add(*args, t))
        same(native.sub(*args, t), elementwise.sub(*args, t))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_add_property_broadcast(data):
    gamma = data.draw(st.sampled_from(GAMMAS))
    shape_a = tuple(data.draw(st.lists(st.integers(0, 4), max_size=3)))
    shape_b = tuple(1 if data.draw(st.booleans()) else s for s in shape_a)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    t = tables_for(gamma)
    sa, xa = operands(rng, shape_a, spread=2 * len(t.sb))
    sb, xb = operands(rng, shape_b, spread=2 * len(t.sb))
    same(native.add(sa, xa, sb, xb, t), elementwise.add(sa, xa, sb, xb, t))


def test_add_broadcast_error_names_both_shapes():
    t = tables_for(8)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        native.add(np.ones((2, 3), np.int8), np.zeros((2, 3)), np.ones(4, np.int8), np.zeros(4), t)


# ---- fixed point -------------------------------------------------------------------

@pytest.mark.parametrize("gamma", GAMMAS)
def test_to_fixed(gamma, simd):
    rng = np.random.default_rng(gamma + 1)
    t = tables_for(gamma)
    s, x = operands(rng, (500,), spread=80 * gamma, offset=40 * gamma)
    for frac in (0, 5, 20, 40, -30):
        same(native.to_fixed(s, x, frac, t), fixed.to_fixed(s, x, frac, t))
    same(native.to_fixed(s[:7].reshape(7, 1), x[:3], 10, t), fixed.to_fixed(s[:7].reshape(7, 1), x[:3], 10, t))
    same(native.to_fixed(1, 0, 24, t), fixed.to_fixed(1, 0, 24, t))
    huge = np.array([2**55, -2**55])  # past the C kernels' bound: the reference answers
    same(native.to_fixed([1, -1], huge, 3, t), fixed.to_fixed([1, -1], huge, 3, t))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_from_fixed(gamma, simd):
    rng = np.random.default_rng(gamma + 2)
    t = tables_for(gamma)
    bits = rng.integers(0, 64, size=2000)
    value = rng.integers(-2**62, 2**62, size=2000) >> bits  # every magnitude
    edges = np.array([0, 1, -1, 2, 3, 2**61, 2**62, 2**63 - 1, -2**63, -2**63 + 1, -(2**61)])
    value = np.concatenate([value, edges])
    e0 = rng.integers(-10**6, 10**6, size=value.shape)
    same(native.from_fixed(value, e0, t), fixed.from_fixed(value, e0, t))
    same(native.from_fixed(value, 7, t), fixed.from_fixed(value, 7, t))
    same(native.from_fixed(value[:5].reshape(5, 1), e0[:3], t),  # e0 widens the shape
         fixed.from_fixed(value[:5].reshape(5, 1), e0[:3], t))
    same(native.from_fixed(value[::7], e0[::7], t), fixed.from_fixed(value[::7], e0[::7], t))
    same(native.from_fixed(np.int64(12345), -3, t), fixed.from_fixed(np.int64(12345), -3, t))


# ---- requantization --------------------------------------------------------------------

def requantize_cases(fmt_bits, gamma):
    """The parameters for every branch: each shift direction, t given or found,
    flush or saturate, a window wider than the range."""
    fmt = LNSFormat(fmt_bits, gamma)
    for shift in (-3, 0, 1, 4, 12):
        src_gamma = gamma << shift if shift >= 0 else gamma >> min(-shift, gamma.bit_length() - 1)
        far = 2 * 1000 * src_gamma
        for t in (None, 0, -fmt.limit, fmt.limit + 5, 17):
            for flush in (True, False):
                yield dict(far=far, shift=shift, t=t, span=fmt.span, limit=fmt.limit, flush=flush)


def same_requantized(sign, exp, **kwargs):
    """native.requantize and its reference agree: signs, exponents and t."""
    got, want = native.requantize(sign, exp, **kwargs), quantize.requantize(sign, exp, **kwargs)
    same(got[:2], want[:2])
    assert got[2] == want[2]


@pytest.mark.parametrize("bits, gamma", [(8, 8), (16, 1024), (6, 1), (32, 8)])
@pytest.mark.parametrize("exp_dtype", [np.int32, np.int64])
def test_requantize(bits, gamma, exp_dtype, simd):
    rng = np.random.default_rng(bits * gamma)
    sign, exp = operands(rng, (3, 333), spread=3000 * gamma, offset=1500 * gamma, exp_dtype=exp_dtype)
    exp[0, :4] = [np.iinfo(exp_dtype).max, np.iinfo(exp_dtype).min, 2**30, -2**30]
    sign[0, :4] = [1, -1, 1, -1]
    for kwargs in requantize_cases(bits, gamma):
        offset = None
        if kwargs["shift"] > 0:
            offset = rng.integers(0, 1 << kwargs["shift"], size=exp.shape)
        for off in (None, offset):
            same_requantized(sign, exp, offset=off, **kwargs)


def test_requantize_zeros_empty_and_views():
    kwargs = dict(far=16000, shift=0, t=None, span=126, limit=8000, flush=True)
    for sign, exp in [(np.zeros(5, np.int8), np.zeros(5, np.int32)),
                      (np.zeros((0, 3), np.int8), np.zeros((0, 3), np.int64)),
                      (np.array([1, 0, -1, 1], np.int8)[::-1], np.array([3, 9, -200, 5])[::-1])]:
        same_requantized(sign, exp, **kwargs)
    with pytest.raises(ValueError, match="offset shape"):
        native.requantize(np.ones(3, np.int8), np.zeros(3), offset=np.zeros(2), **{**kwargs, "shift": 2})


# ---- the Madam step --------------------------------------------------------------------

def madam_operands(rng, shape, gamma):
    """A Madam step's operands at state gamma: gradients, weights (zeros among them), and
    positive moments (zero where the gradient has always been)."""
    g_sign, g_exp = operands(rng, shape, spread=30 * gamma, offset=-5 * gamma)
    w_sign, w_exp = operands(rng, shape, spread=8 * gamma, zeros=0.1)
    v_sign, v_exp = operands(rng, shape, spread=60 * gamma, offset=-10 * gamma)
    return g_sign, g_exp, w_sign, w_exp, np.abs(v_sign), v_exp


@pytest.mark.parametrize("gamma", (1024, 65536))
def test_madam_moment(gamma, simd):
    rng = np.random.default_rng(gamma + 11)
    g_sign, g_exp, _, _, v_sign, v_exp = madam_operands(rng, (999,), gamma)
    t = tables_for(gamma)
    for beta, one_minus in ((-95, -6532), (0, 0), (-1, -20 * gamma)):
        same(native.madam_moment(g_sign, g_exp, v_sign, v_exp, beta=beta, one_minus_beta=one_minus, tables=t),
             madam.madam_moment(g_sign, g_exp, v_sign, v_exp, beta=beta, one_minus_beta=one_minus, tables=t))


@pytest.mark.parametrize("gamma", (1024, 65536))
@pytest.mark.parametrize("stochastic", (False, True))
def test_madam_exponents(gamma, stochastic, simd):
    rng = np.random.default_rng(gamma + 12)
    ops = madam_operands(rng, (3, 333), gamma)
    t = tables_for(gamma)
    for shift, factor, decay in ((40, 931359, 0), (62, 1 << 30, 3 << 20), (1, 7, 0), (30, 0, 5)):
        offset = rng.integers(0, 1 << shift, size=(3, 333)) if stochastic else None
        kwargs = dict(correction=-3 * gamma, bound=gamma * 3, decay=decay, factor=factor, shift=shift,
                      x_max=2 * gamma, frac=24, tables=t, offset=offset)
        same(native.madam_exponents(*ops, **kwargs), madam.madam_exponents(*ops, **kwargs))


def test_madam_step_refusals():
    t = tables_for(8)
    one = (np.ones(3, np.int8), np.zeros(3, np.int64))
    kwargs = dict(correction=0, bound=8, decay=0, factor=1, shift=4, x_max=9, frac=24, tables=t)
    for fn in (native.madam_exponents, madam.madam_exponents):
        with pytest.raises(ValueError, match="negative"):
            fn(*one, *one, -one[0], one[1], **kwargs)
        with pytest.raises(ValueError, match="must all be the same"):
            fn(*one, *one, np.ones(2, np.int8), np.zeros(2), **kwargs)
    for fn in (native.madam_moment, madam.madam_moment):
        with pytest.raises(ValueError, match="must all be the same"):
            fn(*one, np.ones((3, 1), np.int8), np.zeros((3, 1)), beta=-1, one_minus_beta=-9, tables=t)


# ---- sums ----------------------------------------------------------------------------

@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("mode", MODES)
def test_lns_sum(gamma, mode):
    rng = np.random.default_rng(gamma)
    t = tables_for(gamma)
    s, x = operands(rng, (5, 3, 37), spread=20 * gamma, offset=gamma)
    for axis in (-1, 0, 1):
        same(native.lns_sum(s, x, t, axis=axis, mode=mode), accumulate.lns_sum(s, x, t, axis=axis, mode=mode))
    for shape in ((4, 0), (0, 4), (1, 1), (3,), (1,)):
        s, x = operands(rng, shape, spread=8 * gamma)
        same(native.lns_sum(s, x, t, mode=mode), accumulate.lns_sum(s, x, t, mode=mode))
    s, x = operands(rng, (9, 60), spread=4 * gamma)
    same(native.lns_sum(s[::2, ::3], x[::2, ::3], t, mode=mode),
         accumulate.lns_sum(s[::2, ::3], x[::2, ::3], t, mode=mode))


def test_lns_sum_cancellation_and_zeros():
    t = tables_for(8)
    s = np.array([[1, -1, 1, -1], [0, 0, 0, 0], [1, 1, -1, -1]], dtype=np.int8)
    x = np.array([[5, 5, -3, -3], [0, 0, 0, 0], [9, 2, 9, 2]])
    for mode in MODES:
        got = native.lns_sum(s, x, t, mode=mode)
        same(got, accumulate.lns_sum(s, x, t, mode=mode))
        assert (got[0] == 0).all()  # exact cancellation and all zeros give zero


def test_lns_sum_bad_mode():
    with pytest.raises(ValueError, match="accumulation mode"):
        native.lns_sum(np.ones(3, np.int8), np.zeros(3), tables_for(8), mode="kahan")


# ---- matmul ----------------------------------------------------------------------------

def check_matmul(sa, xa, sb, xb, gamma, modes=MODES):
    t = tables_for(gamma)
    for mode in modes:
        same(native.matmul(sa, xa, sb, xb, t, mode), accumulate.matmul(sa, xa, sb, xb, t, mode))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_matmul_random(gamma, simd):
    rng = np.random.default_rng(gamma + 3)
    for m, k, n in ((7, 33, 19), (1, 1, 1), (3, 2, 40), (17, 130, 5)):
        sa, xa = operands(rng, (m, k), spread=20 * gamma, offset=-5 * gamma)
        sb, xb = operands(rng, (k, n), spread=20 * gamma, offset=3 * gamma)
        check_matmul(sa, xa, sb, xb, gamma)


@pytest.mark.parametrize("gamma", (1, 8, 16, 64, 1024))
def test_matmul_wide_and_narrow_ranges(gamma, simd):
    """Narrow ranges keep every product exact; wide ones (40 octaves) send
    products below the left margin through the truncating ("unsafe") path."""
    rng = np.random.default_rng(gamma + 4)
    for octaves in (0, 1, 8, 40, 70):
        sa, xa = operands(rng, (9, 70), spread=octaves * gamma, zeros=0.1)
        sb, xb = operands(rng, (70, 21), spread=octaves * gamma, zeros=0.1)
        check_matmul(sa, xa, sb, xb, gamma, modes=("linear", "mitchell"))


def test_matmul_eight_bit_saturation_ends(simd):
    """Both ends of the 8-bit range: values at t and at t - 126 only."""
    rng = np.random.default_rng(6)
    fmt = LNSFormat(8, 8)
    for m, k, n in ((5, 64, 23), (12, 300, 40)):
        ends = rng.choice([0, -fmt.span], size=(m + n, k)) + 40
        sa = rng.choice(np.array([-1, 1], np.int8), size=(m, k))
        sb = rng.choice(np.array([-1, 0, 1], np.int8), size=(k, n))
        check_matmul(sa, ends[:m], sb, np.where(sb != 0, ends[m:].T, 0), 8)
        sa, xa = eight_bit(rng, (m, k), zeros=0.5)  # ReLU-like activations
        sb, xb = eight_bit(rng, (k, n), scale=0.05)
        check_matmul(sa, xa, sb, xb, 8)


def test_matmul_exact_cancellation_and_zeros(simd):
    t = tables_for(8)
    xa = np.array([[3, 3, -7, -7], [0, 0, 0, 0]])
    sa = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=np.int8)
    sb = np.array([[1, 0], [-1, 0], [-1, 0], [1, 0]], dtype=np.int8)
    xb = np.array([[2, 0], [2, 0], [11, 0], [11, 0]])
    for mode in MODES:
        got = native.matmul(sa, xa, sb, xb, t, mode)
        same(got, accumulate.matmul(sa, xa, sb, xb, t, mode))
        assert (got[0] == 0).all() and (got[1] == 0).all()


@pytest.mark.parametrize("gamma", (1, 8, 16, 64, 1024))
def test_matmul_truncated_products_decide(gamma, simd):
    """Two products at the base cancel exactly, so the result is the sum of
    products about 52 octaves further down (the left margin L is 32 here),
    each truncated to a few units of the accumulator: every low bit of the
    kernel's sum shows in the rounded result."""
    rng = np.random.default_rng(gamma + 11)
    m, k, n = 6, 40, 19
    sa, xa = operands(rng, (m, k), spread=2 * gamma, offset=-25 * gamma, zeros=0.0)
    sb, xb = operands(rng, (k, n), spread=2 * gamma, offset=-25 * gamma, zeros=0.0)
    sa[:, :2], xa[:, :2] = 1, rng.integers(0, gamma, size=(m, 1))
    sb[0], sb[1] = 1, -1
    xb[:2] = rng.integers(0, gamma, size=n)
    check_matmul(sa, xa, sb, xb, gamma, modes=("linear", "mitchell"))


@pytest.mark.parametrize("gamma", (1, 8, 16))
def test_matmul_largest_sums(gamma):
    """Every product at the base and of one sign: the accumulator reaches the
    top of the range the left margin allows.  Rows whose cc is 1 (the base's
    fractions rho + beta >= gamma) and rows whose cc is 0, for K around the
    panel size (found by fuzzing: K = 3 once overflowed a panel sum)."""
    t = tables_for(gamma)
    kc = 128 // gamma
    rho_beta = [(gamma - 1, gamma - 1), (gamma - 1, 0), (0, 0), (gamma // 2, gamma - 1)]
    best = native.simd_level()
    for k in sorted({1, 2, 3, 7, kc - 1, kc, kc + 1, 2 * kc + 3}):
        xa = np.array([[rho - gamma for rho, _ in rho_beta]]).T.repeat(k, axis=1)
        xb = np.array([[beta - gamma for _, beta in rho_beta]]).repeat(k, axis=0)
        for sa_sign, sb_sign in ((1, 1), (-1, -1), (1, -1)):
            sa = np.full(xa.shape, sa_sign, np.int8)
            sb = np.full(xb.shape, sb_sign, np.int8)
            want = accumulate.matmul(sa, xa, sb, xb, t)
            try:
                for level in simd_levels():
                    native.limit_simd(level)
                    same(native.matmul(sa, xa, sb, xb, t), want)
            finally:
                native.limit_simd(best)


@pytest.mark.parametrize("gamma", (1, 8, 1024))
def test_logadd_runs_of_cancellation(gamma, simd):
    """Equal exponents and random signs: sums cancel to exact zero again and
    again, and go on from zero; zero products are mixed in."""
    rng = np.random.default_rng(gamma + 12)
    for spread in (0, 1, gamma):
        sa, xa = operands(rng, (8, 60), spread=spread, zeros=0.1)
        sb, xb = operands(rng, (60, 35), spread=spread, zeros=0.1)
        check_matmul(sa, xa, sb, xb, gamma, modes=("logadd",))


def test_matmul_exponents_too_wide_for_int32_lanes(simd):
    """Exponents near 2**30 (beyond the int32 logadd lanes, within the C
    kernels' bound) take the int64 paths."""
    rng = np.random.default_rng(13)
    for offset in (2**30, -2**30):
        sa, xa = operands(rng, (5, 30), spread=50, offset=offset)
        sb, xb = operands(rng, (30, 20), spread=50)
        check_matmul(sa, xa, sb, xb, 8)


@pytest.mark.parametrize("k", (1, 2, 3, 15, 16, 17, 255, 1000, 4096))
def test_matmul_inner_sizes(k):
    rng = np.random.default_rng(k)
    for gamma in (8, 64):
        sa, xa = operands(rng, (3, k), spread=10 * gamma)
        sb, xb = operands(rng, (k, 4), spread=10 * gamma)
        check_matmul(sa, xa, sb, xb, gamma, modes=("linear", "mitchell"))
    if k <= 1000:
        check_matmul(sa, xa, sb, xb, 8, modes=("logadd",))


def test_matmul_empty_shapes():
    rng = np.random.default_rng(7)
    for m, k, n in ((0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)):
        sa, xa = operands(rng, (m, k))
        sb, xb = operands(rng, (k, n))
        check_matmul(sa, xa, sb, xb, 8)
        check_matmul(sa, xa, sb, xb, 64)


def test_matmul_views_and_dtypes():
    rng = np.random.default_rng(8)
    sa, xa = operands(rng, (20, 30), exp_dtype=np.int32)
    sb, xb = operands(rng, (40, 20))
    check_matmul(sa.T, xa.T, sb[::2, ::2], xb[::2, ::2], 8)
    check_matmul(sa[::3], xa[::3], sb[:30, ::3], xb[:30, ::3], 64)


def test_matmul_batched(simd):
    rng = np.random.default_rng(9)
    sa, xa = operands(rng, (2, 1, 6, 9), spread=30)
    sb, xb = operands(rng, (3, 9, 5), spread=30)
    check_matmul(sa, xa, sb, xb, 8)
    check_matmul(sa, xa, sb, xb, 64)
    # many small products: one per thread (8 x 64*64*40 multiply-adds, past
    # the size below which the kernel keeps to the calling thread)
    sa, xa = operands(rng, (8, 64, 64), spread=30)
    sb, xb = operands(rng, (64, 40), spread=30)
    check_matmul(sa, xa, sb, xb, 8)
    check_matmul(sa, xa, sb[None], xb[None], 1024, modes=("linear",))


@pytest.mark.parametrize("gamma", (8, 16))
def test_matmul_long_sums_in_groups(gamma, simd):
    """A sum longer than one group of panels (FAST_GROUP_PANELS = 64 panels of 128/gamma
    products in native/accumulate.c) carries its partial sums from group to group: the same
    integers as the reference, on one thread or two, one product or a batch of them (each
    then on one thread), with wide ranges sending products through the unsafe path."""
    rng = np.random.default_rng(gamma + 11)
    k = 2 * 64 * (128 // gamma) + 37  # two whole groups and part of a third
    before = native.threads()
    try:
        for threads in (1, 2):
            native.set_threads(threads)
            for shape_a, n, octaves in (((5, k), 26, 3), ((40, k), 70, 40), ((4, 6, k), 20, 8)):
                sa, xa = operands(rng, shape_a, spread=octaves * gamma, zeros=0.1)
                sb, xb = operands(rng, (k, n), spread=octaves * gamma, zeros=0.1)
                check_matmul(sa, xa, sb, xb, gamma, modes=("linear", "mitchell"))
    finally:
        native.set_threads(before)


def test_matmul_threads_agree():
    rng = np.random.default_rng(10)
    sa, xa = eight_bit(rng, (70, 200))
    sb, xb = eight_bit(rng, (200, 90))
    t = tables_for(8)
    before = native.threads()
    try:
        results = []
        for count in (1, 2, 3):
            native.set_threads(count)
            results.append(native.matmul(sa, xa, sb, xb, t))
        for r in results[1:]:
            same(r, results[0])
    finally:
        native.set_threads(before)
    same(results[0], accumulate.matmul(sa, xa, sb, xb, t))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_matmul_property(data):
    gamma = data.draw(st.sampled_from((1, 2, 4, 8, 16, 32, 64, 1024)))
    m, k, n = (data.draw(st.integers(0, 24)) for _ in range(3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    octaves = data.draw(st.sampled_from((0, 2, 16, 45)))
    zeros = data.draw(st.sampled_from((0.0, 0.5, 1.0)))
    sa, xa = operands(rng, (m, k), spread=octaves * gamma, zeros=zeros, offset=data.draw(st.integers(-999, 999)))
    sb, xb = operands(rng, (k, n), spread=octaves * gamma, zeros=zeros, offset=data.draw(st.integers(-999, 999)))
    check_matmul(sa, xa, sb, xb, gamma, modes=("linear", "mitchell") if k > 12 else MODES)


def test_matmul_shape_errors_match_reference():
    t = tables_for(8)
    a = (np.ones((2, 3), np.int8), np.zeros((2, 3)))
    b = (np.ones((4, 5), np.int8), np.zeros((4, 5)))
    for fn in (native.matmul, accumulate.matmul):
        with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\)"):
            fn(*a, *b, t)
        with pytest.raises(ValueError, match="at least 2 dimensions"):
            fn(np.ones(3, np.int8), np.zeros(3), *b, t)
        with pytest.raises(ValueError, match="do not broadcast"):
            fn(np.ones((2, 2, 3), np.int8), np.zeros((2, 2, 3)),
               np.ones((3, 3, 4), np.int8), np.zeros((3, 3, 4)), t)
    with pytest.raises(ValueError, match="accumulation mode"):
        native.matmul(*a, np.ones((3, 2), np.int8), np.zeros((3, 2)), t, "kahan")


def test_matmul_reads_int32_exponents_without_a_copy():
    """Tensors hold int32 exponents, the width the C reductions read: a contiguous int32
    operand reaches the kernel as it is (int64 ones are narrowed, at half their size)."""
    rng = np.random.default_rng(12)
    t = tables_for(8)
    sa, xa = operands(rng, (4000, 48), spread=40, exp_dtype=np.int32)
    sb, xb = operands(rng, (48, 4), spread=40, exp_dtype=np.int32)
    native.matmul(sa, xa, sb, xb, t)  # the kept scratch is allocated once
    for exps, copied in ((xa, 0), (xa.astype(np.int64), xa.nbytes)):
        tracemalloc.start()
        try:
            result = native.matmul(sa, exps, sb, xb, t)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        outputs = sum(r.nbytes for r in result)
        assert copied <= peak - outputs < copied + xa.nbytes // 4, (peak, outputs)
        same(result, accumulate.matmul(sa, xa, sb, xb, t))


def test_matmul_huge_exponents_fall_back_to_reference():
    t = tables_for(8)
    sa, xa = np.ones((2, 3), np.int8), np.full((2, 3), 2**55)
    sb, xb = np.ones((3, 2), np.int8), np.full((3, 2), -2**55)
    same(native.matmul(sa, xa, sb, xb, t), accumulate.matmul(sa, xa, sb, xb, t))


def count_matmul_rows(monkeypatch) -> list[int]:
    """From now on, the row count of every lns_matmul call, in order."""
    calls = []
    real = native.lib

    class CountingLib:
        def __getattr__(self, name):
            if name == "lns_matmul":
                return lambda *args: calls.append(args[1]) or real.lns_matmul(*args)
            return getattr(real, name)

    monkeypatch.setattr(native, "lib", CountingLib())
    return calls


# Only the fast path (gamma <= 16, linear and mitchell) has scratch that grows with m.
@pytest.mark.parametrize("gamma", (1, 8, 16))
@pytest.mark.parametrize("mode", ("linear", "mitchell"))
def test_matmul_in_row_blocks_when_the_scratch_would_pass_its_budget(gamma, mode, monkeypatch):
    """A product whose scratch passes the budget runs in row blocks, with the same result."""
    rng = np.random.default_rng(gamma)
    m, k, n = 301, 40, 21
    sa, xa = operands(rng, (m, k), spread=20 * gamma)
    sb, xb = operands(rng, (k, n), spread=20 * gamma)
    real, c_tables = native.lib, native._c_tables(tables_for(gamma))

    def words(rows):
        return real.lns_matmul_scratch_words(1, rows, k, n, MODES.index(mode), c_tables, native.threads())

    # Row blocks pay off only where the rows' part of the scratch dominates: the wrapper splits
    # when B's part (the scratch of one row) is at most half the budget.
    budget = (words(m) + 2 * words(1)) // 2
    assert words(m) > budget >= 2 * words(1)
    monkeypatch.setattr(native, "SCRATCH_BUDGET_WORDS", budget)
    calls = count_matmul_rows(monkeypatch)
    same(native.matmul(sa, xa, sb, xb, tables_for(gamma), mode),
         accumulate.matmul(sa, xa, sb, xb, tables_for(gamma), mode))
    assert len(calls) > 1 and sum(calls) == m, calls
    assert words(calls[0]) <= budget


def test_matmul_not_split_where_b_fills_the_scratch(monkeypatch):
    """logadd's scratch is all B's (its exponents re-encoded): row blocks would each encode B
    again and shrink nothing, so the product runs whole even past the budget."""
    rng = np.random.default_rng(6)
    t = tables_for(8)
    sa, xa = operands(rng, (4, 3000), spread=40)
    sb, xb = operands(rng, (3000, 20), spread=40)
    c_tables = native._c_tables(t)
    logadd = MODES.index("logadd")
    words = native.lib.lns_matmul_scratch_words(1, 4, 3000, 20, logadd, c_tables, native.threads())
    assert 2 * native.lib.lns_matmul_scratch_words(1, 1, 3000, 20, logadd, c_tables, native.threads()) > words - 1
    monkeypatch.setattr(native, "SCRATCH_BUDGET_WORDS", words - 1)
    calls = count_matmul_rows(monkeypatch)
    same(native.matmul(sa, xa, sb, xb, t, "logadd"), accumulate.matmul(sa, xa, sb, xb, t, "logadd"))
    assert calls == [4]


def test_scratch_past_the_budget_is_not_kept(monkeypatch):
    """A product whose scratch no row block can shrink (few rows, a long sum) past the keep
    limit gets a buffer for that call only; the kept one stays within the limit."""
    rng = np.random.default_rng(5)
    t = tables_for(8)
    m = 2 * native.MIN_BLOCK_ROWS - 1  # too few rows for blocks
    sa, xa = operands(rng, (m, 3000), spread=40)
    sb, xb = operands(rng, (3000, 20), spread=40)
    words = native.lib.lns_matmul_scratch_words(1, m, 3000, 20, 0, native._c_tables(t), native.threads())
    monkeypatch.setattr(native, "SCRATCH_KEEP_WORDS", words // 2)
    monkeypatch.setattr(native, "_scratch", threading.local())
    same(native.matmul(sa, xa, sb, xb, t), accumulate.matmul(sa, xa, sb, xb, t))
    assert getattr(native._scratch, "buffer", None) is None
    small = operands(rng, (4, 4), spread=40)
    native.matmul(*small, *small, t)
    assert 0 < len(native._scratch.buffer) <= words // 2


def test_short_scratch_is_refused():
    """The kernel checks the scratch size it is given and writes nothing if short."""
    ffi, lib = native.ffi, native.lib
    c_tables = native._c_tables(tables_for(8))
    m = k = n = 8
    sa = np.ones(m * k, np.int8)
    xa = np.zeros(m * k, np.int32)
    out_s = np.full(m * n, 7, np.int8)
    out_x = np.full(m * n, 7, np.int64)
    words = lib.lns_matmul_scratch_words(1, m, k, n, 0, c_tables, 1)
    scratch = np.zeros(words - 1, np.int64)
    offsets = np.zeros(1, np.int64)
    status = lib.lns_matmul(1, m, k, n, ffi.from_buffer("int8_t[]", sa), ffi.from_buffer("int32_t[]", xa),
                            ffi.from_buffer("int64_t[]", offsets), ffi.from_buffer("int8_t[]", sa),
                            ffi.from_buffer("int32_t[]", xa), ffi.from_buffer("int64_t[]", offsets),
                            0, accumulate.left_margin(k), c_tables,
                            ffi.from_buffer("int64_t[]", scratch), len(scratch), 1,
                            ffi.from_buffer("int8_t[]", out_s), ffi.from_buffer("int64_t[]", out_x))
    assert status == -1
    assert (out_s == 7).all() and (out_x == 7).all()


# ---- dispatch ------------------------------------------------------------------------------

def test_dispatch_uses_native_unless_switched_off(monkeypatch):
    monkeypatch.setenv("LNSNET_NATIVE", "1")
    calls = []
    monkeypatch.setattr(native, "matmul", lambda *a, **k: calls.append(1) or accumulate.matmul(*a, **k))
    t = tables_for(8)
    args = (np.ones((2, 2), np.int8), np.zeros((2, 2)), np.ones((2, 2), np.int8), np.zeros((2, 2)), t)
    dispatched.matmul(*args)
    assert calls == [1]
    monkeypatch.setenv("LNSNET_NATIVE", "0")
    assert not native.enabled()
    dispatched.matmul(*args)
    assert calls == [1]


def test_simd_levels_reported():
    assert native.simd_level() in native.SIMD_LEVELS
    with pytest.raises(ValueError, match="SIMD level"):
        native.limit_simd("sse9")


def test_bench_table_and_json(capsys):
    """`lnsnet bench` runs its benchmarks and prints a table, or JSON."""
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    assert bench.run(parser.parse_args(["--only", "matmul", "--sizes", "24", "--repeat", "1"])) == 0
    out = capsys.readouterr().out
    assert "native/float32" in out and "linear" in out and "logadd" in out
    assert bench.run(parser.parse_args(["--only", "matmul", "--sizes", "24", "--repeat", "1", "--json",
                                        "--modes", "linear"])) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["results"]
    assert row["size"] == 24 and row["native"] > 0 and row["reference"] > 0 and row["ratio"] > 0

"""The NumPy reference kernels against the definitions in DESIGN.md.

These tests hold the references (lnsnet.kernels.*) to the contract; the C
kernels are held to the references by tests/test_native.py.  Expected values
are computed here independently, in float64 or pure-Python floats, never
from lnsnet's own tables.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lnsnet import LNSFormat
from lnsnet.kernels import accumulate, elementwise
from lnsnet.tables import MANT_BITS, PACK_BLOCK, POW2_BITS, PackedTable, tables_for

GAMMAS = (1, 8, 64, 1024)


def half_away(y: float) -> int:
    """Round to nearest, ties away from zero (the contract's table rounding)."""
    return int(math.copysign(math.floor(abs(y) + 0.5), y))


def ideal_correction(d: int, gamma: int, same_sign: bool) -> int:
    """Mark Arnold's xlns "ideal" addition at precision log2(gamma), in pure
    Python: round(gamma * log2(1 +- 2**(-d/gamma)))."""
    u = 2.0 ** (-d / gamma)
    return half_away(gamma * math.log2(1 + u if same_sign else 1 - u))


# ---- ⊕ and ⊖ against the definition ---------------------------------------------

@pytest.mark.parametrize("gamma", GAMMAS)
def test_gaussian_logs_every_d(gamma):
    """For every d in the table and past it: same signs give xm + SB[d],
    opposite signs xm + DB[d] with the larger operand's sign, d = 0 cancels.
    Checked twice: against the pure-Python formula, and against float64
    arithmetic on the decoded operands (2**(d/gamma) +- 1, rounded back)."""
    t = tables_for(gamma)
    d = np.concatenate([np.arange(len(t.sb) + 6), [10 * len(t.sb), 10**7]])
    x_small = np.full(d.shape, -37, dtype=np.int64)
    x_large = x_small + d
    for s_large, s_small in ((1, 1), (-1, -1), (1, -1), (-1, 1)):
        sa = np.full(d.shape, s_large, dtype=np.int8)
        sb = np.full(d.shape, s_small, dtype=np.int8)
        same_sign = s_large == s_small
        for operands in ((sa, x_large, sb, x_small), (sb, x_small, sa, x_large)):
            sign, exp = elementwise.add(*operands, t)
            for i, di in enumerate(d.tolist()):
                if not same_sign and di == 0:
                    assert sign[i] == 0 and exp[i] == 0
                    continue
                expected = -37 + di + ideal_correction(di, gamma, same_sign)
                assert sign[i] == s_large and exp[i] == expected, (gamma, di, s_large, s_small)
        # float64 on the decoded operands, for the d where 2**(d/gamma) is exact enough
        finite = d[d <= 40 * gamma]
        v = np.exp2(finite / gamma) + (1.0 if same_sign else -1.0)
        ok = v > 0
        want = np.floor(gamma * np.log2(v[ok]) + 0.5).astype(np.int64)  # ties: none within 1e-6
        sign, exp = elementwise.add(np.full(finite.shape, s_large, np.int8), finite,
                                    np.full(finite.shape, s_small, np.int8), np.zeros_like(finite), t)
        np.testing.assert_array_equal(exp[ok], want)


@pytest.mark.parametrize("gamma", GAMMAS + (4096, 65536))
def test_packed_tables_read_back_every_entry(gamma):
    """The packed SB and DB the C kernels read give every entry of the whole tables,
    and 0 past their end; a fine gamma's pair packs into under an eighth of its size."""
    t = tables_for(gamma)
    d = np.concatenate([np.arange(t.essential_zero + 3 * PACK_BLOCK), [10 * t.essential_zero, 2**62]])
    for packed, whole in ((t.sb_packed, t.sb), (t.db_packed, t.db)):
        expected = np.zeros(d.shape, np.int64)
        expected[:len(whole)] = whole
        np.testing.assert_array_equal(packed.at(d), expected)
    if gamma >= 4096:
        assert t.sb_packed.dense == gamma
        assert t.sb_packed.nbytes + t.db_packed.nbytes < (t.sb.nbytes + t.db.nbytes) / 8


def test_packing_refuses_a_table_that_jumps():
    """Past the whole entries a packed table moves one step per entry at most, in one direction."""
    with pytest.raises(ValueError, match="more than one step"):
        PackedTable(np.array([9, 7, 6, 6]), dense=0, step=-1, name="SB")
    with pytest.raises(ValueError, match="more than one step"):
        PackedTable(np.array([-5, -4, -5]), dense=1, step=+1, name="DB")
    np.testing.assert_array_equal(PackedTable(np.array([9, 8, 8, 7]), dense=1, step=-1, name="SB")
                                  .at(np.arange(6)), [9, 8, 8, 7, 0, 0])


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sub_is_add_of_the_negation(gamma):
    t = tables_for(gamma)
    d = np.arange(len(t.sb) + 3)
    for s in (1, -1):
        sa = np.full(d.shape, s, dtype=np.int8)
        got = elementwise.sub(sa, d, sa, np.zeros_like(d), t)
        want = elementwise.add(sa, d, -sa, np.zeros_like(d), t)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


lns_values = st.tuples(st.sampled_from([-1, 0, 1]), st.integers(-10**6, 10**6))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(GAMMAS), lns_values, lns_values)
def test_add_commutes(gamma, a, b):
    t = tables_for(gamma)
    ab = elementwise.add(a[0], a[1] if a[0] else 0, b[0], b[1] if b[0] else 0, t)
    ba = elementwise.add(b[0], b[1] if b[0] else 0, a[0], a[1] if a[0] else 0, t)
    assert (int(ab[0]), int(ab[1])) == (int(ba[0]), int(ba[1]))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(GAMMAS), lns_values)
def test_zero_is_neutral_and_x_minus_x_is_zero(gamma, a):
    t = tables_for(gamma)
    s, x = a[0], (a[1] if a[0] else 0)
    got = elementwise.add(s, x, 0, 0, t)
    assert (int(got[0]), int(got[1])) == (s, x)
    got = elementwise.sub(s, x, s, x, t)
    assert (int(got[0]), int(got[1])) == (0, 0)


# ---- the number format --------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.sampled_from((1, 8, 64, 1024, 2**16)),
       st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False),
       st.sampled_from([-1.0, 1.0]))
def test_encode_decode_round_trip_within_half_a_step(gamma, magnitude, sign):
    fmt = LNSFormat(16, gamma)
    s, x = fmt.encode(np.array([sign * magnitude]))
    back = fmt.decode(s, x)[0]
    assert np.sign(back) == sign
    # |log2 error| <= half a step 1/(2 gamma); the slack covers float64 log2/exp2
    assert abs(math.log2(abs(back)) - math.log2(magnitude)) <= 0.5 / gamma + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 16), st.sampled_from((1, 8, 64)),
       st.lists(st.integers(-10**5, 10**5), min_size=1, max_size=30),
       st.integers(-10**4, 10**4), st.sampled_from(("flush", "saturate")))
def test_requantize_saturates_instead_of_wrapping(bits, gamma, exps, t, underflow):
    fmt = LNSFormat(bits, gamma)
    given_x = np.array(exps, dtype=np.int64)
    s = np.where(np.arange(len(given_x)) % 3 == 0, -1, 1).astype(np.int8)
    qs, qx, qt = fmt.requantize(s, given_x, t=t, underflow=underflow)
    # exponents beyond twice the engine's limit are first clipped there (format.py)
    x = np.clip(given_x, -2 * fmt.limit, 2 * fmt.limit)
    # below the window, or below the engine's range (-limit) when that is higher
    low = max(qt - fmt.span, -fmt.limit)
    assert qt == min(max(t, -fmt.limit + fmt.span), fmt.limit)  # t itself stays in the engine's range
    above, below = x > qt, x < low
    np.testing.assert_array_equal(qx[above], qt)            # saturated, never wrapped
    inside = ~above & ~below
    np.testing.assert_array_equal(qx[inside], x[inside])
    if underflow == "flush":
        assert (qs[below] == 0).all() and (qx[below] == 0).all()
    else:
        assert (qs[below] == s[below]).all() and (qx[below] == low).all()
    nonzero = qs != 0
    assert ((qx[nonzero] >= low) & (qx[nonzero] <= qt)).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 16), st.sampled_from((1, 8, 64)),
       st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40))
def test_pack_unpack_round_trip(bits, gamma, values):
    fmt = LNSFormat(bits, gamma)
    s, x = fmt.encode(np.array(values))
    s, x, t = fmt.requantize(s, x)
    codes = fmt.pack(s, x, t)
    assert codes.dtype == (np.uint8 if bits <= 8 else np.uint16)
    s2, x2 = fmt.unpack(codes, t)
    np.testing.assert_array_equal(s2, s)
    np.testing.assert_array_equal(x2, x)


# ---- linear accumulation against the exact sum ---------------------------------------

def dot_error_bound(sa, xa, sb, xb, gamma) -> tuple[float, float]:
    """(exact sum S of the exact products, allowed |x/gamma - log2|S||).

    The products p_k = 2**((xa_k + xb_k)/gamma) are formed in float64 from the
    exact integer exponent sums and added with math.fsum (correctly rounded).
    The linear accumulator A * 2**e0 differs from S by
      - POW2 rounding: T[r] = round(2**(r/gamma) * 2**POW2_BITS) >= 2**POW2_BITS,
        so each term is off by at most 2**-(POW2_BITS+1) of itself;
      - truncation: each term is floored to the unit 2**e0
        (e0 = ((amax + bmax) >> f) - POW2_BITS - L), losing less than one unit;
      - float64: p_k and fsum carry at most 2**-50 of sum|p_k|.
    So with delta = (2**-25 * sum|p| + K * 2**e0 + 2**-50 * sum|p|) / |S|,
    log2|A 2**e0| is within -log2(1 - delta) of log2|S|.  Rounding A to the
    nearest step uses a mantissa of MANT_BITS bits and BOUND entries rounded
    to 2**-MANT_BITS: at most 2**-(MANT_BITS-2) more, relative.  The result
    is then within half a step, 0.5/gamma, plus those.
    """
    p = [float(a * b) * 2.0 ** ((int(u) + int(v)) / gamma) for a, u, b, v in zip(sa, xa, sb, xb)]
    exact = math.fsum(p)
    total = math.fsum(abs(q) for q in p)
    f = gamma.bit_length() - 1
    nonzero_a, nonzero_b = sa != 0, sb != 0
    if exact == 0 or not nonzero_a.any() or not nonzero_b.any():
        return exact, math.inf
    base = int(xa[nonzero_a].max()) + int(xb[nonzero_b].max())
    e0 = (base >> f) - POW2_BITS - accumulate.left_margin(len(sa))
    delta = (2.0 ** -(POW2_BITS + 1) * total + len(sa) * 2.0 ** e0 + 2.0 ** -50 * total) / abs(exact)
    if delta >= 0.5:  # cancellation ate the result: no claim
        return exact, math.inf
    return exact, 0.5 / gamma - math.log2(1 - delta) + math.log2(1 + 2.0 ** -(MANT_BITS - 2))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(GAMMAS), st.integers(1, 4096), st.integers(0, 2**32 - 1),
       st.sampled_from(("positive", "mixed")))
def test_linear_dot_within_half_a_step(gamma, k, seed, signs):
    rng = np.random.default_rng(seed)
    fmt = LNSFormat(8, gamma)
    a, b = rng.standard_normal(k), rng.standard_normal(k)
    if signs == "positive":
        a, b = np.abs(a), np.abs(b)
    sa, xa = fmt.encode(a)
    sb, xb = fmt.encode(b)
    sa, xa, _ = fmt.requantize(sa, xa)
    sb, xb, _ = fmt.requantize(sb, xb)
    s, x = accumulate.matmul(sa[None, :], xa[None, :], sb[:, None], xb[:, None], fmt.tables)
    exact, bound = dot_error_bound(sa, xa, sb, xb, gamma)
    assume(math.isfinite(bound))
    assert int(s[0, 0]) == np.sign(exact)
    assert abs(int(x[0, 0]) / gamma - math.log2(abs(exact))) <= bound
    if signs == "positive":
        assert bound < 0.5 / gamma + 1e-6  # no cancellation: the epsilon is negligible


@pytest.mark.parametrize("gamma", GAMMAS)
def test_linear_dot_of_equal_terms_is_exact_to_half_a_step(gamma):
    """K equal products sum to K * p: the result is round(gamma * log2(K p))."""
    t = tables_for(gamma)
    for k in (1, 2, 3, 7, 100, 4096):
        for xa, xb in ((0, 0), (5 * gamma + 3, -gamma + 1)):
            s, x = accumulate.matmul(np.ones((1, k), np.int8), np.full((1, k), xa),
                                     np.ones((k, 1), np.int8), np.full((k, 1), xb), t)
            want = xa + xb + half_away(gamma * math.log2(k))
            assert (int(s[0, 0]), int(x[0, 0])) == (1, want), (gamma, k)


# ---- bad input ---------------------------------------------------------------------------

def test_encode_names_count_and_first_bad_value():
    fmt = LNSFormat(8, 8)
    values = np.ones((3, 4))
    values[1, 2] = np.nan
    values[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite.*\(1, 2\)"):
        fmt.encode(values)


def test_add_shapes_that_do_not_broadcast_name_both():
    t = tables_for(8)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\).*do not broadcast"):
        elementwise.add(np.ones((2, 3), np.int8), np.zeros((2, 3)), np.ones(4, np.int8), np.zeros(4), t)


def test_matmul_inner_mismatch_names_both_shapes():
    t = tables_for(8)
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\)"):
        accumulate.matmul(np.ones((2, 3), np.int8), np.zeros((2, 3)),
                          np.ones((4, 5), np.int8), np.zeros((4, 5)), t)


@pytest.mark.parametrize("kwargs, named", [
    ({"gamma": 3}, "gamma=3"), ({"gamma": 0}, "gamma=0"), ({"gamma": 2**17}, "gamma=131072"),
    ({"bits": 1}, "bits=1"), ({"bits": 33}, "bits=33"), ({"bits": 8.0}, "8.0"),
    ({"gamma": True}, "True"), ({"bits": "8"}, "'8'"),
])
def test_bad_format_arguments(kwargs, named):
    with pytest.raises(ValueError, match=named):
        LNSFormat(**kwargs)

"""Fuzzing the kernels (lnsnet.kernels) and the C boundary (lnsnet.native).

Inputs come from where things break: random shapes that broadcast (empty
ones included), non-contiguous views (reversed, strided, Fortran-ordered,
stride-0 broadcasts), many dtypes, and exponents near +-format.limit, at the
int32 bounds and at +-2**50, where the native wrappers hand over to NumPy.

Every call into C goes through CheckedLib, a stand-in for lnsnet.native.lib
that asserts that each buffer holds exactly the elements the call's sizes
say the kernel reads or writes (and matmul's offsets stay inside their
operands), so no wrapper can hand C a buffer it would run past.

The native wrappers must return exactly what their NumPy references return
(values, dtypes, shapes), or both must raise a clear exception.  The
NumPy-only kernels must return int8 signs in {-1, 0, 1}, int64 exponents
that are 0 where the sign is, the exact integers their definitions give
(mul, div, square, sqrt, compare), and saturate or flush at the limit
(exp), never wrap.

Fuzz cases: 13 properties, 2,700 examples in all (the max_examples below).
"""
from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lnsnet import LNSFormat, kernels, native
from lnsnet.kernels import accumulate, elementwise, fixed, madam, quantize
from lnsnet.kernels.fixed import FIXED_CEIL_BITS
from lnsnet.kernels.softmax import LOSS_FRAC
from lnsnet.tables import tables_for

HEADER = Path(__file__).resolve().parents[1] / "native" / "lnsnet_native.h"
GAMMAS = (1, 8, 1024)
INT32 = np.iinfo(np.int32)
# What a kernel may raise on a bad input: a clear Python exception.
CLEAR_ERRORS = (ValueError, TypeError, ZeroDivisionError)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])
needs_native = pytest.mark.skipif(not native.available(), reason="the C extension is not built")


# ---- the C boundary ---------------------------------------------------------------------

def c_parameters() -> dict[str, list[str]]:
    """Parameter names of each function the header declares to cffi."""
    text = HEADER.read_text()
    block = text[text.index("/* CDEF BEGIN */"):text.index("/* CDEF END */")]
    block = re.sub(r"/\*.*?\*/", "", block, flags=re.S)
    functions = {}
    for name, params in re.findall(r"\b(lns_\w+)\s*\(([^)]*)\)\s*;", block):
        functions[name] = [re.findall(r"\w+", p)[-1] for p in params.split(",") if p.strip() != "void"]
    return functions


# The checks below: len() of a cffi buffer is its number of elements.

def _offsets_inside(offsets, span: int, operand_len: int) -> bool:
    values = np.frombuffer(native.ffi.buffer(offsets), dtype=np.int64)
    return span == 0 or bool(((values >= 0) & (values + span <= operand_len)).all())


def _check_add(a):
    n = a["n"]
    assert all(len(a[b]) == n for b in ("sa", "xa", "sb", "xb", "out_s", "out_x"))


def _check_to_fixed(a):
    assert all(len(a[b]) == a["n"] for b in ("s", "x", "out"))


def _check_from_fixed(a):
    assert all(len(a[b]) == a["n"] for b in ("value", "e0", "out_s", "out_x"))


def _check_sum(a):
    rows, k = a["rows"], a["k"]
    assert len(a["s"]) == len(a["x"]) == rows * k
    assert len(a["out_s"]) == len(a["out_x"]) == rows
    assert a["mode"] in (0, 1, 2)


def _check_matmul(a):
    batch, m, k, n = a["batch"], a["m"], a["k"], a["n"]
    assert len(a["a_offsets"]) == len(a["b_offsets"]) == batch
    assert len(a["sa"]) == len(a["xa"]) and len(a["sb"]) == len(a["xb"])
    assert _offsets_inside(a["a_offsets"], m * k, len(a["sa"]))
    assert _offsets_inside(a["b_offsets"], k * n, len(a["sb"]))
    assert len(a["out_s"]) == len(a["out_x"]) == batch * m * n
    assert len(a["scratch"]) >= a["scratch_words"] and a["threads"] >= 1
    assert a["mode"] in (0, 1, 2)


def _check_requantize(a):
    n = a["n"]
    outputs = [a[b] for b in ("out_s", "out_x") if b in a]
    assert all(len(b) == n for b in [a["s"], a["x"], *outputs])
    assert a["offset"] == native.ffi.NULL or len(a["offset"]) == n
    assert -62 <= a["q"].shift <= 62 and a["q"].far >= 0


def _check_madam(a):
    n = a["n"]
    names = [b for b in ("g_s", "g_x", "w_s", "w_x", "v_s", "v_x", "out_s", "out_x") if b in a]
    assert all(len(a[b]) == n for b in names)
    if "c" in a:
        assert 1 <= a["c"].shift <= 62
        assert a["offset"] == native.ffi.NULL or len(a["offset"]) == n


BOUNDARY_CHECKS = {"lns_add": _check_add, "lns_to_fixed": _check_to_fixed,
                   "lns_from_fixed": _check_from_fixed, "lns_sum": _check_sum,
                   "lns_matmul": _check_matmul,
                   "lns_madam_moment": _check_madam, "lns_madam_exponents": _check_madam,
                   **{f"lns_requantize{part}_{width}": _check_requantize
                      for part in ("", "_top") for width in ("i32", "i64")}}


class CheckedLib:
    """lnsnet.native.lib, with every kernel call's buffers checked against its sizes first."""

    def __init__(self, lib):
        self.lib = lib
        self.params = c_parameters()
        self.calls = Counter()
        missing = set(BOUNDARY_CHECKS) - set(self.params)
        assert not missing, f"the header no longer declares {missing}: update BOUNDARY_CHECKS"

    def __getattr__(self, name):
        real = getattr(self.lib, name)
        check = BOUNDARY_CHECKS.get(name)
        if check is None:
            return real

        def checked(*args):
            assert len(args) == len(self.params[name]), name
            arguments = dict(zip(self.params[name], args))
            if "t" in arguments:
                assert 0 <= arguments["t"].frac_bits <= 16
            check(arguments)
            self.calls[name] += 1
            return real(*args)

        return checked


@pytest.fixture
def checked_lib(monkeypatch):
    if not native.available():
        pytest.skip("the C extension is not built")
    lib = CheckedLib(native.lib)
    monkeypatch.setattr(native, "lib", lib)
    return lib


def same_or_both_refuse(run_native, run_reference):
    """The native result equals the reference's, or both raise a clear exception.
    Returns the hypothesis event: where the inputs went."""
    results = []
    for run in (run_native, run_reference):
        try:
            with warnings.catch_warnings():
                # NaN or complex inputs cast to integers warn; both sides cast alike
                warnings.simplefilter("ignore")
                results.append(run())
        except CLEAR_ERRORS as err:
            results.append(err)
    got, want = results
    if isinstance(want, Exception) or isinstance(got, Exception):
        assert isinstance(got, Exception) and isinstance(want, Exception), (got, want)
        return "both refused"
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_array_equal(g, w)
    return "equal"


# ---- inputs ---------------------------------------------------------------------------------

def int32_exponents(gamma: int):
    """Exponents an int32 array (a tensor's) can hold: near 0, anywhere within the limit,
    at +-limit and at the int32 bounds."""
    limit = 1000 * gamma
    return st.one_of(
        st.integers(-40, 40),
        st.integers(-limit, limit),
        st.integers(limit - 2, limit + 2),
        st.integers(-limit - 2, -limit + 2),
        st.sampled_from([INT32.min, INT32.min + 1, INT32.max - 1, INT32.max]),
    )


def exponents(gamma: int):
    """int32_exponents, and those at +-2**50 where the native wrappers hand over to NumPy."""
    return st.one_of(int32_exponents(gamma), st.sampled_from([
        native.EXP_BOUND - 1, native.EXP_BOUND, native.EXP_BOUND + 1,
        -native.EXP_BOUND - 1, -native.EXP_BOUND]))


EXP_DTYPES = [np.int64, np.int32, np.int16, np.uint32, np.uint64, np.float64]
SIGN_DTYPES = [np.int8, np.int16, np.int64, np.float32]


@st.composite
def layouts(draw, ndim: int):
    """A function giving an array's values (or a stride-0 broadcast of some) in a
    non-contiguous layout."""
    if ndim == 0:
        return lambda array: array
    kind = draw(st.sampled_from(["contiguous", "reversed", "strided", "fortran", "broadcast"]))
    axis = draw(st.integers(0, ndim - 1))

    def lay_out(array: np.ndarray) -> np.ndarray:
        if array.size == 0 or kind == "contiguous":
            return array
        if kind == "reversed":
            return np.flip(np.flip(array, axis).copy(), axis)
        if kind == "strided":
            return np.repeat(array, 2, axis=axis)[(slice(None),) * axis + (slice(None, None, 2),)]
        if kind == "fortran":
            return np.asfortranarray(array)
        return np.broadcast_to(np.take(array, [0], axis=axis), array.shape)

    return lay_out


def views(array: np.ndarray):
    return layouts(array.ndim).map(lambda lay_out: lay_out(array))


@st.composite
def operand(draw, shape, gamma: int, values=None, canonical: bool = False):
    """(sign, exponent) arrays of shape, in random dtypes (where the values fit) and layouts.
    The two get layouts of their own, so an exponent may be nonzero where its sign is 0,
    unless canonical."""
    sign = draw(hnp.arrays(np.int8, shape, elements=st.sampled_from([-1, 0, 1])))
    exp = draw(hnp.arrays(np.int64, shape, elements=values if values is not None else exponents(gamma)))
    exp = np.where(sign != 0, exp, 0)
    sign = sign.astype(draw(st.sampled_from(SIGN_DTYPES)))
    exp = _as_dtype(exp, draw(st.sampled_from(EXP_DTYPES)))
    if canonical:
        lay_out = draw(layouts(len(shape)))
        return lay_out(sign), lay_out(exp)
    return draw(views(sign)), draw(views(exp))


def _as_dtype(values: np.ndarray, dtype) -> np.ndarray:
    """values in dtype when every value fits exactly, else as they are (int64)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        fits = values.size == 0 or (values.min() >= info.min and values.max() <= info.max)
    else:
        fits = values.size == 0 or np.abs(values).max() < 2 ** 53
    return values.astype(dtype) if fits else values


shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


# ---- native wrappers against their references ---------------------------------------------------

@needs_native
@settings(FUZZ, max_examples=300)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS), op=st.sampled_from(["add", "sub"]))
def test_add_sub(checked_lib, data, gamma, op):
    tables = tables_for(gamma)
    shape_pair = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    sa, xa = data.draw(operand(shape_pair.input_shapes[0], gamma))
    sb, xb = data.draw(operand(shape_pair.input_shapes[1], gamma))
    event(same_or_both_refuse(lambda: getattr(native, op)(sa, xa, sb, xb, tables),
                              lambda: getattr(elementwise, op)(sa, xa, sb, xb, tables)))


@needs_native
@settings(FUZZ, max_examples=200)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS),
       frac=st.one_of(st.integers(-80, 80), st.sampled_from([native.FRAC_BOUND, native.FRAC_BOUND + 1])))
def test_to_fixed(checked_lib, data, gamma, frac):
    tables = tables_for(gamma)
    sign, exp = data.draw(operand(data.draw(shapes), gamma))
    event(same_or_both_refuse(lambda: native.to_fixed(sign, exp, frac, tables),
                              lambda: fixed.to_fixed(sign, exp, frac, tables)))


@needs_native
@settings(FUZZ, max_examples=200)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS))
def test_from_fixed(checked_lib, data, gamma):
    tables = tables_for(gamma)
    pair = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    int64 = np.iinfo(np.int64)
    value = data.draw(hnp.arrays(np.int64, pair.input_shapes[0], elements=st.one_of(
        st.integers(-1000, 1000), st.integers(int64.min, int64.max),
        st.sampled_from([int64.min, int64.max, 2 ** FIXED_CEIL_BITS - 1, 0]))))
    e0 = data.draw(hnp.arrays(np.int64, pair.input_shapes[1], elements=exponents(gamma)))
    value, e0 = data.draw(views(value)), data.draw(views(e0))
    event(same_or_both_refuse(lambda: native.from_fixed(value, e0, tables),
                              lambda: fixed.from_fixed(value, e0, tables)))


@needs_native
@settings(FUZZ, max_examples=250)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS), mode=st.sampled_from(accumulate.MODES))
def test_lns_sum(checked_lib, data, gamma, mode):
    tables = tables_for(gamma)
    shape = data.draw(shapes)
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))  # one out of range at each end
    sign, exp = data.draw(operand(shape, gamma))
    event(same_or_both_refuse(lambda: native.lns_sum(sign, exp, tables, axis=axis, mode=mode),
                              lambda: accumulate.lns_sum(sign, exp, tables, axis=axis, mode=mode)))


@needs_native
@settings(FUZZ, max_examples=250)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS), mode=st.sampled_from(accumulate.MODES),
       threads=st.integers(1, 3))
def test_matmul(checked_lib, data, gamma, mode, threads):
    tables = tables_for(gamma)
    batch = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    m, k, n = (data.draw(st.integers(0, 5)) for _ in range(3))
    k_b = k if data.draw(st.integers(0, 9)) else k + 1  # sometimes inner sizes differ
    a_shape = batch.input_shapes[0] + (m, k) if data.draw(st.booleans()) else (m, k)
    b_shape = batch.input_shapes[1] + (k_b, n) if data.draw(st.booleans()) else (k_b, n)
    sa, xa = data.draw(operand(a_shape, gamma))
    sb, xb = data.draw(operand(b_shape, gamma))
    before = native.threads()
    native.set_threads(threads)
    try:
        event(same_or_both_refuse(lambda: native.matmul(sa, xa, sb, xb, tables, mode),
                                  lambda: accumulate.matmul(sa, xa, sb, xb, tables, mode)))
    finally:
        native.set_threads(before)


@needs_native
@settings(FUZZ, max_examples=250)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS), bits=st.sampled_from([2, 5, 8, 12, 16, 32]),
       shift=st.integers(-4, 16), flush=st.booleans(), stochastic=st.booleans())
def test_requantize(checked_lib, data, gamma, bits, shift, flush, stochastic):
    fmt = LNSFormat(bits, gamma)
    sign, exp = data.draw(operand(data.draw(shapes), gamma))
    t = data.draw(st.one_of(st.none(), st.integers(-3 * fmt.limit, 3 * fmt.limit)))
    far = data.draw(st.sampled_from([2 * 1000 * (gamma << max(shift, 0)), 0, native.EXP_BOUND,
                                     native.EXP_BOUND + 1]))
    offset = None
    if stochastic and shift > 0:
        offset = data.draw(hnp.arrays(np.int64, np.shape(exp), elements=st.integers(0, (1 << shift) - 1)))
    kwargs = dict(far=far, shift=shift, t=t, span=fmt.span, limit=fmt.limit, flush=flush, offset=offset)
    def with_t_as_array(run):
        sign_out, exp_out, top = run(sign, exp, **kwargs)
        return sign_out, exp_out, np.array(top)

    event(same_or_both_refuse(lambda: with_t_as_array(native.requantize),
                              lambda: with_t_as_array(quantize.requantize)))


@needs_native
@settings(FUZZ, max_examples=200)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS + (65536,)), stochastic=st.booleans())
def test_madam_step(checked_lib, data, gamma, stochastic):
    """Both Madam passes; the moments' signs are never negative (they hold squares)."""
    tables = tables_for(gamma)
    shape = data.draw(shapes)
    g_sign, g_exp = data.draw(operand(shape, gamma))
    w_sign, w_exp = data.draw(operand(shape, gamma))
    v_sign, v_exp = data.draw(operand(shape, gamma))
    v_sign = np.abs(np.asarray(v_sign, dtype=np.int8))
    constant = st.one_of(st.integers(-4 * gamma, 4 * gamma), exponents(gamma))
    beta, one_minus = data.draw(constant), data.draw(constant)
    event(same_or_both_refuse(
        lambda: native.madam_moment(g_sign, g_exp, v_sign, v_exp, beta=beta, one_minus_beta=one_minus,
                                    tables=tables),
        lambda: madam.madam_moment(g_sign, g_exp, v_sign, v_exp, beta=beta, one_minus_beta=one_minus,
                                   tables=tables)))
    shift = data.draw(st.integers(1, 62))
    kwargs = dict(correction=data.draw(constant), bound=data.draw(constant), decay=data.draw(st.integers(0, 1 << 28)),
                  factor=data.draw(st.integers(0, (1 << 31) - 1)), shift=shift, x_max=data.draw(constant),
                  frac=data.draw(st.sampled_from([24, 0, -5, 40])), tables=tables)
    if stochastic:
        kwargs["offset"] = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, (1 << shift) - 1)))
    ops = (g_sign, g_exp, w_sign, w_exp, v_sign, v_exp)
    event(same_or_both_refuse(lambda: native.madam_exponents(*ops, **kwargs),
                              lambda: madam.madam_exponents(*ops, **kwargs)))


# Exponents in the wrong container: fractions, NaN and inf, complex, bools, uint64 past int64,
# objects, strings, lists and scalars.
ODD_EXPONENTS = [np.array([0.5, -1.5, 2.0]), np.array([np.nan, 1.0, np.inf]), np.array([1 + 2j, 3, 0]),
                 np.array([True, False, True]), np.array([2 ** 64 - 1, 0, 7], dtype=np.uint64),
                 np.array([1, None, 2], dtype=object), np.array(["1", "x", "2"]), [1, 0, -1], 3]
# Signs of valid values (-1, 0, 1) in the wrong container.  Values outside them are not
# defined for the kernels: the C and NumPy matmul disagree on a sign of 5.
ODD_SIGNS = [np.array([1.0, -1.0, 0.0]), np.array([True, False, True]),
             np.array([1, -1, 0], dtype=object), np.array(["1", "-1", "x"]), [1, 0, -1], -1,
             np.array([1, 0, 1], dtype=np.uint64)]


@needs_native
@settings(FUZZ, max_examples=150)
@given(data=st.data(), kernel=st.sampled_from(["add", "to_fixed", "from_fixed", "lns_sum", "matmul"]),
       slot=st.integers(0, 3))
def test_wrong_dtypes_are_converted_or_refused(checked_lib, data, kernel, slot):
    """Odd dtypes and containers in any operand: converted exactly as the reference converts
    them, or refused by both, and never passed raw to C."""
    tables = tables_for(8)
    args = [np.array([1, -1, 0], np.int8), np.array([3, -5, 0]), np.array([-1, 1, 1], np.int8),
            np.array([4, 9, 2])]
    args[slot] = data.draw(st.sampled_from(ODD_SIGNS if slot % 2 == 0 else ODD_EXPONENTS), label="odd")
    if kernel == "add":
        calls = [lambda: native.add(*args, tables), lambda: elementwise.add(*args, tables)]
    elif kernel == "to_fixed":
        calls = [lambda: native.to_fixed(args[slot & 2], args[slot | 1], 8, tables),
                 lambda: fixed.to_fixed(args[slot & 2], args[slot | 1], 8, tables)]
    elif kernel == "from_fixed":
        calls = [lambda: native.from_fixed(args[slot | 1], args[1], tables),
                 lambda: fixed.from_fixed(args[slot | 1], args[1], tables)]
    elif kernel == "lns_sum":
        calls = [lambda: native.lns_sum(args[slot & 2], args[slot | 1], tables),
                 lambda: accumulate.lns_sum(args[slot & 2], args[slot | 1], tables)]
    else:
        square = [np.resize(np.asarray(a), (3, 3)) if np.ndim(a) else a for a in args]
        calls = [lambda: native.matmul(*square, tables), lambda: accumulate.matmul(*square, tables)]
    event(same_or_both_refuse(*calls))


def test_matmul_fast_path_with_an_odd_inner_size():
    """Found by test_matmul: the C matmul for gamma 8 and 16 (its fast path) got 3 equal
    products wrong, sign included."""
    if not native.available():
        pytest.skip("the C extension is not built")
    tables = tables_for(8)
    ones = np.ones((1, 3), np.int8)
    want = accumulate.matmul(ones, np.full((1, 3), -1), ones.T, np.full((3, 1), -1), tables)
    assert want == (np.array([[1]], np.int8), np.array([[11]]))
    same_or_both_refuse(lambda: native.matmul(ones, np.full((1, 3), -1), ones.T, np.full((3, 1), -1), tables),
                        lambda: want)


def test_every_wrapper_reached_c(checked_lib):
    """The checks above are only worth something if the inputs reach C: one call each."""
    tables = tables_for(8)
    one = (np.array([[1]], np.int8), np.array([[2]]))
    native.add(*one, *one, tables)
    native.to_fixed(*one, 3, tables)
    native.from_fixed(np.array([5]), np.array([0]), tables)
    native.lns_sum(*one, tables)
    native.matmul(*one, *one, tables)
    native.madam_moment(*one, *one, beta=-1, one_minus_beta=-9, tables=tables)
    native.madam_exponents(*one, *one, *one, correction=0, bound=8, decay=0, factor=3, shift=4, x_max=9,
                           frac=24, tables=tables)
    for exp in (one[1], one[1].astype(np.int32)):
        native.requantize(one[0], exp, far=16000, shift=0, t=None, span=126, limit=8000, flush=True)
    assert set(checked_lib.calls) == set(BOUNDARY_CHECKS)


# ---- the NumPy-only kernels ----------------------------------------------------------------------

def _exact_exps(sign, exp) -> list:
    """Exponents as Python integers (no overflow), 0 where the sign is 0."""
    return [int(x) if int(s) != 0 else 0 for s, x in zip(np.ravel(sign), np.ravel(exp))]


def assert_lns(sign, exp, shape):
    assert sign.dtype == np.int8 and exp.dtype == np.int64
    assert sign.shape == exp.shape == shape
    assert np.isin(sign, (-1, 0, 1)).all()
    assert not exp[sign == 0].any()


@settings(FUZZ, max_examples=200)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS), op=st.sampled_from(["mul", "div", "square", "sqrt"]))
def test_exact_kernels_never_wrap(data, gamma, op):
    """mul, div, square and sqrt at the int32 bounds: exact Python-integer results."""
    pair = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    sa, xa = data.draw(operand(pair.input_shapes[0], gamma, int32_exponents(gamma), canonical=True))
    sb, xb = data.draw(operand(pair.input_shapes[1], gamma, int32_exponents(gamma), canonical=True))
    sa_b, xa_b, sb_b, xb_b = (np.asarray(v) for v in np.broadcast_arrays(sa, xa, sb, xb))
    if op in ("mul", "div"):
        if op == "div" and (np.asarray(sb_b) == 0).any():
            with pytest.raises(ZeroDivisionError, match="zero divisor"):
                kernels.div(sa, xa, sb, xb)
            return
        sign, exp = getattr(kernels, op)(sa, xa, sb, xb)
        step = 1 if op == "mul" else -1
        want = [a + step * b for a, b in zip(_exact_exps(sa_b, xa_b), _exact_exps(sb_b, xb_b))]
        want_sign = (sa_b.astype(np.int64) * sb_b.astype(np.int64)).ravel()
        shape = pair.result_shape
    else:
        if op == "sqrt" and (np.asarray(sa) < 0).any():
            with pytest.raises(ValueError, match="negative"):
                kernels.sqrt(sa, xa)
            return
        sign, exp = getattr(kernels, op)(sa, xa)
        xs = _exact_exps(sa, xa)
        want = [2 * x for x in xs] if op == "square" else [(x + 1) >> 1 for x in xs]
        want_sign = np.abs(np.asarray(sa).astype(np.int64)).ravel()
        shape = np.shape(sa)
    assert_lns(sign, exp, shape)
    assert sign.ravel().tolist() == want_sign.tolist()
    assert [int(x) if s else 0 for s, x in zip(sign.ravel(), exp.ravel())] == [
        x if s else 0 for s, x in zip(want_sign, want)]


def _order_key(sign, exp) -> list:
    """Values as sortable Python tuples: the sign first, then the signed exponent."""
    return [(int(s), int(s) * int(x)) for s, x in zip(np.ravel(sign), np.ravel(exp))]


@settings(FUZZ, max_examples=200)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS))
def test_ordering_kernels(data, gamma):
    """compare, maximum, argmax and max_along agree with exact ordering, even at the int32 bounds."""
    pair = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3,
                                                       min_side=1, max_side=4))
    sa, xa = data.draw(operand(pair.input_shapes[0], gamma, int32_exponents(gamma), canonical=True))
    sb, xb = data.draw(operand(pair.input_shapes[1], gamma, int32_exponents(gamma), canonical=True))
    ka = _order_key(*np.broadcast_arrays(sa, xa, sb, xb)[:2])
    kb = _order_key(*np.broadcast_arrays(sa, xa, sb, xb)[2:])
    got = kernels.compare_values(sa, xa, sb, xb)
    assert got.dtype == np.int8 and got.shape == pair.result_shape
    assert got.ravel().tolist() == [(a > b) - (a < b) for a, b in zip(ka, kb)]
    m_sign, m_exp = kernels.maximum(sa, xa, sb, xb)
    assert_lns(m_sign, m_exp, pair.result_shape)
    assert _order_key(m_sign, m_exp) == [max(a, b) for a, b in zip(ka, kb)]
    axis = data.draw(st.integers(-len(pair.input_shapes[0]), len(pair.input_shapes[0]) - 1))
    index = kernels.argmax(sa, xa, axis=axis)
    s, x, index_again = kernels.max_along(sa, xa, axis=axis)
    assert np.array_equal(index, index_again)
    moved_s = np.moveaxis(np.asarray(sa), axis, -1)
    moved_x = np.moveaxis(np.asarray(xa), axis, -1)
    for where in np.ndindex(moved_s.shape[:-1]):
        keys = _order_key(moved_s[where], moved_x[where])
        assert int(index[where]) == keys.index(max(keys))   # the first of equal largest
        assert _order_key(s[where], x[where]) == [max(keys)]


@settings(FUZZ, max_examples=200)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS))
def test_exp_saturates_or_flushes(data, gamma):
    """e**v: within one step of the float value, saturating at +limit and flushing to zero
    below -limit, never wrapping, even for |v| far past float range."""
    tables, limit = tables_for(gamma), 1000 * gamma
    sign, exp = data.draw(operand(data.draw(shapes), gamma, int32_exponents(gamma), canonical=True))
    got_sign, got_exp = kernels.exp(sign, exp, tables, limit)
    assert_lns(got_sign, got_exp, np.shape(sign))
    assert (got_sign >= 0).all() and (np.abs(got_exp) <= limit).all()
    for s, x, gs, gx in zip(np.ravel(sign), np.ravel(exp), got_sign.ravel(), got_exp.ravel()):
        s, x = int(s), int(x)
        if s != 0 and x / gamma > 12:       # |v| > 4096: e**v is past any limit
            assert (gs, gx) == ((1, limit) if s > 0 else (0, 0))
            continue
        ideal = gamma * math.log2(math.e) * (s * 2.0 ** (x / gamma) if s else 0.0)
        if ideal > limit + 1:
            assert (gs, gx) == (1, limit)
        elif ideal < -limit - 1:
            assert gs == 0
        elif -limit + 1 < ideal < limit - 1:
            assert gs == 1 and abs(gx - ideal) <= 1


@settings(FUZZ, max_examples=150)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS))
def test_log(data, gamma):
    """ln v within one step, and a clear error for values that are not positive."""
    tables = tables_for(gamma)
    sign, exp = data.draw(operand(data.draw(shapes), gamma, int32_exponents(gamma), canonical=True))
    if (np.asarray(sign) <= 0).any():
        with pytest.raises(ValueError, match="not positive"):
            kernels.log(sign, exp, tables)
        return
    got_sign, got_exp = kernels.log(sign, exp, tables)
    assert_lns(got_sign, got_exp, np.shape(sign))
    for x, gs, gx in zip(np.ravel(exp), got_sign.ravel(), got_exp.ravel()):
        ln_v = int(x) / gamma * math.log(2)
        assert gs == np.sign(ln_v)
        if gs:
            assert abs(gx - gamma * math.log2(abs(ln_v))) <= 1


@settings(FUZZ, max_examples=150)
@given(data=st.data(), gamma=st.sampled_from(GAMMAS), inner_gamma=st.sampled_from([8, 1024]),
       mode=st.sampled_from(accumulate.MODES))
def test_softmax_cross_entropy(data, gamma, inner_gamma, mode):
    """Loss >= 0 and close to the float loss; softmax - onehot holds values in [-1, 1]; logits
    at the int32 bounds saturate instead of wrapping."""
    tables, inner = tables_for(gamma), tables_for(inner_gamma)
    rows, classes = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 5))
    sign, exp = data.draw(operand((rows, classes), gamma, int32_exponents(gamma), canonical=True))
    labels = np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=rows, max_size=rows)))
    loss, g_sign, g_exp = kernels.softmax_cross_entropy(sign, exp, labels, tables, inner,
                                                         1000 * inner_gamma, mode)
    assert loss.dtype == np.int64 and loss.shape == (rows,) and (loss >= 0).all()
    assert_lns(g_sign, g_exp, (rows, classes))
    assert (g_exp[g_sign != 0] <= 1).all()      # |softmax - onehot| <= 1, within a rounding step
    with np.errstate(over="ignore"):   # logits at the int32 bounds decode to inf
        logits = np.asarray(sign, dtype=np.float64) * np.exp2(np.asarray(exp, dtype=np.float64) / gamma)
    if np.abs(logits).max() < 50 and mode != "mitchell":   # Mitchell's sums are off by up to 6%
        shifted = logits - logits.max(axis=1, keepdims=True)
        want = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(rows), labels]
        tolerance = 2 * classes * math.log(2) / inner_gamma + 1e-3
        np.testing.assert_allclose(loss / 2.0 ** LOSS_FRAC, want, atol=tolerance)

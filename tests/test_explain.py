"""lnsnet explain: the parser, the walk-throughs (held to the kernels), and the command."""
import argparse
import re

import numpy as np
import pytest

from lnsnet import explain, kernels
from lnsnet.format import LNSFormat
from lnsnet.scalar import LNS

F8 = LNSFormat(8, 8)


def run_command(argv):
    parser = argparse.ArgumentParser()
    explain.configure(parser)
    return explain.run(parser.parse_args(argv))


# ---- parsing ---------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("3.14", explain.Number(3.14)),
    ("-2", explain.Number(-2.0)),
    ("1e-3", explain.Number(0.001)),
    (".5", explain.Number(0.5)),
    ("2.5 + 0.3", explain.Binary(2.5, "+", 0.3)),
    ("2.5 - -0.3", explain.Binary(2.5, "-", -0.3)),
    ("-2.5*4", explain.Binary(-2.5, "*", 4.0)),
    ("7 / -2", explain.Binary(7.0, "/", -2.0)),
    ("2 − 1", explain.Binary(2.0, "-", 1.0)),
    ("[1.5, -2, 0.25] . [3, 0.5, 8]", explain.Dot([1.5, -2.0, 0.25], [3.0, 0.5, 8.0])),
    ("[1,2]@[3,4]", explain.Dot([1.0, 2.0], [3.0, 4.0])),
    ("[1.] · [2.]", explain.Dot([1.0], [2.0])),
])
def test_parse(text, expected):
    assert explain.parse(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "nothing to explain"),
    ("abc", "cannot read 'abc'"),
    ("nan", "NaN and infinity"),
    ("inf + 1", "NaN and infinity"),
    ("1e999", "too large"),
    ("2 +", "expected a number"),
    ("2 + 3 + 4", "unexpected '+'"),
    ("2 ^ 3", "cannot read '^'"),
    ("__import__('os')", "cannot read"),
    ("[1, 2] . [1]", "different lengths"),
    ("[1, 2]", "dot product operator"),
    ("[1, 2,] . [1, 2]", "expected a number"),
    ("[" + ",".join(["1"] * 17) + "] . [" + ",".join(["1"] * 17) + "]", "too long"),
])
def test_parse_errors(text, message):
    with pytest.raises(explain.ExplainError, match=re.escape(message)):
        explain.parse(text)


# ---- one number ----------------------------------------------------------------------
def test_number_walkthrough():
    text = explain.explain("3.14", F8)
    assert "x = round(8 * log2(3.14)) = round(13.2061) = 13" in text
    assert "t = 15" in text                            # the top of 13's octave
    assert "m = x - t + M = 13 - (15) + 127 = 125" in text
    assert "0 1111101 = 0x7d" in text
    assert "+2^(13/8) = 3.08442" in text
    assert "-1.77%" in text
    assert "+2^(12/8) = 2.82843 (code 0 1111100 = 0x7c)" in text
    assert "+2^(14/8) = 3.36359 (code 0 1111110 = 0x7e)" in text


def test_number_code_is_the_formats_pack():
    for value in (3.14, -0.001, 1.0, 200.0, -7e-5):
        s, x = F8.encode([value])
        t = explain.default_scale(int(x[0]), 8)
        code = int(F8.pack(s, x, t)[0])
        assert explain.code_bits(code, 8) in explain.explain(str(value), F8)


def test_number_given_scale_saturates_and_flushes():
    above = explain.explain("3", F8, scale=-200)
    assert "saturates to -200" in above
    below = explain.explain("3", F8, scale=500)
    assert "flushes to zero" in below


def test_zero_and_tiny_numbers():
    assert "zero is its own code" in explain.explain("0", F8)
    assert "becomes exactly 0" in explain.explain("1e-320", F8)
    assert "saturated" in explain.explain("1e305", F8)


# ---- one operation ----------------------------------------------------------------------
def test_addition_walkthrough():
    text = explain.explain("2.5 + 0.3", F8)
    assert "x_a = 11" in text and "x_b = -14" in text
    assert "d = |11 - (-14)| = 25" in text
    assert "SB[25] = round(8 * log2(1 + 2^(-25/8))) = round(1.2525) = 1" in text
    assert "x = 11 + (1) = 12, sign +1" in text
    assert "result     +2^(12/8) = 2.82843" in text
    assert "2.5 + 0.3 = 2.8: error +1.015%" in text
    assert LNS(2.5) + LNS(0.3) == LNS.from_parts(1, 12)


def test_subtraction_uses_db_and_cancels():
    text = explain.explain("2.5 - 0.3", F8)
    assert "a ⊕ (-b)" in text and "DB[25]" in text and "x = 11 + (-1) = 10" in text
    assert "cancel exactly" in explain.explain("2.5 - 2.5", F8)


def test_past_the_essential_zero():
    assert "past the essential zero" in explain.explain("1 + 1e-9", F8)


def test_multiply_and_divide_are_exact():
    product = explain.explain("-3 * 0.25", F8)
    assert "x = x_a + x_b = 13 + (-16) = -3" in product and "-2^(-3/8)" in product
    quotient = explain.explain("7 / -2", F8)
    assert "x = x_a - x_b = 22 - (8) = 14" in quotient and "-2^(14/8)" in quotient
    with pytest.raises(explain.ExplainError, match="division by zero"):
        explain.explain("1 / 0", F8)


def last_x(lines):
    """(x, sign) from the final 'x = ... = X, sign S' line of a walk."""
    match = re.search(r"= (-?\d+), sign ([+-]\d)$", lines[-1])
    return int(match.group(1)), int(match.group(2))


def test_oplus_steps_agree_with_the_kernel():
    rng = np.random.default_rng(0)
    tables = F8.tables
    for _ in range(300):
        sa, sb = rng.choice([-1, 1], 2)
        xa = int(rng.integers(-60, 60))
        xb = xa + int(rng.integers(-45, 45))
        lines = explain.oplus_steps(int(sa), xa, int(sb), xb, tables)
        s, x = kernels.add(sa, xa, sb, xb, tables)
        if int(s) == 0:
            assert "cancel exactly" in lines[-1]
        else:
            assert last_x(lines) == (int(x), int(s))


# ---- dot products ---------------------------------------------------------------------
def random_products(rng, k):
    sign = rng.choice([-1, 0, 1, 1], size=k).astype(np.int8)
    exp = rng.integers(-80, 80, size=k) + (rng.integers(0, 3) * 40)
    exp = np.where(sign != 0, exp, 0)
    return sign, exp


@pytest.mark.parametrize("mode", ["linear", "mitchell"])
def test_linear_walk_agrees_with_lns_sum(mode):
    rng = np.random.default_rng(1)
    for k in list(range(1, 17)) * 6:
        ps, px = random_products(rng, k)
        if rng.random() < 0.1:                      # an exact cancellation
            ps, px = np.array([1, -1], np.int8), np.array([5, 5])
        _, s, x = explain.linear_walk(ps, px, F8.tables, mode)
        ks, kx = kernels.lns_sum(ps, px, F8.tables, mode=mode)
        assert (s, x if s else 0) == (int(ks), int(kx)), (mode, ps, px)


def test_logadd_walk_agrees_with_lns_sum():
    rng = np.random.default_rng(2)
    for k in range(1, 17):
        ps, px = random_products(rng, k)
        _, s, x = explain.logadd_walk(ps, px, F8.tables)
        ks, kx = kernels.lns_sum(ps, px, F8.tables, mode="logadd")
        assert (s, x) == (int(ks), int(kx))


def test_dot_product_walkthrough():
    text = explain.explain("[1.5, -2, 0.25] . [3, 0.5, 8]", F8)
    for mode in ("linear accumulation", "mitchell accumulation", "logadd accumulation"):
        assert mode in text
    assert "exact dot product 5.5" in text
    assert "POW2[r] = round(2^(r/8) * 2^24)" in text
    assert "leading one at bit n = 60" in text and "LOG2[7] = 4" in text
    assert "DB[18]" in text and "SB[7]" in text    # the logadd chain
    assert re.search(r"linear\s+\+2\^\(20/8\)", text)
    assert re.search(r"mitchell\s+\+2\^\(21/8\)", text)


def test_dot_product_one_mode():
    text = explain.explain("[1, 2] . [3, 4]", F8, modes=("logadd",))
    assert "logadd" in text and "linear accumulation" not in text


# ---- the command ----------------------------------------------------------------------
def test_command_prints_and_succeeds(capsys):
    assert run_command(["2.5", "+", "0.3"]) == 0
    assert "SB[25]" in capsys.readouterr().out
    assert run_command(["3.14", "--bits", "6", "--gamma", "4"]) == 0
    assert "6-bit LNS, gamma = 4" in capsys.readouterr().out
    assert run_command(["[1, 2] . [3, 4]", "--mode", "mitchell"]) == 0
    assert "mitchell" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["2 +"], "expected a number"),
    (["1 / 0"], "division by zero"),
    (["3", "--gamma", "3"], "power of two"),
    (["3", "--bits", "1"], "out of range"),
])
def test_command_bad_input_exits_2(argv, message, capsys):
    assert run_command(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lnsnet explain: ") and message in err


def test_through_the_lnsnet_command(capsys):
    from lnsnet import cli
    try:
        parser = cli.build_parser()
    except ImportError as error:
        pytest.skip(f"not every subcommand exists yet: {error}")
    args = parser.parse_args(["explain", "2.5", "*", "4"])
    assert args.run(args) == 0
    assert "x = x_a + x_b" in capsys.readouterr().out

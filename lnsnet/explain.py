"""`lnsnet explain`: show, step by step, how a number or an operation is done in LNS.

    lnsnet explain 3.14 --bits 8 --gamma 8      a number: exponent, code, error, neighbours
    lnsnet explain "2.5 + 0.3"                  + - * / : exponents, d, the SB/DB entry, error
    lnsnet explain "[1.5, -2, 0.25] . [3, 0.5, 8]"   a dot product in each accumulation mode

The expression is read by a small tokenizer and parser (no eval): decimal
numbers, the operators + - * /, and two bracketed lists joined by '.', '@'
or '·'.  Results come from lnsnet.kernels (through lnsnet.LNS for one
operation); the walk-through beside them recomputes the intermediate
integers from the same tables so a reader can follow every step, and the
tests hold the two to the same answer.
"""
from __future__ import annotations

import math
import re
import sys
from typing import NamedTuple

import numpy as np

from lnsnet import kernels
from lnsnet.format import LNSFormat
from lnsnet.kernels.accumulate import MODES, left_margin
from lnsnet.scalar import LNS
from lnsnet.tables import MANT_BITS, POW2_BITS, Tables

# Longer dot products stop being readable as a walk-through.
MAX_DOT_TERMS = 16
DOT_OPERATORS = (".", "@", "·")
BINARY_OPERATORS = ("+", "-", "*", "/")


class ExplainError(ValueError):
    """Input that lnsnet explain cannot explain; the message says why."""


# ---- reading the expression ---------------------------------------------------
class Number(NamedTuple):
    value: float


class Binary(NamedTuple):
    left: float
    op: str
    right: float


class Dot(NamedTuple):
    left: list
    right: list


_TOKEN = re.compile(r"\s*(?:(?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)"
                    r"|(?P<symbol>[-+*/\[\],.@·]))")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) triples; kind is 'number' or the symbol itself."""
    tokens, pos = [], 0
    text = text.replace("−", "-").replace("×", "*").rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            start = len(text) - len(text[pos:].lstrip())
            word = text[start:].split()[0]
            raise ExplainError(
                f"cannot read {word!r} at position {start}: expected a decimal number, one of "
                f"+ - * /, or a bracketed list (NaN and infinity have no LNS code)")
        word = match.group(match.lastgroup)
        kind = "number" if match.lastgroup == "number" else word
        tokens.append((kind, word, match.start(match.lastgroup)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def where(self) -> str:
        if self.at < len(self.tokens):
            kind, word, pos = self.tokens[self.at]
            return f"{word!r} at position {pos}"
        return "the end of the input"

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            expected = "a number" if kind == "number" else repr(kind)
            raise ExplainError(f"expected {expected} but found {self.where()} in {self.text!r}")
        word = self.tokens[self.at][1]
        self.at += 1
        return word

    def number(self) -> float:
        negative = False
        while self.peek() in ("+", "-"):
            negative ^= self.take(self.peek()) == "-"
        word = self.take("number")
        value = float(word)
        if not math.isfinite(value):
            raise ExplainError(f"{word} is too large for a float64 (LNS has no infinity)")
        return -value if negative else value

    def vector(self) -> list:
        self.take("[")
        values = [self.number()]
        while self.peek() == ",":
            self.take(",")
            values.append(self.number())
        self.take("]")
        return values

    def expression(self):
        if not self.tokens:
            raise ExplainError("nothing to explain: give a number, an operation or a dot product")
        if self.peek() == "[":
            left = self.vector()
            if self.peek() not in DOT_OPERATORS:
                raise ExplainError(f"expected a dot product operator ('.', '@' or '·') after "
                                   f"the first list but found {self.where()}")
            self.take(self.peek())
            result = Dot(left, self.vector())
        else:
            left = self.number()
            if self.peek() in BINARY_OPERATORS:
                op = self.take(self.peek())
                result = Binary(left, op, self.number())
            else:
                result = Number(left)
        if self.peek() is not None:
            raise ExplainError(f"unexpected {self.where()}: explain takes one number, one "
                               f"operation (a + b, a - b, a * b, a / b) or one dot product")
        return result


def parse(text: str):
    """Number, Binary or Dot from an expression; ExplainError on anything else."""
    result = _Parser(text).expression()
    if isinstance(result, Dot):
        if len(result.left) != len(result.right):
            raise ExplainError(f"the two lists have different lengths "
                               f"({len(result.left)} and {len(result.right)})")
        if len(result.left) > MAX_DOT_TERMS:
            raise ExplainError(f"{len(result.left)} terms is too long to walk through; "
                               f"at most {MAX_DOT_TERMS}")
    return result


# ---- formatting ----------------------------------------------------------------
def power(sign: int, exp: int, gamma: int) -> str:
    """'+2^(13/8)', or '0'."""
    if sign == 0:
        return "0"
    return f"{'-' if sign < 0 else '+'}2^({exp}/{gamma})"


def relative(approx: float, exact: float) -> str:
    if exact == 0:
        return "exact" if approx == 0 else f"{approx:+.6g} where the exact value is 0"
    return f"{(approx - exact) / abs(exact) * 100:+.4g}%"


def in_steps(approx: float, exact: float, gamma: int) -> str:
    """The error in LNS steps (gamma * log2 of the ratio), when that has a meaning."""
    if approx == 0 or exact == 0 or (approx > 0) != (exact > 0):
        return ""
    return f" ({gamma * math.log2(approx / exact):+.3f} LNS steps)"


def code_bits(code: int, bits: int) -> str:
    """'0 1111101 = 0x7d': sign bit, magnitude field, hex."""
    magnitude = code & ((1 << (bits - 1)) - 1)
    return f"{code >> (bits - 1)} {magnitude:0{bits - 1}b} = 0x{code:0{(bits + 3) // 4}x}"


def _scalar(x) -> int:
    return int(np.asarray(x).reshape(-1)[0])


# ---- one number ------------------------------------------------------------------
def default_scale(exp: int, gamma: int) -> int:
    """The top exponent of exp's octave: the window then ends just below a power of two."""
    return exp | (gamma - 1)


def explain_number(value: float, fmt: LNSFormat, scale: int | None = None) -> list[str]:
    g, span = fmt.gamma, fmt.span
    step = 2.0 ** (1.0 / g)
    lines = [f"{value:g} in {fmt.bits}-bit LNS, gamma = {g}: value = sign * 2^(x/{g}); one step "
             f"of x multiplies by 2^(1/{g}) = {step:.6g}"]
    s, x = (_scalar(a) for a in fmt.encode([value]))
    if value == 0:
        lines.append("  sign       0: zero is its own code (magnitude field m = 0) and has no exponent")
    elif s == 0:
        lines.append(f"  sign       {value:g} is below 2^-{fmt.limit // g}, the smallest magnitude the "
                     f"engine holds: it becomes exactly 0")
    else:
        scaled = g * math.log2(abs(value))
        lines.append(f"  sign       {s:+d}")
        note = ""
        if abs(scaled) > fmt.limit + 0.5:
            note = f"  (beyond the engine's limit 2^±{fmt.limit // g}: saturated)"
        lines.append(f"  exponent   x = round({g} * log2({abs(value):g})) = round({scaled:.4f}) = {x}{note}")

    wanted = default_scale(x, g) if scale is None else int(scale)
    qs, qx, t = fmt.requantize([s], [x], t=wanted)
    qs, qx = _scalar(qs), _scalar(qx)
    low = t - span
    if scale is None:
        how = f"the top of x's octave (x | {g - 1}), so the window ends just below 2^{(t + 1) // g}"
    elif t != wanted:
        how = f"{wanted} given, kept within the engine's limit"
    else:
        how = "as given"
    lines.append(f"  scale      t = {t}: {how}")
    lines.append(f"             a tensor of {fmt.bits}-bit codes with scale t holds 0 and ±2^({low}/{g}) = "
                 f"{2.0 ** (low / g):.4g} .. ±2^({t}/{g}) = {2.0 ** (t / g):.4g} ({span + 1} magnitudes)")
    if s != 0 and qs == 0:
        lines.append(f"             x = {x} is below t - {span} = {low}: it flushes to zero (activations "
                     f"and gradients; a weight would saturate to {low})")
    elif s != 0 and qx != x:
        lines.append(f"             x = {x} is above t = {t}: it saturates to {t}")

    decoded = float(fmt.decode(qs, qx))
    lines.append(f"  decoded    {power(qs, qx, g)} = {decoded:.6g}")
    if value != 0:
        lines.append(f"  rel. error {relative(decoded, value)}  (rounding in the log domain is off by "
                     f"at most half a step: 2^(1/{2 * g}) - 1 = {(2.0 ** (0.5 / g) - 1) * 100:.3g}%)")
    code = int(fmt.pack([qs], [qx], t)[0])
    if qs == 0:
        lines.append(f"  code       m = 0 -> {code_bits(code, fmt.bits)}")
        smallest = 2.0 ** (low / g)
        lines.append(f"  neighbours -{smallest:.6g} and +{smallest:.6g} (±2^({low}/{g}), the window's "
                     f"smallest magnitude, codes {code_bits(int(fmt.pack([-1], [low], t)[0]), fmt.bits)} "
                     f"and {code_bits(int(fmt.pack([1], [low], t)[0]), fmt.bits)})")
        return lines
    m = qx - t + fmt.max_code
    lines.append(f"  code       m = x - t + M = {qx} - ({t}) + {fmt.max_code} = {m}; sign bit "
                 f"{int(qs < 0)} -> {code_bits(code, fmt.bits)}")
    below_x, above_x = qx - 1, qx + 1
    if below_x >= low:
        below = (f"{power(qs, below_x, g)} = {float(fmt.decode(qs, below_x)):.6g} "
                 f"(code {code_bits(int(fmt.pack([qs], [below_x], t)[0]), fmt.bits)})")
    else:
        below = "0 (x - 1 is below the window)"
    if above_x <= t:
        above = (f"{power(qs, above_x, g)} = {float(fmt.decode(qs, above_x)):.6g} "
                 f"(code {code_bits(int(fmt.pack([qs], [above_x], t)[0]), fmt.bits)})")
    else:
        above = f"none with this t (x = t is the window's top; 2^({above_x}/{g}) needs t >= {above_x})"
    lines.append(f"  neighbours smaller magnitude: {below}")
    lines.append(f"             larger magnitude:  {above}")
    lines.append(f"             each {(step - 1) * 100:.3g}% from the next: the relative spacing is "
                 f"the same at every magnitude")
    return lines


# ---- one operation ---------------------------------------------------------------
def oplus_steps(sa: int, xa: int, sb: int, xb: int, tables: Tables, indent: str = "  ") -> list[str]:
    """The ⊕ of (sa, xa) and (sb, xb), written out: d, the table entry, the new exponent."""
    g = tables.gamma
    if sa == 0 or sb == 0:
        return [f"{indent}one operand is zero: a ⊕ 0 = a, no table needed"]
    same = sa == sb
    name, table = ("SB", tables.sb) if same else ("DB", tables.db)
    d = abs(xa - xb)
    xm = max(xa, xb)
    lines = [f"{indent}{'same' if same else 'opposite'} signs: x = max(x_a, x_b) + {name}[d], "
             f"with the sign of the larger magnitude",
             f"{indent}d = |{xa} - ({xb})| = {d}"]
    if not same and d == 0:
        lines.append(f"{indent}equal magnitudes, opposite signs: they cancel exactly, the result is 0")
        return lines
    if d < len(table):
        entry = int(table[d])
        exact = g * math.log2(1 + (1 if same else -1) * 2.0 ** (-d / g))
        lines.append(f"{indent}{name}[{d}] = round({g} * log2(1 {'+' if same else '-'} 2^(-{d}/{g}))) = "
                     f"round({exact:.4f}) = {entry}")
    else:
        entry = 0
        lines.append(f"{indent}d >= {len(table)}, past the essential zero where the tables end: "
                     f"{name}[d] = 0 (the smaller operand is below half a step of the larger)")
    sign = sa if xa >= xb else sb
    lines.append(f"{indent}x = {xm} + ({entry}) = {xm + entry}, sign {sign:+d}")
    return lines


def explain_binary(left: float, op: str, right: float, fmt: LNSFormat) -> list[str]:
    g = fmt.gamma
    a, b = LNS(left, fmt), LNS(right, fmt)
    lines = [f"{left:g} {op} {right:g} in {fmt.bits}-bit LNS, gamma = {g}"]
    for name, raw, num in (("a", left, a), ("b", right, b)):
        lines.append(f"  {name} = {raw:g} -> {power(num.sign, num.exp, g)} = {float(num):.6g}  "
                     f"(x_{name} = {num.exp}, encoding error {relative(float(num), raw)})")
    if op in "+-":
        if op == "-":
            lines.append("  a - b = a ⊕ (-b): flip the sign of b and add")
        sb = b.sign if op == "+" else -b.sign
        lines += oplus_steps(a.sign, a.exp, sb, b.exp, fmt.tables)
        result = a + b if op == "+" else a - b
        exact, encoded = (left + right, float(a) + float(b)) if op == "+" else \
            (left - right, float(a) - float(b))
    elif op == "*":
        result = a * b
        lines.append(f"  multiply: sign = ({a.sign:+d}) * ({b.sign:+d}) = {a.sign * b.sign:+d}, "
                     f"x = x_a + x_b = {a.exp} + ({b.exp}) = {a.exp + b.exp}: an integer add, exact")
        exact, encoded = left * right, float(a) * float(b)
    else:
        if b.sign == 0:
            raise ExplainError("division by zero: LNS has no infinity")
        result = a / b
        lines.append(f"  divide: sign = ({a.sign:+d}) * ({b.sign:+d}) = {a.sign * b.sign:+d}, "
                     f"x = x_a - x_b = {a.exp} - ({b.exp}) = {a.exp - b.exp}: an integer subtract, exact")
        exact, encoded = left / right, float(a) / float(b)
    value = float(result)
    lines.append(f"  result     {power(result.sign, result.exp, g)} = {value:.6g}")
    lines.append(f"  exact      {left:g} {op} {right:g} = {exact:.6g}: error {relative(value, exact)}"
                 f"{in_steps(value, exact, g)}")
    if op in "+-" and value == encoded:
        lines.append("             the ⊕ itself was exact here: all the error is the operands' encoding")
    elif op in "+-":
        lines.append(f"             of the encoded operands it is {encoded:.6g}: the table's rounding "
                     f"moved it by {relative(value, encoded)}{in_steps(value, encoded, g)}; the rest is "
                     f"the operands' encoding")
    else:
        lines.append("             the operation itself is exact in LNS: all the error is the "
                     "operands' encoding")
    return lines


# ---- a dot product ---------------------------------------------------------------
def linear_walk(ps, px, tables: Tables, mode: str, indent: str = "    ") -> tuple[list[str], int, int]:
    """The linear (or Mitchell) accumulation of products (ps, px), step by step.

    Returns the lines and the (sign, exponent) the walk arrives at, which the
    tests hold equal to kernels.lns_sum.
    """
    g, f = tables.gamma, tables.frac_bits
    ps = [int(v) for v in ps]
    px = [int(v) for v in px]
    if mode == "mitchell":
        table, name = tables.mitchell, "MITCHELL"
        lines = [f"{indent}MITCHELL[r] = (1 + r/{g}) * 2^{POW2_BITS}: Mitchell's straight line instead "
                 f"of 2^(r/{g}), so no table is needed in hardware (the wiring does it)"]
    else:
        table, name = tables.pow2, "POW2"
        lines = [f"{indent}POW2[r] = round(2^(r/{g}) * 2^{POW2_BITS}), a table of {g} entries"]
    live = [i for i, s in enumerate(ps) if s != 0]
    if not live:
        lines.append(f"{indent}every product is zero: the sum is 0")
        return lines, 0, 0
    margin = left_margin(len(ps))
    base = max(px[i] for i in live)
    qb = base >> f
    e0 = qb - POW2_BITS - margin
    lines += [
        f"{indent}split each product exponent p = {g}q + r: q = p >> {f} (the octave: a shift), "
        f"r = p & {g - 1} (the table index)",
        f"{indent}align to the largest product P = {base}: qb = P >> {f} = {qb}; a left margin "
        f"L = 63 - {POW2_BITS + 1} - bits(K={len(ps)}) = {margin} keeps the sum inside int64",
        f"{indent}term = ±({name}[r] << L) >> (qb - q), in units of 2^{e0}",
        f"{indent}{'i':>3} {'p':>6} {'q':>5} {'r':>3} {name + '[r]':>12} {'shift':>6} {'term':>22}",
    ]
    acc = 0
    for i in range(len(ps)):
        if ps[i] == 0:
            lines.append(f"{indent}{i:>3} {'zero product: no term':>56}")
            continue
        q, r = px[i] >> f, px[i] & (g - 1)
        shift = qb - q
        term = ps[i] * ((int(table[r]) << margin) >> min(shift, 63))
        acc += term
        lines.append(f"{indent}{i:>3} {px[i]:>6} {q:>5} {r:>3} {int(table[r]):>12} {shift:>6} {term:>22}")
    lines.append(f"{indent}accumulator = {acc} (= {acc * 2.0 ** e0:.6g})")
    if acc == 0:
        lines.append(f"{indent}the terms cancel exactly: the sum is 0")
        return lines, 0, 0
    mag = abs(acc)
    n = mag.bit_length() - 1
    mant = mag << (MANT_BITS - n) if n <= MANT_BITS else mag >> (n - MANT_BITS)
    bucket = (mant >> (MANT_BITS - f - 1)) & ((1 << (f + 1)) - 1)
    k0 = int(tables.log2[bucket])
    lines.append(f"{indent}leading one at bit n = {n}: the octave is n + ({e0}) = {n + e0}")
    lines.append(f"{indent}the next {f + 1} bits after it are {bucket:0{f + 1}b}: LOG2[{bucket}] = {k0}")
    if k0 < g:
        bump = mant >= int(tables.bound[k0])
        k = k0 + bump
        lines.append(f"{indent}one comparison with BOUND[{k0}] = 2^(({k0} + 0.5)/{g}) (the rounding "
                     f"boundary): the mantissa is {'at or above' if bump else 'below'} it, so k = {k}")
    else:
        k = k0
        lines.append(f"{indent}k = {g}: the sum rounds up to the next octave")
    sign = 1 if acc > 0 else -1
    exp = (n + e0) * g + k
    lines.append(f"{indent}x = (octave) * {g} + k = {n + e0} * {g} + {k} = {exp}, sign {sign:+d}")
    return lines, sign, exp


def logadd_walk(ps, px, tables: Tables, indent: str = "    ") -> tuple[list[str], int, int]:
    """The ⊕ chain over the products in index order; returns lines and (sign, exponent)."""
    lines = [f"{indent}acc = 0; then acc = acc ⊕ p_i for i = 0, 1, ... (each step one table read)"]
    acc_s, acc_x = 0, 0
    for i, (s, x) in enumerate(zip(ps, px)):
        s, x = int(s), int(x)
        lines.append(f"{indent}step {i}: acc = {power(acc_s, acc_x, tables.gamma)} ⊕ "
                     f"p_{i} = {power(s, x, tables.gamma)}")
        lines += oplus_steps(acc_s, acc_x, s, x, tables, indent + "  ")
        new_s, new_x = kernels.add([acc_s], [acc_x], [s], [x], tables)
        acc_s, acc_x = _scalar(new_s), _scalar(new_x)
    return lines, acc_s, acc_x


def explain_dot(left: list, right: list, fmt: LNSFormat, modes=MODES) -> list[str]:
    g, tables = fmt.gamma, fmt.tables
    sa, xa = fmt.encode(left)
    sb, xb = fmt.encode(right)
    ps, px = kernels.mul(sa, xa, sb, xb)
    exact = math.fsum(a * b for a, b in zip(left, right))
    encoded = math.fsum(float(v) for v in fmt.decode(ps, px))
    lines = [f"{_vector(left)} . {_vector(right)} in {fmt.bits}-bit LNS, gamma = {g}",
             "  each product is exact in LNS: p = x_a + x_b, sign = s_a * s_b",
             f"  {'i':>3} {'a':>10} {'x_a':>6} {'b':>10} {'x_b':>6} {'product':>16} {'value':>12}"]
    for i in range(len(left)):
        lines.append(f"  {i:>3} {left[i]:>10g} {_scalar(xa[i]) if sa[i] else '-':>6} {right[i]:>10g} "
                     f"{_scalar(xb[i]) if sb[i] else '-':>6} {power(_scalar(ps[i]), _scalar(px[i]), g):>16} "
                     f"{float(fmt.decode(ps[i], px[i])):>12.6g}")
    lines.append(f"  exact dot product {exact:.6g}; of the encoded inputs {encoded:.6g}")
    results = []
    for mode in modes:
        kernels.check_mode(mode)
        title = {"linear": "linear accumulation (the default, as in the LNS-Madam hardware)",
                 "mitchell": "mitchell accumulation (linear, with Mitchell's approximation)",
                 "logadd": "logadd accumulation (pure LNS: a chain of ⊕, the classic LNS MAC)"}[mode]
        lines.append("")
        lines.append(f"  {title}")
        if mode == "logadd":
            walk, _, _ = logadd_walk(ps, px, tables)
        else:
            walk, _, _ = linear_walk(ps, px, tables, mode)
        lines += walk
        rs, rx = (_scalar(v) for v in kernels.lns_sum(ps, px, tables, mode=mode))
        value = float(fmt.decode(rs, rx))
        lines.append(f"    result {power(rs, rx, g)} = {value:.6g}: error {relative(value, exact)}"
                     f"{in_steps(value, exact, g)} against the exact dot product, "
                     f"{relative(value, encoded)} against that of the encoded inputs")
        results.append((mode, rs, rx, value))
    if len(results) > 1:
        lines.append("")
        lines.append(f"  {'mode':<10} {'result':>12} {'value':>12} {'error':>10}")
        for mode, rs, rx, value in results:
            lines.append(f"  {mode:<10} {power(rs, rx, g):>12} {value:>12.6g} {relative(value, exact):>10}")
    return lines


def _vector(values: list) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


# ---- entry points ----------------------------------------------------------------
def explain(text: str, fmt: LNSFormat = LNSFormat(8, 8), modes=MODES, scale: int | None = None) -> str:
    """The explanation of an expression as text; ExplainError on bad input."""
    parsed = parse(text)
    if isinstance(parsed, Number):
        lines = explain_number(parsed.value, fmt, scale)
    elif isinstance(parsed, Binary):
        lines = explain_binary(parsed.left, parsed.op, parsed.right, fmt)
    else:
        lines = explain_dot(parsed.left, parsed.right, fmt, modes)
    return "\n".join(lines)


def configure(parser):
    parser.add_argument("expression", nargs="+",
                        help='a number ("3.14"), an operation ("2.5 + 0.3"; + - * /) or a dot product '
                             '("[1.5, -2, 0.25] . [3, 0.5, 8]"); put -- before one that starts with -')
    parser.add_argument("--bits", type=int, default=8, help="bits per value (default 8)")
    parser.add_argument("--gamma", type=int, default=8,
                        help="exponent steps per octave, a power of two (default 8)")
    parser.add_argument("--mode", choices=MODES + ("all",), default="all",
                        help="accumulation mode(s) for a dot product (default: all three)")
    parser.add_argument("--scale", type=int, default=None,
                        help="the scale exponent t for a number's code (default: the top of its octave)")


def run(args) -> int:
    try:
        fmt = LNSFormat(args.bits, args.gamma)
        modes = MODES if args.mode == "all" else (args.mode,)
        print(explain(" ".join(args.expression), fmt, modes, args.scale))
    except (ExplainError, ValueError) as error:
        print(f"lnsnet explain: {error}", file=sys.stderr)
        return 2
    return 0

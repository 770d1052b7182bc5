"""A tour of the logarithmic number system (LNS) as lnsnet does it.  Read top to bottom.

    python demos/lns_tour.py [OUTPUT_DIR]      (figures go to OUTPUT_DIR, default .)

1. a number is a sign and an integer exponent
2. the tables: SB and DB for addition, POW2 and LOG2 for dot products
3. adding and subtracting (⊕, ⊖) through the tables
4. a dot product, summed three ways
5. how much a value moves when it is encoded, at 8 and at 16 bits
"""
import sys
from pathlib import Path

import numpy as np

from lnsnet import kernels, plots
from lnsnet.explain import explain, oplus_steps
from lnsnet.format import LNSFormat
from lnsnet.scalar import LNS

out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
out_dir.mkdir(parents=True, exist_ok=True)
fmt = LNSFormat(bits=8, gamma=8)
g = fmt.gamma


def section(title):
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}")


# ---- 1. a number -----------------------------------------------------------------
section("1. A number is a sign and an integer exponent: v = s * 2^(x/gamma)")
print(f"gamma = {g}: the exponent counts steps of 2^(1/{g}) = {2 ** (1 / g):.5f}, "
      f"so every value is {100 * (2 ** (1 / g) - 1):.2f}% from its neighbours.")
for value in (1.0, 3.14, -0.001, 1000.0):
    number = LNS(value, fmt)
    print(f"  {value:>8g} -> sign {number.sign:+d}, x = {number.exp:>4} -> decodes to {float(number):.6g}")
print("\nThe whole story of one number (what `lnsnet explain 3.14` prints):")
print(explain("3.14", fmt))

# ---- 2. the tables -----------------------------------------------------------------
section("2. The tables (ROMs), built once per gamma")
tables = fmt.tables
print(f"SB[d] = round({g}*log2(1 + 2^(-d/{g}))), added to the larger exponent when signs agree:")
print("  ", tables.sb.tolist())
print(f"DB[d] = round({g}*log2(1 - 2^(-d/{g}))), when they differ (d = 0 cancels to exactly 0):")
print("  ", tables.db.tolist())
print(f"Both end at the essential zero d = {tables.essential_zero}: past it the smaller operand is "
      f"lost.")
print(f"POW2[r] = round(2^(r/{g}) * 2^24), exponent to fixed point:", tables.pow2.tolist())
print(f"LOG2[j], fixed point back to an exponent (the next {tables.frac_bits + 1} bits after the "
      f"leading one):", tables.log2.tolist())
plots.gaussian_logs_figure(g, path=out_dir / "lns_tour_tables.png")
print(f"(figure: {out_dir / 'lns_tour_tables.png'})")

# ---- 3. adding and subtracting -----------------------------------------------------
section("3. Adding and subtracting: x = max(xa, xb) + SB[d] or DB[d], d = |xa - xb|")
for a, b in ((2.5, 0.3), (2.5, -0.3), (1.0, 1.0), (100.0, 0.01)):
    A, B = LNS(a, fmt), LNS(b, fmt)
    total = A + B
    print(f"\n{a:g} + ({b:g}):  a = {A}, b = {B}")
    print("\n".join(oplus_steps(A.sign, A.exp, B.sign, B.exp, tables, indent="    ")))
    print(f"    = {total} = {float(total):.6g}   (exact {a + b:.6g}, "
          f"{100 * (float(total) - (a + b)) / abs(a + b):+.2f}%)")
print("\nMultiplying is adding exponents, exact:",
      f"{LNS(2.5, fmt)} * {LNS(0.3, fmt)} = {LNS(2.5, fmt) * LNS(0.3, fmt)}")

# ---- 4. a dot product -----------------------------------------------------------------
section("4. A dot product, summed three ways")
rng = np.random.default_rng(0)
a_values = rng.normal(size=64)
b_values = rng.normal(size=64)
sa, xa = fmt.encode(a_values)
sb, xb = fmt.encode(b_values)
ps, px = kernels.mul(sa, xa, sb, xb)            # exact products
exact = float(a_values @ b_values)
print(f"64 random products; exact dot product {exact:.6f}")
for mode, how in (("linear", "each product to fixed point by POW2, summed in an integer"),
                  ("mitchell", "the same with 2^(r/gamma) ~ 1 + r/gamma, no table"),
                  ("logadd", "a chain of 63 ⊕, rounding at every step")):
    s, x = kernels.lns_sum(ps, px, tables, mode=mode)
    value = float(fmt.decode(s, x))
    print(f"  {mode:<9} {value:>10.6f}  error {100 * (value - exact) / abs(exact):+6.2f}%   ({how})")
print("\nThe same, step by step, for three terms (`lnsnet explain \"[...] . [...]\" --mode linear`):")
print(explain("[1.5, -2, 0.25] . [3, 0.5, 8]", fmt, modes=("linear",)))

# ---- 5. quantization error ---------------------------------------------------------------
section("5. Quantization error: how far encoding moves a value")
values = 2.0 ** rng.uniform(-10, 10, size=100_000)
for bits, gamma in ((8, 8), (16, 1024)):
    f = LNSFormat(bits, gamma)
    decoded = f.decode(*f.encode(values))
    error = np.abs(decoded / values - 1)
    print(f"  {bits:>2} bits, gamma {gamma:>4}: mean relative error {100 * error.mean():.4f}%, "
          f"worst {100 * error.max():.4f}% (half a step: {100 * (2 ** (0.5 / gamma) - 1):.4f}%)")
print("The error is the same at every magnitude: LNS spacing is relative, like a float's, "
      "but without the saw-tooth.")
plots.number_formats_figure(fmt, path=out_dir / "lns_tour_formats.png")
print(f"(figure: {out_dir / 'lns_tour_formats.png'}: 8-bit LNS beside int8, fp8 E4M3, bfloat16)")

"""The kernels, each dispatched to its C twin (lnsnet.native) when that is
enabled, else to its NumPy reference in this package.

The NumPy references are the definition: the C kernels must give the same
integers, bit for bit (tests/test_native.py).
"""
from __future__ import annotations

import functools

from lnsnet import native
from lnsnet.kernels import accumulate, compare, elementwise, fixed, madam, quantize, softmax, transcend
from lnsnet.kernels.accumulate import MODES, check_mode


def _dispatch(reference):
    """Run native.<name> when the C kernels are enabled and define it, else the reference."""
    name = reference.__name__

    @functools.wraps(reference)
    def run(*args, **kwargs):
        impl = getattr(native, name, None) if native.enabled() else None
        return (impl or reference)(*args, **kwargs)

    return run


mul = elementwise.mul
div = elementwise.div
square = elementwise.square
sqrt = elementwise.sqrt
add = _dispatch(elementwise.add)
sub = _dispatch(elementwise.sub)
lns_sum = _dispatch(accumulate.lns_sum)
matmul = _dispatch(accumulate.matmul)
to_fixed = _dispatch(fixed.to_fixed)
from_fixed = _dispatch(fixed.from_fixed)
requantize = _dispatch(quantize.requantize)
madam_moment = _dispatch(madam.madam_moment)
madam_exponents = _dispatch(madam.madam_exponents)
compare_values = compare.compare
maximum = compare.maximum
argmax = compare.argmax
max_along = compare.max_along
exp = transcend.exp
exp_of_fixed = transcend.exp_of_fixed
log = transcend.log
softmax_cross_entropy = softmax.softmax_cross_entropy

__all__ = [
    "MODES", "check_mode", "mul", "div", "square", "sqrt", "add", "sub", "lns_sum", "matmul",
    "to_fixed", "from_fixed", "requantize", "madam_moment", "madam_exponents", "compare_values",
    "maximum", "argmax", "max_along", "exp", "exp_of_fixed", "log", "softmax_cross_entropy",
]

"""Precision per role: the formats and the accumulation mode a computation runs at.

A `Precision` names three things (DESIGN.md section 4):

- forward     the format of weights as the layers see them and of every
              activation (default 8-bit, gamma 8);
- backward    the format of errors and weight gradients (default the same);
- accumulate  how reductions sum: "linear", "logadd" or "mitchell".

One precision is active at a time.  A Precision is a context manager, so
    with lnsnet.precision(forward=LNSFormat(6, 8)):
        loss = model(x)
runs that forward pass at 6 bits, and a model may carry its own
(`model.precision = lnsnet.precision(...)`), entered on every call.  A sweep
over bit widths is then one loop.

Where each role applies: an op's result keeps the format of its inputs
(which must share one), so the forward format enters at the boundaries: in
`lnsnet.tensor()` (the default encoding), and in the layers, which cast
their input to it and view their weights in it.  Every gradient an op
produces is quantized to the backward format.  An op records the precision
in effect when it runs, so its backward pass uses the same one even when
`backward()` is called after the `with` block has ended.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lnsnet.format import LNSFormat
from lnsnet.kernels import check_mode


@dataclass(frozen=True)
class Precision:
    forward: LNSFormat = field(default_factory=lambda: LNSFormat(8, 8))
    backward: LNSFormat = field(default_factory=lambda: LNSFormat(8, 8))
    accumulate: str = "linear"

    def __post_init__(self):
        for role in ("forward", "backward"):
            fmt = getattr(self, role)
            if not isinstance(fmt, LNSFormat):
                raise ValueError(f"Precision: {role} must be an LNSFormat, got {fmt!r}")
        check_mode(self.accumulate)

    def __enter__(self) -> Precision:
        _active.append(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _active.pop()


# The innermost active precision is last; the first entry is the default.
_active: list[Precision] = [Precision()]


def current() -> Precision:
    """The precision in effect here."""
    return _active[-1]


def precision(forward: LNSFormat | None = None, backward: LNSFormat | None = None,
              accumulate: str | None = None) -> Precision:
    """A Precision; each role not given keeps its value from the one in effect now."""
    now = current()
    return Precision(forward=forward if forward is not None else now.forward,
                     backward=backward if backward is not None else now.backward,
                     accumulate=accumulate if accumulate is not None else now.accumulate)

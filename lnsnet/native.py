"""The one module that imports the compiled C extension (lnsnet._native_c).

Everything else calls the kernels through lnsnet.kernels, which asks
`enabled()` whether to use C or the NumPy references.  LNSNET_NATIVE=0 forces
the references.
"""
from __future__ import annotations

import os

try:
    from lnsnet._native_c import ffi, lib
except ImportError:  # not compiled: the NumPy references take over
    ffi = lib = None


def available() -> bool:
    """True when the C extension was built and imports."""
    return lib is not None


def enabled() -> bool:
    """True when kernels run in C: built, and not switched off by LNSNET_NATIVE=0."""
    return available() and os.environ.get("LNSNET_NATIVE", "1") != "0"

"""lnsnet: a NumPy deep-learning engine whose tensors are signs plus integer log-exponents."""
from lnsnet.format import LNSFormat
from lnsnet.native import available as native_available, enabled as native_enabled
from lnsnet.precision import Precision, precision
from lnsnet.tensor import Tensor, no_grad, tensor
from lnsnet import nn, ops
from lnsnet.ops import cross_entropy
from lnsnet.scalar import LNS

__all__ = [
    "LNSFormat", "native_available", "native_enabled", "Precision", "precision", "Tensor", "tensor",
    "no_grad", "nn", "ops", "cross_entropy", "LNS",
]
__version__ = "0.1.0"

"""reshape, flatten and transpose: the values move, none changes, so no rounding."""
from __future__ import annotations

import numpy as np

from lnsnet.tensor import Function, Tensor


class Reshape(Function):
    def forward(self, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        self.in_shape = x.shape
        try:
            sign = x.sign.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {x.shape} into {tuple(shape)}") from None
        return Tensor(sign, x.exp.reshape(shape), x.fmt, x.scale)

    def backward(self, g: Tensor):
        moved = Tensor(g.sign.reshape(self.in_shape), g.exp.reshape(self.in_shape), g.fmt, g.scale)
        return (self.as_gradient(moved),)


class Transpose(Function):
    def forward(self, x: Tensor, axes: tuple[int, ...]) -> Tensor:
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {tuple(axes)} are not a permutation for shape {x.shape}")
        self.inverse = tuple(int(i) for i in np.argsort(axes))
        return Tensor(np.transpose(x.sign, axes), np.transpose(x.exp, axes), x.fmt, x.scale)

    def backward(self, g: Tensor):
        moved = Tensor(np.transpose(g.sign, self.inverse), np.transpose(g.exp, self.inverse), g.fmt, g.scale)
        return (self.as_gradient(moved),)


def reshape(x: Tensor, *shape) -> Tensor:
    """x.reshape(2, 3) or x.reshape((2, 3)); one size may be -1."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return Reshape.apply(x, shape=tuple(int(n) for n in shape))


def flatten(x: Tensor, start_dim: int = 0) -> Tensor:
    """Merge the axes from start_dim on into one (start_dim=1 keeps the batch axis)."""
    return reshape(x, x.shape[:start_dim] + (-1,))


def transpose(x: Tensor, *axes) -> Tensor:
    """Permute the axes (default: reverse them)."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = axes[0]
    return Transpose.apply(x, axes=tuple(int(a) for a in axes) or tuple(reversed(range(x.ndim))))

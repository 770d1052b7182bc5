"""The LNS tensor and the autograd engine that differentiates through it.

A Tensor is a sign array (int8), an exponent array (int32) written in its
format `fmt`, and the scale exponent t of that format's B-bit window
(DESIGN.md section 1).  There is no float copy: `numpy()` decodes on demand,
at the float boundary.

An op is a `Function` subclass (lnsnet/ops/): its `forward(*inputs, **options)`
returns the result Tensor and keeps what the backward pass needs on `self`;
its `backward(grad)` returns one gradient (or None) per Tensor input.
`Function.apply` runs the forward pass and, when gradients are wanted, links
the result to the op.  `Tensor.backward()` walks that graph in reverse
topological order, found iteratively so that a chain of any length works,
and unlinks each op once its gradients are out, which frees the graph.
"""
from __future__ import annotations

import numpy as np

from lnsnet import kernels
from lnsnet.format import EXP_DTYPE, SIGN_DTYPE, LNSFormat, rescale
from lnsnet.precision import Precision, current
from lnsnet.tables import tables_for

# Innermost last: whether ops record the graph.
_grad_modes: list[bool] = [True]


class no_grad:
    """Context manager: ops inside build no graph (for evaluation)."""

    def __enter__(self) -> no_grad:
        _grad_modes.append(False)
        return self

    def __exit__(self, *exc_info) -> None:
        _grad_modes.pop()


def grad_enabled() -> bool:
    return _grad_modes[-1]


def _integer_array(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"Tensor: {name} must be an integer array, got dtype {array.dtype}")
    return array


class Tensor:
    """Sign, exponent and format: one LNS array, possibly part of a graph."""

    def __init__(self, sign, exp, fmt: LNSFormat, scale: int | None = None,
                 requires_grad: bool = False):
        """Wrap exponents already in fmt (see `quantize` for arbitrary ones).

        scale: the tensor's t; by default the largest exponent present.
        """
        if not isinstance(fmt, LNSFormat):
            raise ValueError(f"Tensor: fmt must be an LNSFormat, got {fmt!r}")
        sign = _integer_array("sign", sign)
        exp = _integer_array("exp", exp)
        if sign.shape != exp.shape:
            raise ValueError(f"Tensor: sign shape {sign.shape} != exponent shape {exp.shape}")
        if exp.dtype != EXP_DTYPE and exp.size and (exp.min() < -fmt.limit or exp.max() > fmt.limit):
            raise ValueError(f"Tensor: exponents outside +-{fmt.limit} for {fmt}; quantize them first")
        self.sign = sign.astype(SIGN_DTYPE, copy=False)
        self.exp = exp.astype(EXP_DTYPE, copy=False)
        self.fmt = fmt
        if scale is None:
            nonzero = self.sign != 0
            scale = int(self.exp[nonzero].max()) if nonzero.any() else 0
        self.scale = int(scale)
        self.requires_grad = bool(requires_grad)
        self.grad: Tensor | None = None
        # False for the result of an op that recorded a graph: its gradient
        # goes on to the op's inputs, not into .grad.
        self.is_leaf = True
        self._ctx: Function | None = None

    # ---- description ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.sign.shape

    @property
    def ndim(self) -> int:
        return self.sign.ndim

    @property
    def size(self) -> int:
        return self.sign.size

    def __len__(self) -> int:
        return len(self.sign)

    def __repr__(self) -> str:
        values = np.array2string(self.numpy(), precision=4, threshold=20)
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({values}, fmt={self.fmt}, scale={self.scale}{grad})"

    # ---- the float boundary ------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as float64 (decoding: for reporting and tests)."""
        return self.fmt.decode(self.sign, self.exp)

    def item(self) -> float:
        """The value of a one-element tensor as a Python float (e.g. a loss to print)."""
        if self.size != 1:
            raise ValueError(f"item: tensor of shape {self.shape} has {self.size} elements, not 1")
        return float(self.numpy().reshape(()))

    # ---- values --------------------------------------------------------------------
    def exp_at(self, gamma: int) -> np.ndarray:
        """The exponents written for a gamma at least as fine as this format's (exact)."""
        if gamma < self.fmt.gamma:
            raise ValueError(f"exp_at: gamma {gamma} is coarser than {self.fmt}")
        return rescale(self.exp, self.fmt.gamma, gamma)

    def detach(self) -> Tensor:
        """The same values, outside any graph."""
        return Tensor(self.sign, self.exp, self.fmt, self.scale)

    def argmax(self, axis: int = -1) -> np.ndarray:
        """Index of the largest value along axis (not differentiable)."""
        return kernels.argmax(self.sign, self.exp, axis)

    # ---- autograd ------------------------------------------------------------------
    def backward(self, grad: Tensor | None = None) -> None:
        """Accumulate d(self)/d(leaf) * grad into the .grad of every leaf that requires it.

        grad defaults to one, for a one-element tensor such as a loss.
        """
        if not self.requires_grad:
            raise ValueError("backward: this tensor does not require grad (no graph leads to it)")
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"backward: an implicit grad of one needs a one-element tensor, got shape {self.shape}")
            fmt = (self._ctx.precision if self._ctx else current()).backward
            grad = Tensor(np.ones(self.shape, SIGN_DTYPE), np.zeros(self.shape, EXP_DTYPE), fmt, 0)
        elif grad.shape != self.shape:
            raise ValueError(f"backward: grad shape {grad.shape} != tensor shape {self.shape}")
        pending = {id(self): grad}
        order = _topological_order(self)
        while order:
            # Popped, not walked, and no local left naming it: once its
            # function has run, a result's values have no holder here (as in
            # PyTorch), so each activation is freed as the backward pass
            # passes it, not at its end.
            node = order.pop()
            g = pending.pop(id(node), None)
            ctx = node._ctx
            if ctx is None:
                if g is not None:
                    node.grad = g.detach() if node.grad is None else add_gradients(node.grad, g)
                continue
            node._ctx = None
            del node
            if g is not None:
                _pass_back(ctx, g, pending)

    # ---- arithmetic (lnsnet/ops) ---------------------------------------------------
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.sub(other, self)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(other, self)

    def __truediv__(self, other):
        return ops.div(self, other)

    def __rtruediv__(self, other):
        return ops.div(other, self)

    def __neg__(self):
        return ops.neg(self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        return ops.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        return ops.mean(self, axis, keepdims)

    def reshape(self, *shape) -> Tensor:
        return ops.reshape(self, *shape)

    def flatten(self, start_dim: int = 0) -> Tensor:
        return ops.flatten(self, start_dim)

    def transpose(self, *axes) -> Tensor:
        return ops.transpose(self, *axes)

    @property
    def T(self) -> Tensor:
        return ops.transpose(self)

    def relu(self) -> Tensor:
        return ops.relu(self)

    def leaky_relu(self, negative_slope: float = 0.01) -> Tensor:
        return ops.leaky_relu(self, negative_slope)

    def to(self, fmt: LNSFormat) -> Tensor:
        """These values in another format (the gradient passes straight through)."""
        return ops.cast(self, fmt)


def _pass_back(ctx: Function, g: Tensor, pending: dict[int, Tensor]) -> None:
    """Run one function's backward and add what it gives each input to pending[id(input)]."""
    for parent, parent_grad in zip(ctx.parents, ctx.backward(g)):
        if parent_grad is None or not parent.requires_grad:
            continue
        earlier = pending.get(id(parent))
        pending[id(parent)] = parent_grad if earlier is None else add_gradients(earlier, parent_grad)


def _topological_order(root: Tensor) -> list[Tensor]:
    """Every tensor root depends on through grad-requiring ops, inputs before their results.

    A depth-first post-order kept on an explicit stack: no recursion, so no
    recursion limit however deep the graph.
    """
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        if node._ctx is None and not node.is_leaf:
            raise ValueError("backward: the graph through a tensor was already freed by an earlier "
                             "backward(); run the forward pass again")
        seen.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            stack.extend((p, False) for p in node._ctx.parents if p.requires_grad and id(p) not in seen)
    return order


def quantize(sign, exp, fmt: LNSFormat, *, underflow: str = "flush", src_gamma: int | None = None) -> Tensor:
    """A Tensor of exponents requantized to fmt with their own scale t (lnsnet.format)."""
    sign, exp, t = fmt.requantize(sign, exp, underflow=underflow, src_gamma=src_gamma)
    return Tensor(sign, exp, fmt, t)


def add_gradients(a: Tensor, b: Tensor) -> Tensor:
    """a + b, in a's format, by ⊕: the correctly rounded sum of two values, so no mode is needed."""
    gamma = max(a.fmt.gamma, b.fmt.gamma)
    sign, exp = kernels.add(a.sign, a.exp_at(gamma), b.sign, b.exp_at(gamma), tables_for(gamma))
    return quantize(sign, exp, a.fmt, src_gamma=gamma)


def tensor(array, fmt: LNSFormat | None = None, requires_grad: bool = False) -> Tensor:
    """Encode an array of floats (the float boundary) in fmt, default the forward format in effect."""
    fmt = fmt if fmt is not None else current().forward
    sign, exp = fmt.encode(array)
    out = quantize(sign, exp, fmt)
    out.requires_grad = requires_grad
    return out


class Function:
    """One op: subclasses define forward(*inputs, **options) -> Tensor and backward(grad).

    The Tensor inputs of an op share one format, and its result is quantized
    to that format.  backward(grad) returns one gradient per Tensor input (None
    where `needs_grad` says none is wanted), quantized to the backward format
    of the precision recorded when the op ran.
    """

    def __init__(self, parents: tuple[Tensor, ...], precision: Precision):
        self.parents = parents
        self.needs_grad = tuple(p.requires_grad for p in parents)
        self.precision = precision

    @classmethod
    def apply(cls, *args, **options) -> Tensor:
        parents = tuple(a for a in args if isinstance(a, Tensor))
        formats = {p.fmt for p in parents}
        if len(formats) > 1:
            raise ValueError(
                f"{cls.__name__}: inputs in different formats {sorted(map(str, formats))}; "
                "convert with .to(fmt) first")
        ctx = cls(parents, current())
        out = ctx.forward(*args, **options)
        if grad_enabled() and any(ctx.needs_grad):
            out.requires_grad = True
            out.is_leaf = False
            out._ctx = ctx
        return out

    @property
    def mode(self) -> str:
        """The accumulation mode of this op's reductions."""
        return self.precision.accumulate

    def gradient(self, sign, exp, gamma: int) -> Tensor:
        """A gradient computed at gamma, quantized to the backward format."""
        return quantize(sign, exp, self.precision.backward, src_gamma=gamma)

    def as_gradient(self, grad: Tensor) -> Tensor:
        """grad passed on unchanged, if it is already in the backward format."""
        if grad.fmt == self.precision.backward:
            return grad
        return self.gradient(grad.sign, grad.exp, grad.fmt.gamma)


def working_gamma(*tensors: Tensor) -> int:
    """The finest gamma among the tensors: all of them convert to it exactly."""
    return max(t.fmt.gamma for t in tensors)


# The ops are built on Tensor and Function, so they load after both exist.
from lnsnet import ops  # noqa: E402

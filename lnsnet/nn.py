"""Layers and models, and the master copy of their weights (Parameter).

A Parameter holds a weight at the master precision the optimizer updates
(default 16 bits, gamma 1024).  Layers never compute with it directly: they
ask for `forward_value(fmt)`, the master rounded to the forward format of the
precision in effect (an integer shift of the exponent, because both gammas
are powers of two) with underflow saturating to the smallest magnitude, so
that no weight ever becomes zero (Madam could not move it again).  The
gradient of that view passes straight through to `Parameter.grad`.

Initialisation (seeded; `seed` is an int or a numpy Generator, and a ready
model passes one generator through its layers in order):
- weights: Kaiming/He uniform for ReLU networks, U(-b, b) with
  b = sqrt(6 / fan_in), fan_in = inputs per output (in_features, or
  in_channels * kh * kw);
- biases start nonzero, since Madam can only scale a value and never moves a
  zero: a random sign times U(0.1, 1) / sqrt(fan_in).  That is within the
  usual 1/sqrt(fan_in) bias range, and never tiny: a multiplicative
  optimizer needs about ln(ratio) / lr steps to grow a value by `ratio`.
The floats drawn are encoded in the master format (the float boundary).
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from lnsnet import ops
from lnsnet.format import LNSFormat
from lnsnet.ops.cast import Cast, convert
from lnsnet.ops.window import pair
from lnsnet.precision import Precision, current
from lnsnet.tensor import Tensor

DEFAULT_MASTER = LNSFormat(16, 1024)

STATE_FIELDS = ("codes", "scale", "format")


def _integer_array(where: str, name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{where}: {name} must be an integer array, got dtype {array.dtype}")
    return array


class Parameter(Tensor):
    """The master copy of a weight: sign, exponent in `fmt` (the master format), scale t."""

    def __init__(self, sign, exp, fmt: LNSFormat = DEFAULT_MASTER):
        sign, exp, t = self._master(sign, exp, fmt, np.shape(sign))
        super().__init__(sign, exp, fmt, t, requires_grad=True)
        self.version = 0
        self._views: dict[LNSFormat, Tensor] = {}

    @classmethod
    def from_array(cls, values, fmt: LNSFormat = DEFAULT_MASTER) -> Parameter:
        """Encode floats as a master weight (the float boundary, for initialisation)."""
        return cls(*fmt.encode(values), fmt)

    @staticmethod
    def _master(sign, exp, fmt: LNSFormat, shape: tuple[int, ...]):
        """Checked and requantized master values (saturating: a weight never flushes to zero)."""
        if not isinstance(fmt, LNSFormat):
            raise ValueError(f"Parameter: fmt must be an LNSFormat, got {fmt!r}")
        sign = _integer_array("Parameter", "sign", sign)
        exp = _integer_array("Parameter", "exp", exp)
        if sign.shape != shape or exp.shape != shape:
            raise ValueError(f"Parameter: sign shape {sign.shape} and exponent shape {exp.shape} "
                             f"must both be the parameter's shape {shape}")
        return fmt.requantize(sign, exp, underflow="saturate")

    def set_master(self, sign, exp, fmt: LNSFormat | None = None) -> None:
        """Replace the master values (and format) in place; forward views are recomputed."""
        fmt = fmt if fmt is not None else self.fmt
        sign, exp, t = self._master(sign, exp, fmt, self.shape)
        self.sign, self.exp, self.fmt, self.scale = sign, exp, fmt, int(t)
        self.version += 1
        self._views.clear()

    def forward_value(self, fmt: LNSFormat) -> Tensor:
        """The weight in fmt, linked to this parameter so that its gradient reaches .grad.

        The rounded values are cached per format until set_master changes the master.
        """
        view = self._views.get(fmt)
        if view is None:
            view = self._views[fmt] = convert(self, fmt, underflow="saturate")
        return Cast.apply(self, fmt=fmt, underflow="saturate", converted=view)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, fmt={self.fmt}, scale={self.scale}, version={self.version})"


def _uniform_init(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int,
                  master: LNSFormat) -> Parameter:
    bound = math.sqrt(6.0 / fan_in)
    return Parameter.from_array(rng.uniform(-bound, bound, size=shape), master)


def _bias_init(rng: np.random.Generator, size: int, fan_in: int, master: LNSFormat) -> Parameter:
    sign = rng.choice([-1.0, 1.0], size=size)
    return Parameter.from_array(sign * rng.uniform(0.1, 1.0, size=size) / math.sqrt(fan_in), master)


def _layer_input(layer: str, x) -> Tensor:
    """x as the forward format in effect (layers with weights compute in it)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer}: input must be an lnsnet Tensor (encode floats with lnsnet.tensor), "
                        f"got {type(x).__name__}")
    return ops.cast(x, current().forward)


class Module:
    """A layer or a model: Parameters and sub-Modules found among its attributes, in order.

    `precision`: None to run at the precision in effect, or a Precision this
    module enters on every call.  `training` is set by train()/eval(); no
    lnsnet layer behaves differently yet, the flag is there for ones that do.
    """

    def __init__(self):
        self.training = True
        self.precision: Precision | None = None

    def __call__(self, *args, **kwargs):
        if self.precision is None:
            return self.forward(*args, **kwargs)
        with self.precision:
            return self.forward(*args, **kwargs)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) in attribute order, depth first; a shared one once, by its first name."""
        seen: set[int] = set()
        for name, p in self._all_parameters(""):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _all_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value._all_parameters(prefix + name + ".")

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter as B-bit codes, its scale t and its format (bits, gamma): integers only.

        Keys are "<name>.codes", "<name>.scale" and "<name>.format", so the
        dict can go straight to numpy.savez.
        """
        state = {}
        for name, p in self.named_parameters():
            state[f"{name}.codes"] = p.fmt.pack(p.sign, p.exp, p.scale)
            state[f"{name}.scale"] = np.array(p.scale, dtype=np.int64)
            state[f"{name}.format"] = np.array([p.fmt.bits, p.fmt.gamma], dtype=np.int64)
        return state

    def load_state_dict(self, state) -> None:
        """Restore parameters from state_dict() output; on any mismatch raise ValueError, changing nothing."""
        params = dict(self.named_parameters())
        expected = {f"{name}.{field}" for name in params for field in STATE_FIELDS}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        decoded = []
        for name, p in params.items():
            saved_format = _integer_array("load_state_dict", f"{name}.format", state[f"{name}.format"])
            if saved_format.shape != (2,):
                raise ValueError(f"load_state_dict: {name}.format should be (bits, gamma), "
                                 f"it has shape {saved_format.shape}")
            fmt = LNSFormat(*(int(v) for v in saved_format))
            if fmt != p.fmt:
                raise ValueError(f"load_state_dict: {name} was saved in {fmt}, the parameter is in {p.fmt}")
            codes = np.asarray(state[f"{name}.codes"])
            if codes.shape != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {codes.shape} in the state, "
                                 f"{p.shape} in the module")
            if codes.dtype != fmt.code_dtype:
                raise ValueError(f"load_state_dict: {name} codes are {codes.dtype}, {fmt} stores {fmt.code_dtype}")
            scale = _integer_array("load_state_dict", f"{name}.scale", state[f"{name}.scale"])
            # unpack adds t to every exponent: an out-of-range t would wrap them
            if scale.shape != () or abs(int(scale)) > fmt.limit:
                shown = int(scale) if scale.shape == () else f"an array of shape {scale.shape}"
                raise ValueError(f"load_state_dict: {name}.scale must be one integer within "
                                 f"+-{fmt.limit}, got {shown}")
            decoded.append((p, *fmt.unpack(codes, int(scale))))
        for p, sign, exp in decoded:
            p.set_master(sign, exp, p.fmt)


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, seed=0,
                 master: LNSFormat = DEFAULT_MASTER):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.in_features, self.out_features = in_features, out_features
        self.weight = _uniform_init(rng, (out_features, in_features), in_features, master)
        self.bias = _bias_init(rng, out_features, in_features, master) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = _layer_input(repr(self), x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: input of shape {x.shape} does not match weight of shape "
                             f"{self.weight.shape} (expected {self.in_features} features in the last axis)")
        fmt = current().forward
        bias = self.bias.forward_value(fmt) if self.bias is not None else None
        return ops.linear(x, self.weight.forward_value(fmt), bias)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class Conv2d(Module):
    """2-D convolution (cross-correlation), weight (out_channels, in_channels, kh, kw)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, seed=0, master: LNSFormat = DEFAULT_MASTER):
        super().__init__()
        rng = np.random.default_rng(seed)
        kh, kw = pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding = stride, padding
        fan_in = in_channels * kh * kw
        self.weight = _uniform_init(rng, (out_channels, in_channels, kh, kw), fan_in, master)
        self.bias = _bias_init(rng, out_channels, fan_in, master) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = _layer_input(repr(self), x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: input of shape {x.shape} does not match weight of shape "
                             f"{self.weight.shape} (expected (N, {self.in_channels}, H, W))")
        fmt = current().forward
        bias = self.bias.forward_value(fmt) if self.bias is not None else None
        return ops.conv2d(x, self.weight.forward_value(fmt), bias, self.stride, self.padding)

    def __repr__(self) -> str:
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.weight.shape[2:]}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None})")


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return ops.relu(x)

    def __repr__(self) -> str:
        return "ReLU()"


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return ops.leaky_relu(x, self.negative_slope)

    def __repr__(self) -> str:
        return f"LeakyReLU({self.negative_slope})"


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: Tensor) -> Tensor:
        return ops.max_pool2d(x, self.kernel_size, self.stride)

    def __repr__(self) -> str:
        return f"MaxPool2d({self.kernel_size}, stride={self.stride})"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: Tensor) -> Tensor:
        return ops.avg_pool2d(x, self.kernel_size, self.stride)

    def __repr__(self) -> str:
        return f"AvgPool2d({self.kernel_size}, stride={self.stride})"


class Flatten(Module):
    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: Tensor) -> Tensor:
        return ops.flatten(x, self.start_dim)

    def __repr__(self) -> str:
        return f"Flatten({self.start_dim})"


class Sequential(Module):
    """Modules applied in order; they are attributes "0", "1", ... (so parameter names read "0.weight")."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise ValueError(f"Sequential: item {i} is {type(module).__name__}, not a Module")
            setattr(self, str(i), module)

    def __iter__(self) -> Iterator[Module]:
        return (module for _, module in self.named_children())

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __getitem__(self, index: int) -> Module:
        return list(self)[index]

    def forward(self, x: Tensor) -> Tensor:
        for module in self:
            x = module(x)
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({name}): {module!r}" for name, module in self.named_children())
        return f"Sequential({inner}\n)"


def mlp(seed=0, master: LNSFormat = DEFAULT_MASTER) -> Sequential:
    """784-256-256-10 with ReLU, for (N, 784) or (N, 1, 28, 28) inputs."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Flatten(),
        Linear(784, 256, seed=rng, master=master), ReLU(),
        Linear(256, 256, seed=rng, master=master), ReLU(),
        Linear(256, 10, seed=rng, master=master),
    )


def lenet(seed=0, master: LNSFormat = DEFAULT_MASTER) -> Sequential:
    """LeNet-5 style for (N, 1, 28, 28): conv 6@5x5 pad 2, max pool 2, conv 16@5x5, max pool 2,
    then 400-120-84-10, ReLU throughout."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(1, 6, 5, padding=2, seed=rng, master=master), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 5, seed=rng, master=master), ReLU(), MaxPool2d(2),
        Flatten(),
        Linear(16 * 5 * 5, 120, seed=rng, master=master), ReLU(),
        Linear(120, 84, seed=rng, master=master), ReLU(),
        Linear(84, 10, seed=rng, master=master),
    )

"""The two things `lnsnet train` can train: the LNS model, and the same model in float32.

An engine owns a model and its optimizer and offers train_batch, predict,
save and load; the Trainer (lnsnet.train) drives either one the same way.
"""
from __future__ import annotations

import numpy as np

from lnsnet import checkpoint, nn, optim
from lnsnet.baseline import (F32, Conv2d as FConv2d, Flatten as FFlatten, Float32Net,
                             Linear as FLinear, Pool2d as FPool2d, ReLU as FReLU,
                             softmax_cross_entropy)
from lnsnet.data import PixelEncoder
from lnsnet.format import LNSFormat
from lnsnet.ops import cross_entropy
from lnsnet.ops.window import pair
from lnsnet.optim import reference
from lnsnet.precision import Precision
from lnsnet.tensor import Tensor, no_grad
from lnsnet.train import SGD_MOMENTUM, TrainConfig, master_gamma

MODEL_BUILDERS = {"mlp": nn.mlp, "lenet": nn.lenet}


def _images_as_batch(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 to the models' (N, 1, 28, 28) input layout."""
    return images[:, None, :, :]


class LNSEngine:
    """The LNS model at the configured formats, with its LNS optimizer."""

    def __init__(self, config: TrainConfig):
        self.config = config
        forward = LNSFormat(config.bits, config.gamma)
        self.precision = Precision(forward=forward, backward=forward, accumulate=config.accumulate)
        self.model = MODEL_BUILDERS[config.model](seed=config.seed)
        self.model.precision = self.precision
        self.master = LNSFormat(config.update_bits, master_gamma(config.update_bits, config.gamma))
        self.optimizer = _lns_optimizer(config, self.model, self.master)
        self.encoder = PixelEncoder(forward)

    def _inputs(self, images: np.ndarray) -> Tensor:
        sign, exp = self.encoder(_images_as_batch(images))
        return Tensor(sign, exp, self.precision.forward)

    def train_batch(self, images, labels) -> tuple[float, int]:
        self.model.train()
        logits = self.model(self._inputs(images))
        loss = cross_entropy(logits, labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss.item(), int((logits.argmax(axis=-1) == labels).sum())

    def set_lr(self, lr: float) -> None:
        self.optimizer.set_lr(lr)

    def saturated(self) -> str | None:
        """A description when a master weight has blown up to the largest exponent the engine holds.

        An LNS loss decodes to a finite number however far a run diverges, so
        this is how a blow-up shows: a weight pinned at 2**1000.
        """
        for name, p in self.model.named_parameters():
            nonzero = p.sign != 0
            if nonzero.any() and int(p.exp[nonzero].max()) >= p.fmt.limit:
                return f"{name} reached the largest exponent, +{p.fmt.limit} in {p.fmt}"
        return None

    def predict(self, images) -> np.ndarray:
        self.model.eval()
        with no_grad():
            return self.model(self._inputs(images)).argmax(axis=-1)

    def save(self, path, run_state: str) -> None:
        checkpoint.save(path, self.model, self.optimizer, extra={"run_state": run_state})

    def load(self, path) -> str:
        return checkpoint.load(path, self.model, self.optimizer)["run_state"]


def _lns_optimizer(config: TrainConfig, model, master: LNSFormat):
    lr = config.learning_rate
    if config.optimizer == "madam":
        return optim.Madam(model.parameters(), lr=lr, master=master, seed=config.seed)
    if config.optimizer == "sgd":
        return optim.SGD(model.parameters(), lr=lr, momentum=SGD_MOMENTUM, master=master, seed=config.seed)
    return optim.Adam(model.parameters(), lr=lr, master=master, seed=config.seed)


def float32_net(model) -> Float32Net:
    """A float32 copy of an lnsnet Sequential, its weights decoded from the master copies."""
    def values(p):
        return None if p is None else p.fmt.decode(p.sign, p.exp).astype(F32)

    layers = []
    for index, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            f = FLinear(values(layer.weight), values(layer.bias))
        elif isinstance(layer, nn.Conv2d):
            f = FConv2d(values(layer.weight), values(layer.bias), layer.stride, layer.padding)
        elif isinstance(layer, nn.ReLU):
            f = FReLU()
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            f = _float32_pool(layer)
        elif isinstance(layer, nn.Flatten):
            f = FFlatten()
        else:
            raise ValueError(f"the float32 baseline has no counterpart for {layer!r}")
        layers.append((str(index), f))
    return Float32Net(layers)


def _float32_pool(layer) -> FPool2d:
    """The baseline pools square, non-overlapping windows (all lnsnet's ready models use)."""
    kh, kw = pair(layer.kernel_size, "kernel_size")
    stride = pair(layer.stride if layer.stride is not None else layer.kernel_size, "stride")
    if kh != kw or stride != (kh, kw):
        raise ValueError(f"the float32 baseline pools square windows with stride = size, not {layer!r}")
    return FPool2d(kh, "max" if isinstance(layer, nn.MaxPool2d) else "avg")


class Float32Engine:
    """The same architecture, initial weights and batches, in NumPy float32 (the baseline)."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.net = float32_net(MODEL_BUILDERS[config.model](seed=config.seed))
        self.slots = list(self.net.named_parameters())
        weights = [getattr(layer, attr) for _, layer, attr in self.slots]
        lr = config.learning_rate
        if config.optimizer == "madam":
            self.optimizer = reference.MadamReference(weights, lr=lr)
        elif config.optimizer == "sgd":
            self.optimizer = reference.SGDReference(weights, lr=lr, momentum=SGD_MOMENTUM)
        else:
            self.optimizer = reference.AdamReference(weights, lr=lr)

    def _inputs(self, images) -> np.ndarray:
        # The same pixels the LNS model sees before encoding: p / 255.
        return _images_as_batch(images).astype(F32) / F32(255)

    def train_batch(self, images, labels) -> tuple[float, int]:
        logits = self.net(self._inputs(images))
        loss, grad = softmax_cross_entropy(logits, labels)
        self.net.backward(grad)
        self.optimizer.step([layer.grads[attr] for _, layer, attr in self.slots])
        for (_, layer, attr), w in zip(self.slots, self.optimizer.weights):
            setattr(layer, attr, w.astype(F32))
        return loss, int((logits.argmax(axis=1) == labels).sum())

    def set_lr(self, lr: float) -> None:
        self.optimizer.hyper["lr"] = lr

    def saturated(self) -> str | None:
        """A description when a float32 weight overflowed to inf or NaN."""
        bad = [name for (name, _, _), w in zip(self.slots, self.optimizer.weights) if not np.isfinite(w).all()]
        return f"non-finite weights in {', '.join(bad)}" if bad else None

    def predict(self, images) -> np.ndarray:
        return self.net(self._inputs(images)).argmax(axis=1)

    def save(self, path, run_state: str) -> None:
        arrays = {f"weight/{name}": w for (name, _, _), w in zip(self.slots, self.optimizer.weights)}
        arrays.update(_reference_state(self.optimizer))
        checkpoint.write_npz(path, arrays, extra={"run_state": run_state, "kind": "float32"})

    def load(self, path) -> str:
        arrays, extra = checkpoint.read_npz(path)
        if extra.get("kind") != "float32":
            raise ValueError(f"{path}: not a float32 baseline checkpoint")
        names = [f"weight/{name}" for name, _, _ in self.slots]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ValueError(f"{path}: missing {missing}")
        for name, w in zip(names, self.optimizer.weights):
            _check_like(arrays[name], w, name, path)
        _load_reference_state(self.optimizer, arrays, path)
        self.optimizer.weights = [arrays[n].astype(np.float64) for n in names]
        for (_, layer, attr), w in zip(self.slots, self.optimizer.weights):
            setattr(layer, attr, w.astype(F32))
        return extra["run_state"]


def _check_like(array: np.ndarray, like: np.ndarray, name: str, path) -> None:
    """Raise ValueError unless array is real floats of like's shape."""
    if array.dtype.kind != "f" or array.shape != like.shape:
        raise ValueError(f"{path}: {name} is {array.dtype} of shape {array.shape}, "
                         f"expected floats of shape {like.shape}")


# The per-weight state lists a float reference optimizer keeps, by attribute name.
_REFERENCE_STATE = ("v", "m", "buffers")


def _reference_state(opt) -> dict[str, np.ndarray]:
    arrays = {"steps": np.array(opt.steps, dtype=np.int64)}
    for attr in _REFERENCE_STATE:
        for i, value in enumerate(getattr(opt, attr, ())):
            arrays[f"{attr}/{i}"] = value
    return arrays


def _load_reference_state(opt, arrays, path) -> None:
    """Check every part of the optimizer's state in arrays, then adopt it (nothing changes on error)."""
    steps = arrays.get("steps")
    if steps is None or steps.shape != () or steps.dtype.kind not in "iu" or int(steps) < 0:
        raise ValueError(f"{path}: optimizer step count is missing or not a count")
    state = {}
    for attr in _REFERENCE_STATE:
        if hasattr(opt, attr):
            keys = [f"{attr}/{i}" for i in range(len(opt.weights))]
            if any(k not in arrays for k in keys):
                raise ValueError(f"{path}: optimizer state {attr!r} is missing or incomplete")
            for key, w in zip(keys, opt.weights):
                _check_like(arrays[key], w, key, path)
            state[attr] = [arrays[k] for k in keys]
    for attr, values in state.items():
        setattr(opt, attr, values)
    opt.steps = int(steps)


def read_run_state(path) -> str:
    """The training loop's state (config, position, history) stored in a checkpoint."""
    _, extra = checkpoint.read_npz(path)
    if "run_state" not in extra:
        raise ValueError(f"{path}: a checkpoint without a training run's state (not written by lnsnet train)")
    return extra["run_state"]


def make_engine(config: TrainConfig):
    return Float32Engine(config) if config.float32 else LNSEngine(config)

"""The integer-only rule (DESIGN.md section 3), proved over a full training step.

A step (forward, loss, backward) of each ready model on a batch of 64
MNIST-shaped inputs runs with every kernel, every Tensor construction, every
requantization and every exponent rescale instrumented to record the arrays
it produces; all must be integer arrays, and enough of them must have been
seen that the check cannot pass vacuously.  During the step the float
boundary is closed: LNSFormat.encode/decode and NumPy's float
transcendentals raise if called.  The input batch is encoded before the
step, and the tables (ROM contents, built with floats once per gamma) are
built beforehand by a warm-up step on another instance of the model; the
model under test is fresh, so its weights' conversion to the forward format
runs inside the instrumented step.
"""
from __future__ import annotations

import numpy as np
import pytest

import lnsnet
import lnsnet.format
from lnsnet import kernels, nn
from lnsnet.format import LNSFormat
from lnsnet.tensor import Tensor

FLOAT_FUNCTIONS = ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "power", "float_power")


class Recorder:
    def __init__(self):
        self.dtypes: list[tuple[str, str]] = []

    def record(self, source: str, value) -> None:
        if isinstance(value, (tuple, list)):
            for item in value:
                self.record(source, item)
        elif isinstance(value, (np.ndarray, np.generic)):
            self.dtypes.append((source, value.dtype.kind))
        elif isinstance(value, float):
            self.dtypes.append((source, "f"))

    def wrap(self, source: str, function):
        def recorded(*args, **kwargs):
            out = function(*args, **kwargs)
            self.record(source, out)
            return out
        return recorded

    def sources(self) -> set[str]:
        return {source for source, _ in self.dtypes}

    def non_integer(self) -> list[tuple[str, str]]:
        return [(source, kind) for source, kind in self.dtypes if kind not in "iu"]


def forbid(name: str):
    def closed(*args, **kwargs):
        raise AssertionError(f"{name} called inside the training step")
    return closed


def instrument(m: pytest.MonkeyPatch, recorder: Recorder) -> None:
    for name in kernels.__all__:
        function = getattr(kernels, name)
        if callable(function) and name != "check_mode":
            m.setattr(kernels, name, recorder.wrap(f"kernels.{name}", function))
    original_init = Tensor.__init__

    def recorded_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        recorder.record("Tensor", (self.sign, self.exp))
        recorder.record("Tensor.scale", np.asarray(self.scale))

    m.setattr(Tensor, "__init__", recorded_init)
    m.setattr(LNSFormat, "requantize", recorder.wrap("requantize", LNSFormat.requantize))
    m.setattr(lnsnet.format, "rescale", recorder.wrap("rescale", lnsnet.format.rescale))
    m.setattr(LNSFormat, "encode", forbid("LNSFormat.encode"))
    m.setattr(LNSFormat, "decode", forbid("LNSFormat.decode"))
    for name in FLOAT_FUNCTIONS:
        m.setattr(np, name, forbid(f"numpy.{name}"))


def mnist_batch(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(batch, 1, 28, 28)) * (rng.uniform(size=(batch, 1, 28, 28)) < 0.2) / 255.0
    return lnsnet.tensor(images), rng.integers(0, 10, size=batch)


def train_step(model, x, labels):
    loss = lnsnet.cross_entropy(model(x), labels)
    loss.backward()
    return loss


NATIVE = [pytest.param(False, id="numpy"),
          pytest.param(True, id="native", marks=pytest.mark.skipif(
              not lnsnet.native_available(), reason="C kernels not built"))]

# kernels each model's step must reach, and how many arrays at least.
EXPECTED = {
    "mlp": ({"kernels.matmul", "kernels.softmax_cross_entropy", "kernels.from_fixed", "kernels.mul",
             "Tensor", "requantize", "kernels.requantize"}, 150),
    "lenet": ({"kernels.matmul", "kernels.softmax_cross_entropy", "kernels.from_fixed", "kernels.mul",
               "kernels.argmax", "Tensor", "requantize", "kernels.requantize"}, 250),
}


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_a_training_step_is_integer_only(name, native, monkeypatch):
    monkeypatch.setenv("LNSNET_NATIVE", "1" if native else "0")
    make_model = getattr(nn, name)
    train_step(make_model(seed=1), *mnist_batch(2, seed=1))  # builds the tables
    model = make_model(seed=0)
    x, labels = mnist_batch(64)
    recorder = Recorder()
    with monkeypatch.context() as m:
        instrument(m, recorder)
        loss = train_step(model, x, labels)

    needed, at_least = EXPECTED[name]
    assert needed <= recorder.sources(), needed - recorder.sources()
    assert len(recorder.dtypes) > at_least
    assert recorder.non_integer() == []
    for param_name, p in model.named_parameters():
        assert p.grad is not None, param_name
        assert p.grad.sign.dtype == np.int8 and p.grad.exp.dtype.kind == "i", param_name
    assert 0.5 < loss.item() < 20  # decoding is allowed again, for printing


def test_the_instrumentation_catches_floats(monkeypatch):
    """The recorder and the closed boundary do see floats when there are some."""
    recorder = Recorder()
    with monkeypatch.context() as m:
        # A kernel that leaks floats (none does: mul casts even float exponents to int64).
        m.setattr(kernels, "mul", lambda *operands: (np.ones(2, np.int8), np.zeros(2)))
        instrument(m, recorder)
        kernels.mul(np.ones(2, np.int8), np.zeros(2), np.ones(2, np.int8), np.zeros(2))
        with pytest.raises(AssertionError, match="numpy.log2"):
            np.log2(2.0)
        with pytest.raises(AssertionError, match="encode"):
            lnsnet.tensor([1.0])
    assert recorder.non_integer() == [("kernels.mul", "f")]

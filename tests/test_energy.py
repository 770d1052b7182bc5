"""The energy model: operation counts against counts derived by hand, the energy table, the command."""
import argparse
import math
from collections import Counter

import pytest

from lnsnet import energy

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def layer_work(layer, batch, shape, first):
    work = energy.Work()
    layer.count(work, batch, shape, first)
    return work


def nonzero(counter):
    return {k: v for k, v in counter.items() if v}


# A linear layer with 3 inputs, 2 outputs and a bias, on a batch of 2.
#   forward:  y = x W + b: 2*2 outputs, each a 3-term dot product -> 12 products,
#             4 reductions, 4 bias adds, 4 requantized outputs.
#   backward: dW = x^T dy: 3*2 entries, each summing 2 products -> 12 products, 6 reductions;
#             db = sum over the batch of dy: 2 sums of 2 terms -> 4 terms, 2 reductions;
#             8 requantized gradients.  As the first layer, no dx.
#   update:   6 weights + 2 biases.
HAND_FIRST = {
    ("forward", "product"): 12, ("forward", "reduction"): 4, ("forward", "add"): 4,
    ("forward", "requantize"): 4,
    ("backward", "product"): 12, ("backward", "reduction"): 8, ("backward", "term"): 4,
    ("backward", "requantize"): 8,
    ("update", "update"): 8,
}
HAND_FIRST_TRAFFIC = {
    ("forward", "weight", "read"): 8, ("forward", "activation", "read"): 6,
    ("forward", "activation", "write"): 4,
    ("backward", "gradient", "read"): 4, ("backward", "activation", "read"): 6,
    ("backward", "gradient", "write"): 8,
    ("update", "gradient", "read"): 8, ("update", "master", "read"): 8, ("update", "master", "write"): 8,
    ("update", "state", "read"): 8, ("update", "state", "write"): 8,
}


def test_linear_layer_counts_by_hand():
    work = layer_work(energy.Linear(3, 2), batch=2, shape=(3,), first=True)
    assert nonzero(work.ops) == HAND_FIRST
    assert nonzero(work.traffic) == HAND_FIRST_TRAFFIC


def test_linear_layer_inside_a_network_also_sends_dx_back():
    # dx = dy W^T: 2*3 entries, each summing 2 products -> 12 more products, 6 reductions,
    # 6 requantized gradients; W read again, dx written.
    work = layer_work(energy.Linear(3, 2), batch=2, shape=(3,), first=False)
    expected = dict(HAND_FIRST)
    expected["backward", "product"] += 12
    expected["backward", "reduction"] += 6
    expected["backward", "requantize"] += 6
    assert nonzero(work.ops) == expected
    assert work.traffic["backward", "weight", "read"] == 6
    assert work.traffic["backward", "gradient", "write"] == 8 + 6


def test_conv_layer_counts_by_hand():
    # 1x4x4 input, 2 filters of 3x3, no padding -> 2x2x2 output, batch 1:
    # each of the 8 outputs sums 9 products -> 72 products; dW: 2*9 entries over 4 positions -> 72.
    work = layer_work(energy.Conv2d(1, 2, 3), batch=1, shape=(1, 4, 4), first=True)
    assert work.ops["forward", "product"] == 72
    assert work.ops["forward", "reduction"] == 8
    assert work.ops["backward", "product"] == 72
    assert work.ops["backward", "reduction"] == 18 + 2
    assert work.ops["update", "update"] == 18 + 2
    inner = layer_work(energy.Conv2d(1, 2, 3), batch=1, shape=(1, 4, 4), first=False)
    # dx through im2col: 4 positions x 9 taps, each summing 2 products; col2im adds the
    # 36 column entries onto the 16 input pixels.
    assert inner.ops["backward", "product"] == 72 + 72
    assert inner.ops["backward", "term"] == 8 + 36
    assert inner.ops["backward", "reduction"] == 20 + 36 + 16


def test_pooling_and_relu_counts():
    work = layer_work(energy.MaxPool2d(2), batch=1, shape=(1, 4, 4), first=False)
    assert work.ops["forward", "compare"] == 4 * 3 and work.ops["backward", "compare"] == 4
    relu = layer_work(energy.ReLU(), batch=2, shape=(5,), first=False)
    assert nonzero(relu.ops) == {("forward", "compare"): 10, ("backward", "compare"): 10}
    assert not relu.traffic


def test_lns_linear_primitives_by_hand():
    """The LNS-8 linear recipe applied to the hand counts of the 3-to-2 layer."""
    work = layer_work(energy.Linear(3, 2), batch=2, shape=(3,), first=True)
    by_category = Counter()
    for (_, category, _, _), n in energy.lns_arithmetic("linear").ops(work).items():
        by_category[category] += n
    # products 24: exponent add + POW2 read + shift + accumulator add each;
    # terms 4: POW2 read + shift + add; reductions 12: leading one, LOG2 read, BOUND compare,
    # exponent add; bias ⊕ 4: two exponent adds and an SB/DB read; requantize 12: two
    # compares; Madam 8: 8 + 2 exponent adds, 2 table reads, 2 compares, 2 shifts, 1 multiply.
    assert by_category == {
        "exponent adds": 24 + 12 + 2 * 4 + 10 * 8,
        "table reads": 24 + 4 + 12 + 4 + 2 * 8,
        "shifts": 24 + 4 + 2 * 8,
        "accumulator adds": 24 + 4,
        "conversions": 12 + 12,
        "compares": 2 * 12 + 2 * 8,
        "int multiplies": 8,
    }


def test_fp32_primitives_by_hand():
    work = layer_work(energy.Linear(3, 2), batch=2, shape=(3,), first=True)
    by_category = Counter()
    for (_, category, _, _), n in energy.float_arithmetic("FP32", 32).ops(work).items():
        by_category[category] += n
    # 24 multiply-adds, 4 bias-gradient adds, 4 bias adds; Madam: 12 multiplies, 5 adds,
    # 2 compares per weight.
    assert by_category == {"fp multiplies": 24 + 12 * 8, "fp adds": 24 + 4 + 4 + 5 * 8,
                           "compares": 2 * 8}


def test_modes_differ_where_they_should():
    work = layer_work(energy.Linear(3, 2), batch=2, shape=(3,), first=True)
    linear = energy.lns_arithmetic("linear").ops(work)
    mitchell = energy.lns_arithmetic("mitchell").ops(work)
    logadd = energy.lns_arithmetic("logadd").ops(work)

    def count(ops, category):
        return sum(n for (_, c, _, _), n in ops.items() if c == category)

    assert count(linear, "table reads") - count(mitchell, "table reads") == 24 + 4   # no POW2
    assert count(logadd, "accumulator adds") == 0 and count(logadd, "conversions") == 0
    assert count(logadd, "exponent adds") == count(linear, "exponent adds") + 2 * (24 + 4) - 12


def test_horowitz_values_and_interpolation():
    assert energy.int_add_pj(8) == pytest.approx(0.03) and energy.int_add_pj(32) == pytest.approx(0.1)
    assert energy.int_mult_pj(8) == pytest.approx(0.2) and energy.int_mult_pj(32) == pytest.approx(3.1)
    assert energy.primitive_pj("fp_mult", 32) + energy.primitive_pj("fp_add", 32) == pytest.approx(4.6)
    assert energy.primitive_pj("fp_mult", 16) == 1.1 and energy.primitive_pj("fp_add", 16) == 0.4
    assert energy.memory_pj_per_bit("sram-8kb") == pytest.approx(10 / 64)
    assert energy.memory_pj_per_bit("dram") == pytest.approx(1300 / 64)
    with pytest.raises(ValueError):
        energy.primitive_pj("fp_add", 8)


def test_energy_of_the_small_layer():
    work = layer_work(energy.Linear(3, 2), batch=2, shape=(3,), first=True)
    est = energy.estimate(work, energy.float_arithmetic("FP32", 32), "sram-8kb")
    compute = (24 + 12 * 8) * 3.7 + (24 + 4 + 4 + 5 * 8) * 0.9 + 16 * 0.1
    assert sum(est.compute_pj.values()) == pytest.approx(compute)
    bits = 32 * sum(HAND_FIRST_TRAFFIC.values())
    assert sum(est.memory_pj.values()) == pytest.approx(bits * 10 / 64)


@pytest.mark.parametrize("name, weights", [("mlp", 269_322), ("lenet", 61_706)])
def test_models_agree_with_lnsnet_nn(name, weights):
    work = energy.count_work(energy.MODELS[name], batch=64)
    assert work.params() == weights
    nn = pytest.importorskip("lnsnet.nn")
    model = getattr(nn, name)(seed=0)
    shapes = [p.shape for p in model.parameters()]
    assert sum(math.prod(s) for s in shapes) == weights
    assert len(shapes) == 2 * sum(isinstance(layer, (energy.Linear, energy.Conv2d))
                                  for layer in energy.MODELS[name].layers)


def test_report_and_savings():
    text, estimates = energy.report("mlp", 64)
    names = [e.arithmetic.name for e in estimates]
    assert names[0] == "FP32" and {"FP16/BF16", "INT8", "LNS-8 linear", "LNS-8 logadd"} <= set(names)
    for heading in ("Work", "Primitive operations", "Energy per iteration", "vs FP32",
                    "over 90%", "Assumptions"):
        assert heading in text
    by_name = {e.arithmetic.name: e.total_pj for e in estimates}
    assert by_name["LNS-8 linear"] < by_name["FP16/BF16"] < by_name["FP32"]


def run_energy(argv):
    parser = argparse.ArgumentParser()
    energy.configure(parser)
    return energy.run(parser.parse_args(argv))


def test_energy_command(tmp_path, capsys):
    assert run_energy(["--model", "lenet", "--batch", "8", "--plot", str(tmp_path / "e.png")]) == 0
    out = capsys.readouterr().out
    assert "lenet" in out and "batch 8" in out
    data = (tmp_path / "e.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 20_000


def test_energy_command_bad_batch(capsys):
    assert run_energy(["--batch", "0"]) == 2
    assert "batch must be at least 1" in capsys.readouterr().err

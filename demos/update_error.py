"""How many updates survive the rounding?  Madam vs SGD vs Adam at 8- and 16-bit master weights.

Run:  python demos/update_error.py [--images 512] [--steps 200] [--rounding nearest] [--out update_error]

An optimizer computes an update for every weight, and the weight's master
copy, an LNS number with few bits, must then round the result.  An update
smaller than half an LNS step of the weight is rounded away entirely: the
weight does not move.  SGD and Adam add updates (their size does not depend
on the weight), Madam multiplies (its step is a fixed share of the weight,
an integer change of its exponent).  This script trains the same mlp from
the same initial weights on the same batches with each optimizer, the
master weights at 8 bits (gamma 8) and at 16 bits (gamma 1024), and
measures at every step, with lnsnet.update_error:

- lost: the share of weights whose update was rounded away;
- rel.err: ||realised update - ideal update|| / ||ideal update||, the ideal
  update being what the optimizer meant in exact (float64) arithmetic.

It prints a table (loss on the training images before and after, mean lost
share, mean relative error) and saves NAME.png with the lost share per step,
the loss per step, and the lost share against the weight's magnitude.
"""
import argparse
import time

import matplotlib

matplotlib.use("Agg")  # draw to files; no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lnsnet import nn, optim  # noqa: E402
from lnsnet.data import PixelEncoder, generate_digits  # noqa: E402
from lnsnet.format import LNSFormat  # noqa: E402
from lnsnet.ops import cross_entropy  # noqa: E402
from lnsnet.tensor import Tensor, no_grad  # noqa: E402
from lnsnet.update_error import UpdateErrorRecorder  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--images", type=int, default=512, help="synthetic training images")
parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run")
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--rounding", choices=("nearest", "stochastic"), default="nearest",
                    help="how results are rounded to the master format")
parser.add_argument("--out", default="update_error", help="figure name (writes NAME.png)")
args = parser.parse_args()

# ---- the data: synthetic 28x28 digits, encoded once into 8-bit LNS ------------------
FORWARD = LNSFormat(8, 8)  # weights as the layers see them, activations, gradients
images, labels = generate_digits(args.images, seed=args.seed)
sign, exp = PixelEncoder(FORWARD)(images.reshape(len(images), -1))
inputs = Tensor(sign, exp, FORWARD)


def rows(index):
    return Tensor(inputs.sign[index], inputs.exp[index], FORWARD)


def decoded_loss(logits, targets):
    """Mean cross-entropy computed in float64 from the decoded logits: for reporting only.

    The LNS loss itself is a value of the 8-bit forward format, so it moves
    in steps of 9%; decoding the logits shows changes smaller than that.
    """
    z = logits.numpy()
    z = z - z.max(axis=1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(targets)), targets].mean())


def full_loss(model):
    """The loss over all training images."""
    with no_grad():
        return decoded_loss(model(inputs), labels)


# Every run sees the same batches: epochs of the images, each in a seeded random order.
rng = np.random.default_rng(args.seed)
epochs = -(-args.steps * args.batch // len(labels))
order = np.concatenate([rng.permutation(len(labels)) for _ in range(epochs)])
batches = order[:args.steps * args.batch].reshape(args.steps, args.batch)

# ---- the runs ----------------------------------------------------------------------
MASTERS = {8: LNSFormat(8, 8), 16: LNSFormat(16, 1024)}
OPTIONS = dict(rounding=args.rounding, seed=args.seed)
OPTIMIZERS = {  # Madam with the paper's lr; usual values for the additive two
    "madam": lambda params, master: optim.Madam(params, lr=0.01, master=master, **OPTIONS),
    "sgd": lambda params, master: optim.SGD(params, lr=0.05, momentum=0.9, master=master, **OPTIONS),
    "adam": lambda params, master: optim.Adam(params, lr=1e-3, master=master, **OPTIONS),
}

results = {}
for bits, master in MASTERS.items():
    for name, make_optimizer in OPTIMIZERS.items():
        start = time.perf_counter()
        model = nn.mlp(seed=args.seed)
        optimizer = make_optimizer(model.parameters(), master)
        recorder = UpdateErrorRecorder(optimizer)
        loss_before = full_loss(model)
        batch_losses = []
        for batch in batches:
            optimizer.zero_grad()
            logits = model(rows(batch))
            cross_entropy(logits, labels[batch]).backward()
            with recorder.record():
                optimizer.step()
            batch_losses.append(decoded_loss(logits, labels[batch]))
        results[name, bits] = {
            "loss_before": loss_before, "loss_after": full_loss(model), "batch_losses": batch_losses,
            "lost": recorder.series("lost_fraction"), "rel_err": recorder.series("relative_error"),
            "by_magnitude": recorder.by_magnitude(),
        }
        print(f"  {name} at {bits} bits: {time.perf_counter() - start:.0f} s", flush=True)

# ---- the table ---------------------------------------------------------------------
print(f"\nmlp, {args.images} synthetic digits, {args.steps} steps of {args.batch}, {args.rounding} "
      f"rounding; forward/backward {FORWARD}; loss = mean cross-entropy on all {args.images} images "
      f"(from decoded logits)")
print(f"{'optimizer':>9} {'master':>7} {'loss before':>11} {'loss after':>10} {'lost':>7} {'rel.err':>8}")
for (name, bits), r in results.items():
    print(f"{name:>9} {bits:>4}bit {r['loss_before']:>11.3f} {r['loss_after']:>10.3f} "
          f"{100 * r['lost'].mean():>6.1f}% {r['rel_err'].mean():>8.3f}")

# ---- the figure ----------------------------------------------------------------------
COLORS = {"madam": "tab:blue", "sgd": "tab:orange", "adam": "tab:green"}
STYLES = {8: "--", 16: "-"}
fig, (ax_lost, ax_loss, ax_mag) = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")
for (name, bits), r in results.items():
    label = f"{name}, {bits}-bit master"
    steps = np.arange(1, args.steps + 1)
    ax_lost.plot(steps, r["lost"], STYLES[bits], color=COLORS[name], label=label)
    ax_loss.plot(steps, r["batch_losses"], STYLES[bits], color=COLORS[name], label=label)
    bins = r["by_magnitude"]
    enough = bins["count"] >= 20  # octaves with few weights are too noisy to draw
    ax_mag.plot(2.0 ** (bins["octave"][enough] + 0.5), bins["lost_fraction"][enough],
                STYLES[bits], marker="o", ms=3, color=COLORS[name], label=label)
ax_lost.set(xlabel="step", ylabel="share of updates rounded away", title="Lost updates per step")
ax_loss.set(xlabel="step", ylabel="batch loss", title="Training loss")
ax_mag.set(xscale="log", xlabel="|w| (one point per octave)", ylabel="share of updates rounded away",
           title="Lost updates against weight magnitude")
for ax in (ax_lost, ax_loss, ax_mag):
    ax.grid(True, alpha=0.3)
ax_mag.legend(fontsize=8)
fig.savefig(f"{args.out}.png", dpi=110)
print(f"wrote {args.out}.png")

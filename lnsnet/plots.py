"""lnsnet's figures: one function per figure, each returning a matplotlib Figure.

Each figure function takes its data, draws a figure that reads without a
caption (title, axis labels, legend), saves it as a PNG when `path` is
given, and returns the Figure.  Figures are built with the object-oriented
API (matplotlib.figure.Figure, drawn by the Agg renderer), never pyplot, so
nothing needs a screen and no global figure list grows.

Figures and the data they take:

number_formats_figure()            the representable values of 8-bit LNS, int8,
                                   fp8 E4M3 and bfloat16, and their relative spacing
gaussian_logs_figure(gamma)        SB and DB, their tables and the table rounding
update_error_figure(data)          update quantization error of SGD, Adam, Madam
                                   (data: see UPDATE_ERROR_DATA below)
training_curves_figure(runs)       loss and accuracy per epoch from `lnsnet train
                                   --metrics` files: {"config": {...}, "epochs":
                                   [{"epoch", "train_loss", "train_accuracy",
                                   "test_accuracy", "seconds"}, ...],
                                   "final_test_accuracy"}
bit_width_sweep_figure(rows)       rows {optimizer, forward_bits, update_bits, test_accuracy}
lr_sweep_figure(rows)              rows {optimizer, lr, test_accuracy}

Functions that produce data (update_error_data, run_lr_sweep) are separate
from the drawing, so a figure can be redrawn from a saved file.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lnsnet.format import LNSFormat

OPTIMIZER_COLORS = {"madam": "tab:blue", "sgd": "tab:orange", "adam": "tab:green",
                    "float32": "tab:gray"}
FORMAT_COLORS = {"LNS": "tab:blue", "int8": "tab:orange", "fp8 E4M3": "tab:green",
                 "bfloat16": "tab:purple"}


def _color(name: str) -> str | None:
    return OPTIMIZER_COLORS.get(str(name).lower())


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        fig.savefig(Path(path), format="png", dpi=100)
    return fig


# ---- (a) number formats -----------------------------------------------------
def lns_magnitudes(fmt: LNSFormat, t: int) -> np.ndarray:
    """The positive magnitudes a tensor of fmt codes with scale exponent t holds."""
    exps = np.arange(t - fmt.span, t + 1)
    return fmt.decode(np.ones_like(exps), exps)


def int8_magnitudes() -> np.ndarray:
    return np.arange(1, 128, dtype=np.float64)


def fp8_e4m3_magnitudes() -> np.ndarray:
    """Positive finite fp8 E4M3 values: bias 7, no infinities, S.1111.111 is NaN (max 448)."""
    values = []
    for e in range(16):
        for m in range(8):
            if e == 15 and m == 7:
                continue
            if e == 0:
                if m:
                    values.append(m / 8 * 2.0 ** -6)
            else:
                values.append((1 + m / 8) * 2.0 ** (e - 7))
    return np.array(values)


def bfloat16_magnitudes() -> np.ndarray:
    """Positive finite bfloat16 values: the top 16 bits of a float32, subnormals included."""
    return (np.arange(1, 0x7F80, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)


def relative_spacing(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(v, gap to the next value / v) over sorted positive values."""
    v = np.sort(values)
    return v[:-1], v[1:] / v[:-1] - 1.0


def number_formats_figure(fmt: LNSFormat = LNSFormat(8, 8), t: int | None = None, path=None) -> Figure:
    """Where each 8-bit (and bfloat16) format puts its values, on a log axis."""
    if t is None:
        t = 8 * fmt.gamma - 1   # largest magnitude just below 2**8, beside int8's 127 and E4M3's 448
    formats = [
        (f"LNS-{fmt.bits}, γ={fmt.gamma}, t={t}", "LNS", lns_magnitudes(fmt, t)),
        ("int8", "int8", int8_magnitudes()),
        ("fp8 E4M3", "fp8 E4M3", fp8_e4m3_magnitudes()),
        ("bfloat16 (goes on to 1e±38)", "bfloat16", bfloat16_magnitudes()),
    ]
    low, high = 1e-6, 1e4
    fig = Figure(figsize=(10, 7), layout="constrained")
    ax_values, ax_spacing = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.4])
    for row, (label, key, values) in enumerate(formats):
        shown = values[(values >= low) & (values <= high)]
        ax_values.scatter(shown, np.full(shown.shape, row), marker="|", s=120, linewidths=0.6,
                          color=FORMAT_COLORS[key])
        v, gap = relative_spacing(values)
        ax_spacing.step(v, gap * 100, where="post", color=FORMAT_COLORS[key], label=label)
    ax_values.set_yticks(range(len(formats)), [f[0] for f in formats])
    ax_values.set_ylim(len(formats) - 0.5, -0.5)
    ax_values.set_title(f"Representable positive values (one tick per value), {low:g} to {high:g}")
    ax_spacing.set_xscale("log")
    ax_spacing.set_yscale("log")
    ax_spacing.set_xlim(low, high)
    ax_spacing.set_xlabel("magnitude |v| (log scale)")
    ax_spacing.set_ylabel("gap to the next value (% of |v|)")
    ax_spacing.set_title("Relative spacing: LNS constant (2^(1/γ) - 1), "
                         "int8 coarser toward 0, floats a saw-tooth")
    # Centre left is the one corner no format's curve reaches.
    ax_spacing.legend(loc="center left")
    ax_spacing.grid(True, which="major", alpha=0.3)
    fig.suptitle("Number formats on a log axis: where the values are and how far apart")
    return _finish(fig, path)


# ---- (b) the Gaussian logarithms --------------------------------------------
def gaussian_logs_figure(gamma: int = 8, path=None) -> Figure:
    """SB and DB: the exact corrections, their tables, and the table rounding."""
    tables = LNSFormat(8, gamma).tables
    n = tables.essential_zero
    d_max = n + max(4, n // 8)
    d_fine = np.linspace(0, d_max, 800)
    d_int = np.arange(d_max + 1)
    sb_exact = gamma * np.log2(1 + 2.0 ** (-d_fine / gamma))
    db_fine = d_fine[d_fine >= 0.25]
    db_exact = gamma * np.log2(1 - 2.0 ** (-db_fine / gamma))
    sb_table = np.where(d_int < len(tables.sb), tables.sb[np.minimum(d_int, len(tables.sb) - 1)], 0)
    db_table = np.where(d_int < len(tables.db), tables.db[np.minimum(d_int, len(tables.db) - 1)], 0)

    fig = Figure(figsize=(10, 8), layout="constrained")
    ax_sb, ax_db, ax_err = fig.subplots(3, 1, sharex=True, height_ratios=[1, 1.2, 0.8])
    ax_sb.plot(d_fine, sb_exact, color="tab:blue", label="exact γ·log2(1 + 2^(-d/γ))")
    ax_sb.plot(d_int, sb_table, "o", ms=3.5, color="tab:red", label="SB table (rounded)")
    ax_sb.set_ylabel("SB[d] (exponent steps)")
    ax_sb.set_title("Same signs: x = max(xa, xb) + SB[d]")
    ax_db.plot(db_fine, db_exact, color="tab:blue", label="exact γ·log2(1 - 2^(-d/γ))")
    ax_db.plot(d_int[1:], db_table[1:], "o", ms=3.5, color="tab:red", label="DB table (rounded)")
    ax_db.set_ylim(min(db_table[1:].min(), -1) * 1.25, 1)
    ax_db.set_ylabel("DB[d] (exponent steps)")
    ax_db.set_title("Opposite signs: x = max(xa, xb) + DB[d]  (d = 0 cancels to exactly 0)")
    sb_err = sb_table - gamma * np.log2(1 + 2.0 ** (-d_int / gamma))
    with np.errstate(divide="ignore"):
        db_err = db_table[1:] - gamma * np.log2(1 - 2.0 ** (-d_int[1:] / gamma))
    ax_err.plot(d_int, sb_err, "o-", ms=3, color="tab:purple", label="SB table - exact")
    ax_err.plot(d_int[1:], db_err, "s-", ms=3, color="tab:green", label="DB table - exact")
    ax_err.axhline(0.5, color="gray", ls=":", lw=1)
    ax_err.axhline(-0.5, color="gray", ls=":", lw=1)
    ax_err.set_ylabel("rounding error (steps)")
    ax_err.set_ylim(-0.65, 0.95)   # room above the ±1/2 band for the legend
    ax_err.set_xlabel("d = |xa - xb| (exponent steps)")
    ax_err.set_title("Table rounding error: within ±1/2 step while the table lasts, "
                     "then the dropped correction")
    for ax in (ax_sb, ax_db, ax_err):
        ax.axvline(n, color="black", ls="--", lw=1, label=f"essential zero d = {n}")
        ax.grid(True, alpha=0.3)
    ax_sb.legend(loc="best", fontsize=8)
    ax_db.legend(loc="best", fontsize=8)
    ax_err.legend(loc="upper center", ncol=3, fontsize=8)
    fig.suptitle(f"The Gaussian logarithms of LNS addition, γ = {gamma} (base 2^(1/{gamma}))")
    return _finish(fig, path)


# ---- (c) update quantization error ------------------------------------------
UPDATE_ERROR_DATA = """\
update_error_figure takes a dict:
    {"magnitude_bits": 12,                  # master bits of the by-magnitude panels
     "problem": "a line saying what was run",
     "by_magnitude": {"sgd": {"x": [|w| octave centres], "relative_error": [...],
                              "lost_fraction": [...]}, "adam": ..., "madam": ...},
     "by_bits":      {"sgd": {"x": [master bits], "relative_error": [...],
                              "lost_fraction": [...]}, ...}}
Lists of one series have equal lengths; relative_error is ||realised - ideal|| / ||ideal||
and lost_fraction the share of meant updates rounded away (lnsnet.update_error)."""
UPDATE_METRICS = {
    "relative_error": "relative error ||realised - ideal|| / ||ideal||",
    "lost_fraction": "fraction of updates rounded away",
}
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "madam": "Madam"}
MIN_BIN_COUNT = 20   # magnitude bins with fewer meant updates are too noisy to draw


def _check_series(data: dict, key: str) -> dict:
    series = data.get(key)
    if not isinstance(series, dict) or not series:
        raise ValueError(f"update error data: {key!r} must map optimizer names to series\n"
                         f"{UPDATE_ERROR_DATA}")
    for name, xy in series.items():
        lengths = {len(xy.get(k, ())) for k in ("x", *UPDATE_METRICS)} if isinstance(xy, dict) else {0}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"update error data: {key}[{name!r}] needs equal, non-empty 'x', "
                             f"{', '.join(repr(m) for m in UPDATE_METRICS)} lists\n{UPDATE_ERROR_DATA}")
    return series


def update_error_figure(data: dict, path=None) -> Figure:
    """Update quantization error against weight magnitude and against bit width (2 x 2 panels:
    relative error and lost fraction)."""
    by_magnitude = _check_series(data, "by_magnitude")
    by_bits = _check_series(data, "by_bits")
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex="col")
    for row, (metric, label) in enumerate(UPDATE_METRICS.items()):
        ax_mag, ax_bits = axes[row]
        for name, series in by_magnitude.items():
            ax_mag.plot(series["x"], series[metric], "o-", ms=4, color=_color(name),
                        label=OPTIMIZER_NAMES.get(name, name))
        for name, series in by_bits.items():
            ax_bits.plot(series["x"], series[metric], "o-", ms=4, color=_color(name),
                         label=OPTIMIZER_NAMES.get(name, name))
        for ax in (ax_mag, ax_bits):
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    axes[0, 0].set_xscale("log")
    axes[1, 0].set_xlabel("weight magnitude |w| (log scale, one point per octave)")
    axes[1, 1].set_xlabel("master (update) bits")
    axes[0, 0].set_title(f"Against weight magnitude, {data.get('magnitude_bits', '?')}-bit master weights")
    axes[0, 1].set_title("Against the master weights' bit width")
    fig.suptitle(f"Update quantization error: additive (SGD, Adam) vs multiplicative (Madam)\n"
                 f"{data.get('problem', '')}", fontsize=11)
    return _finish(fig, path)





def _update_error_run(name: str, bits: int, steps: int, seed: int, rounding: str) -> dict:
    """Train a small seeded classifier for `steps` steps, recording the update error."""
    from lnsnet import nn, ops, optim
    from lnsnet.tensor import tensor
    from lnsnet.train import DEFAULT_LR, SGD_MOMENTUM, master_gamma
    from lnsnet.update_error import UpdateErrorRecorder

    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(256, 64))
    labels = np.argmax(inputs @ rng.normal(size=(64, 10)), axis=1)   # a random linear teacher
    master = LNSFormat(bits, master_gamma(bits, 8))
    model = nn.Sequential(nn.Linear(64, 32, seed=rng, master=master), nn.ReLU(),
                          nn.Linear(32, 10, seed=rng, master=master))
    options = dict(lr=DEFAULT_LR[name], rounding=rounding, seed=seed)
    if name == "sgd":
        options["momentum"] = SGD_MOMENTUM
    optimizer = getattr(optim, OPTIMIZER_NAMES[name])(list(model.parameters()), **options)
    recorder = UpdateErrorRecorder(optimizer)
    for _ in range(steps):
        batch = rng.choice(len(inputs), size=32, replace=False)
        optimizer.zero_grad()
        ops.cross_entropy(model(tensor(inputs[batch])), labels[batch]).backward()
        with recorder.record():
            optimizer.step()
    return recorder.by_magnitude()


def update_error_data(update_bits=(10, 12, 14, 16), magnitude_bits: int = 12, steps: int = 20,
                      seed: int = 0, rounding: str = "nearest") -> dict:
    """Measure the update error of SGD, Adam and Madam on a small seeded problem.

    The problem: a 64-32-10 ReLU network learning a random linear teacher's
    labels from 256 Gaussian inputs, batches of 32, `steps` steps from the
    same seeded start for every optimizer, each at `lnsnet train`'s default
    learning rate (SGD with its momentum); master weights at each bit width
    with the gamma `lnsnet train` gives them (lnsnet.train.master_gamma).  The
    forward and backward passes run at lnsnet's default precision.  Returns
    the dict update_error_figure takes.
    """
    from lnsnet.train import DEFAULT_LR, SGD_MOMENTUM

    bits_list = sorted(set(update_bits) | {magnitude_bits})
    rates = ", ".join(f"{OPTIMIZER_NAMES[n]} lr {DEFAULT_LR[n]:g}" for n in OPTIMIZER_NAMES)
    data = {"magnitude_bits": magnitude_bits, "by_magnitude": {}, "by_bits": {},
            "problem": f"64-32-10 ReLU net, random teacher, {steps} steps of batch 32, {rounding} "
                       f"rounding; {rates} (SGD momentum {SGD_MOMENTUM:g})"}
    for name in OPTIMIZER_NAMES:
        totals = {bits: _update_error_run(name, bits, steps, seed, rounding) for bits in bits_list}
        shown = [b for b in bits_list if b in update_bits]
        data["by_bits"][name] = {
            "x": shown,
            "relative_error": [float(np.sqrt(totals[b]["error_sq"].sum() / totals[b]["ideal_sq"].sum()))
                               for b in shown],
            "lost_fraction": [float(totals[b]["lost"].sum() / totals[b]["count"].sum()) for b in shown],
        }
        per_octave = totals[magnitude_bits]
        keep = per_octave["count"] >= MIN_BIN_COUNT
        data["by_magnitude"][name] = {
            "x": [float(2.0 ** (o + 0.5)) for o in per_octave["octave"][keep]],
            "relative_error": [float(v) for v in per_octave["relative_error"][keep]],
            "lost_fraction": [float(v) for v in per_octave["lost_fraction"][keep]],
        }
    return data


# ---- (d) training curves ----------------------------------------------------
EPOCH_KEYS = ("epoch", "train_loss", "train_accuracy", "test_accuracy")


def check_metrics(metrics, where: str) -> dict:
    """A metrics record with its epochs checked; ValueError naming `where` and the problem."""
    epochs = metrics.get("epochs") if isinstance(metrics, dict) else None
    if not isinstance(epochs, list) or not epochs:
        raise ValueError(f"{where}: a metrics record needs a non-empty 'epochs' list")
    for i, row in enumerate(epochs):
        missing = [k for k in EPOCH_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{where}: epoch entry {i} lacks {', '.join(missing)}")
    return metrics


def load_metrics(path) -> dict:
    """A `lnsnet train --metrics` file, checked; its file name kept as "source"."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read a metrics file ({error})") from None
    return {**check_metrics(metrics, str(path)), "source": path.stem}


def run_label(metrics: dict) -> str:
    """A short legend label: model, optimizer, bits (or float32) and lr from the run's config,
    else the record's own label, else its file name."""
    config = metrics.get("config") or {}
    parts = [str(config[k]) for k in ("model", "optimizer") if config.get(k)]
    if config.get("float32"):
        parts.append("float32")
    elif config.get("bits"):
        parts.append(f"{config['bits']}-bit")
    if config.get("lr") is not None:
        parts.append(f"lr {config['lr']:g}")
    if config.get("schedule", "constant") != "constant":
        parts.append(config["schedule"])
    return " ".join(parts) or metrics.get("label") or metrics.get("source", "run")


def training_curves_figure(runs, path=None) -> Figure:
    """Loss and accuracy per epoch for one or more runs (metrics dicts or file paths)."""
    runs = [load_metrics(r) if isinstance(r, (str, Path)) else check_metrics(r, f"run {i}")
            for i, r in enumerate(runs)]
    if not runs:
        raise ValueError("training_curves_figure: no runs given")
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        label = run_label(run)
        epochs = [row["epoch"] for row in run["epochs"]]
        ax_loss.plot(epochs, [row["train_loss"] for row in run["epochs"]], "o-", ms=3,
                     color=color, label=label)
        ax_acc.plot(epochs, [100 * row["test_accuracy"] for row in run["epochs"]], "o-", ms=3,
                    color=color, label=f"{label}, test")
        ax_acc.plot(epochs, [100 * row["train_accuracy"] for row in run["epochs"]], "--",
                    color=color, alpha=0.7, label=f"{label}, train")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (cross-entropy)")
    ax_loss.set_title("Training loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Accuracy (solid: test, dashed: train)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training curves")
    return _finish(fig, path)


# ---- (e), (f) sweeps --------------------------------------------------------
def load_rows(path, required: tuple[str, ...]) -> list[dict]:
    """Rows from a JSON list (or {"results": [...]}) or a CSV with a header; numbers parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error})") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if isinstance(rows, dict):
            rows = rows.get("results")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: expected a non-empty list of rows with {', '.join(required)}")
    return [_row(r, required, f"{path}: row {i}") for i, r in enumerate(rows)]


def _row(row, required, where: str) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{where} is not an object")
    missing = [k for k in required if k not in row]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    out = dict(row)
    for key in required:
        if key != "optimizer":
            try:
                out[key] = float(row[key])
            except (TypeError, ValueError):
                raise ValueError(f"{where}: {key} = {row[key]!r} is not a number") from None
    out["optimizer"] = str(row["optimizer"])
    return out


SWEEP_KEYS = ("optimizer", "forward_bits", "update_bits", "test_accuracy")
LR_KEYS = ("optimizer", "lr", "test_accuracy")


def bit_width_sweep_figure(rows, path=None) -> Figure:
    """Test accuracy against forward bits, one panel per update (master) bit width."""
    rows = [_row(r, SWEEP_KEYS, f"row {i}") for i, r in enumerate(rows)]
    if not rows:
        raise ValueError("bit_width_sweep_figure: no rows")
    update_bits = sorted({int(r["update_bits"]) for r in rows}, reverse=True)
    optimizers = sorted({r["optimizer"] for r in rows})
    scale_to_percent = max(r["test_accuracy"] for r in rows) <= 1.0
    fig = Figure(figsize=(4.2 * len(update_bits) + 1, 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(update_bits), sharey=True))
    for ax, ub in zip(axes, update_bits):
        for name in optimizers:
            mine = sorted((r for r in rows if r["optimizer"] == name and int(r["update_bits"]) == ub),
                          key=lambda r: r["forward_bits"])
            if not mine:
                continue
            acc = [r["test_accuracy"] * (100 if scale_to_percent else 1) for r in mine]
            ax.plot([r["forward_bits"] for r in mine], acc, "o-", color=_color(name),
                    label=OPTIMIZER_NAMES.get(name, name))
        ax.set_xticks(sorted({int(r["forward_bits"]) for r in rows}))
        ax.set_title(f"{ub}-bit weight updates")
        ax.set_xlabel("forward / backward bits")
        ax.invert_xaxis()
        ax.grid(True, alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle("Bit-width sweep: accuracy as precision drops (left to right)")
    return _finish(fig, path)


def _lr_sweep_setup(rows) -> str:
    """What the sweep trained, from the run_lr_sweep fields the rows share ('' if they lack them)."""
    keys = ("model", "bits", "epochs", "train_images", "dataset", "test_images")
    shared = {k: {str(r.get(k)) for r in rows} for k in keys}
    if any(len(v) != 1 or "None" in v for v in shared.values()):
        return ""
    model, bits, epochs, train, dataset, test = (shared[k].pop() for k in keys)
    epochs = int(float(epochs))
    return (f"{model}, {int(float(bits))}-bit LNS, {epochs} epoch{'s' if epochs != 1 else ''} "
            f"on {int(float(train)):,} {dataset} images, tested on {int(float(test)):,}")


def lr_sweep_figure(rows, path=None) -> Figure:
    """Test accuracy against learning rate for each optimizer (lr on a log axis).  Rows from
    run_lr_sweep also say what was trained; the title then says it too."""
    rows = [_row(r, LR_KEYS, f"row {i}") for i, r in enumerate(rows)]
    if not rows:
        raise ValueError("lr_sweep_figure: no rows")
    scale_to_percent = max(r["test_accuracy"] for r in rows) <= 1.0
    fig = Figure(figsize=(8.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for name in sorted({r["optimizer"] for r in rows}):
        mine = sorted((r for r in rows if r["optimizer"] == name), key=lambda r: r["lr"])
        acc = [r["test_accuracy"] * (100 if scale_to_percent else 1) for r in mine]
        ax.plot([r["lr"] for r in mine], acc, "o-", color=_color(name), label=OPTIMIZER_NAMES.get(name, name))
    ax.axvline(0.01, color="tab:blue", ls=":", lw=1.2, label="Madam's default η = 0.01")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("test accuracy (%)")
    setup = _lr_sweep_setup(rows)
    ax.set_title("Learning-rate sweep: does one learning rate serve without tuning?"
                 + (f"\n{setup}" if setup else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))   # outside: the curves use the whole axes
    return _finish(fig, path)


LR_SWEEP_RATES = (1.0, 0.1, 0.01, 1e-3, 1e-4)


def run_lr_sweep(lrs=LR_SWEEP_RATES, optimizers=tuple(OPTIMIZER_NAMES), *, model: str = "mlp",
                 dataset: str = "digits", epochs: int = 1, train_limit: int | None = 1000,
                 test_limit: int | None = 500, bits: int = 8, seed: int = 0,
                 progress: bool = False) -> list[dict]:
    """Train `model` briefly with each optimizer at each learning rate, as `lnsnet train` would
    (same initial weights and batches for every run), and return the rows lr_sweep_figure takes:
    {optimizer, lr, test_accuracy, train_loss} and what was trained (model, bits, epochs,
    dataset, train_images, test_images).  The defaults (one epoch of 1000 digits, about
    15 s a run) check the Madam paper's claim that lr 0.01 serves without tuning, roughly."""
    from lnsnet.data import load_dataset
    from lnsnet.engines import make_engine
    from lnsnet.train import TrainConfig, Trainer

    data = load_dataset(dataset, train_limit=train_limit, test_limit=test_limit)
    rows = []
    for name in optimizers:
        for lr in lrs:
            config = TrainConfig(dataset=dataset, model=model, optimizer=name, bits=bits,
                                 lr=float(lr), epochs=epochs, seed=seed,
                                 train_limit=train_limit, test_limit=test_limit)
            last = Trainer(config, make_engine(config), data, progress=False).run()[-1]
            rows.append({"optimizer": name, "lr": float(lr), "test_accuracy": last.test_accuracy,
                         "train_loss": last.train_loss, "model": model, "bits": bits,
                         "epochs": epochs, "dataset": dataset,
                         "train_images": len(data.train_labels), "test_images": len(data.test_labels)})
            if progress:
                print(f"{name} lr {lr:g}: test accuracy {100 * last.test_accuracy:.2f}%", flush=True)
    return rows

"""lnsnet's figures: each renders to a valid, non-empty PNG with its titles, labels and legends."""
import argparse
import csv
import json

import numpy as np
import pytest

from lnsnet import plots, plots_cli
from lnsnet.format import LNSFormat

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 20_000    # a blank figure of this size is ~5 kB; a drawn one is several times that


def check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > MIN_PNG_BYTES
    # IHDR: width and height are non-zero
    assert int.from_bytes(data[16:20], "big") > 100 and int.from_bytes(data[20:24], "big") > 100


def check_axes(fig, n_axes, *, legends=True):
    axes = fig.get_axes()
    assert len(axes) == n_axes
    assert axes[0].get_title()
    for ax in axes:
        assert ax.get_ylabel(), "every panel has a y label"
        if legends:
            assert ax.get_legend() is not None
    assert any(ax.get_xlabel() for ax in axes)


# ---- data for the figures ----------------------------------------------------------
def metrics_file(path, optimizer, bits, accuracy):
    record = {"config": {"model": "mlp", "optimizer": optimizer, "bits": bits, "float32": False},
              "epochs": [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": accuracy - 0.1 / e,
                          "test_accuracy": accuracy - 0.12 / e, "seconds": 3.0} for e in (1, 2, 3)],
              "final_test_accuracy": accuracy - 0.04}
    path.write_text(json.dumps(record))
    return path


def sweep_rows():
    return [{"optimizer": o, "forward_bits": fb, "update_bits": ub,
             "test_accuracy": 0.9 - (8 - fb) * (0.01 if o == "madam" else 0.05) - (16 - ub) * 0.005}
            for o in ("madam", "sgd", "adam") for fb in (8, 6, 5, 4) for ub in (16, 12, 10)]


def lr_rows():
    return [{"optimizer": o, "lr": lr, "test_accuracy": a}
            for o in ("madam", "sgd", "adam")
            for lr, a in zip((1, 0.1, 0.01, 1e-3, 1e-4), (0.1, 0.7, 0.9, 0.8, 0.4))]


# ---- the number sets -----------------------------------------------------------------
def test_format_value_sets():
    e4m3 = plots.fp8_e4m3_magnitudes()
    assert len(e4m3) == 126 and e4m3.max() == 448 and e4m3.min() == 2.0 ** -9
    bf16 = plots.bfloat16_magnitudes()
    assert len(bf16) == 0x7F7F and np.isfinite(bf16).all() and bf16.max() > 3e38
    assert len(plots.int8_magnitudes()) == 127
    lns = plots.lns_magnitudes(LNSFormat(8, 8), t=63)
    assert len(lns) == 127 and lns.max() == pytest.approx(2 ** (63 / 8))
    _, gap = plots.relative_spacing(lns)
    assert np.allclose(gap, 2 ** (1 / 8) - 1)


# ---- each figure ----------------------------------------------------------------------
def test_number_formats_figure(tmp_path):
    fig = plots.number_formats_figure(path=tmp_path / "formats.png")
    check_png(tmp_path / "formats.png")
    values_ax, spacing_ax = fig.get_axes()
    labels = [t.get_text() for t in values_ax.get_yticklabels()]
    assert labels[:3] == ["LNS-8, γ=8, t=63", "int8", "fp8 E4M3"]
    assert spacing_ax.get_xscale() == "log" and "magnitude" in spacing_ax.get_xlabel()
    assert len(spacing_ax.get_legend().get_texts()) == 4


def test_gaussian_logs_figure(tmp_path):
    fig = plots.gaussian_logs_figure(8, path=tmp_path / "tables.png")
    check_png(tmp_path / "tables.png")
    check_axes(fig, 3)
    assert "SB" in fig.get_axes()[0].get_ylabel() and "DB" in fig.get_axes()[1].get_ylabel()
    assert "d = |xa - xb|" in fig.get_axes()[2].get_xlabel()


def test_update_error_data_and_figure(tmp_path):
    data = plots.update_error_data(update_bits=(12, 16), magnitude_bits=12, steps=3)
    assert set(data["by_bits"]) == {"sgd", "adam", "madam"}
    for series in data["by_bits"].values():
        assert series["x"] == [12, 16]
        assert all(0 <= v <= 1 for v in series["lost_fraction"])
    for series in data["by_magnitude"].values():
        assert len(series["x"]) == len(series["relative_error"]) > 0
    json.dumps(data)                                   # the data saves as JSON
    fig = plots.update_error_figure(data, path=tmp_path / "update.png")
    check_png(tmp_path / "update.png")
    check_axes(fig, 4)
    assert fig.get_axes()[0].get_xscale() == "log"


def test_update_error_figure_rejects_bad_data():
    with pytest.raises(ValueError, match="by_magnitude"):
        plots.update_error_figure({"by_bits": {}})
    bad = {"by_magnitude": {"sgd": {"x": [1, 2], "relative_error": [0.1], "lost_fraction": [0, 0]}},
           "by_bits": {"sgd": {"x": [8], "relative_error": [0.1], "lost_fraction": [0.0]}}}
    with pytest.raises(ValueError, match="equal"):
        plots.update_error_figure(bad)


def test_training_curves_figure(tmp_path):
    files = [metrics_file(tmp_path / "a.json", "madam", 8, 0.9),
             metrics_file(tmp_path / "b.json", "sgd", 8, 0.8)]
    fig = plots.training_curves_figure(files, path=tmp_path / "train.png")
    check_png(tmp_path / "train.png")
    check_axes(fig, 2)
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert labels == ["mlp madam 8-bit", "mlp sgd 8-bit"]


def test_metrics_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochs": [{"epoch": 1, "train_loss": 1.0}]}))
    with pytest.raises(ValueError, match="lacks train_accuracy, test_accuracy"):
        plots.load_metrics(bad)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="junk.json"):
        plots.load_metrics(tmp_path / "junk.json")


def test_bit_width_sweep_figure_from_json_and_csv(tmp_path):
    rows = sweep_rows()
    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    with open(tmp_path / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    from_json = plots.load_rows(tmp_path / "sweep.json", plots.SWEEP_KEYS)
    from_csv = plots.load_rows(tmp_path / "sweep.csv", plots.SWEEP_KEYS)
    assert from_json == from_csv
    fig = plots.bit_width_sweep_figure(from_csv, path=tmp_path / "sweep.png")
    check_png(tmp_path / "sweep.png")
    assert [ax.get_title() for ax in fig.get_axes()] == [
        "16-bit weight updates", "12-bit weight updates", "10-bit weight updates"]
    assert fig.get_axes()[0].get_ylabel() == "test accuracy (%)"
    assert all(ax.get_legend() is not None for ax in fig.get_axes())


def test_sweep_rows_errors(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps([{"optimizer": "sgd", "lr": "fast"}]))
    with pytest.raises(ValueError, match="lacks test_accuracy"):
        plots.load_rows(tmp_path / "rows.json", plots.LR_KEYS)
    (tmp_path / "rows.json").write_text(json.dumps([{"optimizer": "sgd", "lr": "fast", "test_accuracy": 1}]))
    with pytest.raises(ValueError, match="lr = 'fast' is not a number"):
        plots.load_rows(tmp_path / "rows.json", plots.LR_KEYS)


def test_lr_sweep_figure(tmp_path):
    fig = plots.lr_sweep_figure(lr_rows(), path=tmp_path / "lr.png")
    check_png(tmp_path / "lr.png")
    check_axes(fig, 1)
    assert fig.get_axes()[0].get_xscale() == "log"


def test_run_lr_sweep_tiny():
    rows = plots.run_lr_sweep(lrs=(0.01,), optimizers=("madam",), train_limit=64, test_limit=32)
    assert len(rows) == 1 and rows[0]["optimizer"] == "madam" and rows[0]["lr"] == 0.01
    assert 0.0 <= rows[0]["test_accuracy"] <= 1.0


# ---- lnsnet plot ------------------------------------------------------------------------
def run_plot(argv):
    parser = argparse.ArgumentParser()
    plots_cli.configure(parser)
    return plots_cli.run(parser.parse_args(argv))


def test_plot_command(tmp_path, capsys):
    assert run_plot(["formats", "--out", str(tmp_path / "f.png")]) == 0
    check_png(tmp_path / "f.png")
    assert run_plot(["tables", "--gamma", "4", "--out", str(tmp_path / "t.png")]) == 0
    check_png(tmp_path / "t.png")
    metrics = metrics_file(tmp_path / "m.json", "madam", 8, 0.9)
    assert run_plot(["training", "--input", str(metrics), "--out", str(tmp_path / "c.png")]) == 0
    check_png(tmp_path / "c.png")
    (tmp_path / "lr.json").write_text(json.dumps({"results": lr_rows()}))
    assert run_plot(["lr-sweep", "--input", str(tmp_path / "lr.json"),
                     "--out", str(tmp_path / "l.png")]) == 0
    check_png(tmp_path / "l.png")
    (tmp_path / "sweep.json").write_text(json.dumps(sweep_rows()))
    assert run_plot(["bit-sweep", "--input", str(tmp_path / "sweep.json"),
                     "--out", str(tmp_path / "s.png")]) == 0
    check_png(tmp_path / "s.png")
    assert "figure written to" in capsys.readouterr().out


def test_plot_command_update_error_from_saved_data(tmp_path):
    data = plots.update_error_data(update_bits=(16,), magnitude_bits=16, steps=2)
    (tmp_path / "ue.json").write_text(json.dumps(data))
    assert run_plot(["update-error", "--input", str(tmp_path / "ue.json"),
                     "--out", str(tmp_path / "u.png")]) == 0
    check_png(tmp_path / "u.png")


@pytest.mark.parametrize("argv, message", [
    (["training"], "give them with --input"),
    (["bit-sweep"], "give them with --input"),
    (["lr-sweep"], "or --run"),
    (["training", "--input", "/nonexistent/m.json"], "cannot read"),
])
def test_plot_command_errors_exit_2(tmp_path, argv, message, capsys):
    assert run_plot(argv + ["--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lnsnet plot") and message in err
    assert not (tmp_path / "x.png").exists()

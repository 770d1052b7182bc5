"""Smoke tests of `lnsnet bench`'s conv2d, training-epoch, memory and
profile benchmarks at tiny sizes: they run, and the table and JSON carry
the expected fields with positive numbers.  (Matmul is covered in
tests/test_native.py.)  Speed itself is not tested: the machine may be busy."""
from __future__ import annotations

import argparse
import json

import pytest

from lnsnet import bench, native

TINY = ["--batch", "4", "--repeat", "1", "--epoch-steps", "1", "--models", "mlp", "--modes", "linear"]


def parse(*argv):
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    return parser.parse_args([*TINY, *argv])


def run_json(capsys, *argv) -> dict:
    assert bench.run(parse(*argv, "--json")) == 0
    return json.loads(capsys.readouterr().out)


def lns_value(row):
    """The LNS measurement: "native" with the C kernels, else "reference"."""
    return row["native"] if native.enabled() else row["reference"]


def test_conv_rows_at_lenet_shapes(capsys):
    report = run_json(capsys, "--only", "conv")
    rows = report["results"]
    assert [r["size"] for r in rows] == ["4x1x28x28 6@5x5 pad 2", "4x6x14x14 16@5x5 pad 0"]
    for row in rows:
        assert row["benchmark"] == "conv2d" and row["unit"] == "GMAC/s" and row["mode"] == "linear"
        assert row["reference"] > 0 and row["float32"] > 0
        if native.enabled():
            assert row["native"] > 0 and row["ratio"] == pytest.approx(row["native"] / row["float32"])
    assert report["environment"]["load_average"] is not None


def test_train_epoch_lns_and_float32_for_both_models(capsys):
    rows = run_json(capsys, "--only", "train", "--models", "mlp", "lenet", "--epoch-images", "40")["results"]
    assert [(r["benchmark"], r["size"], r["unit"]) for r in rows] == [
        ("train epoch", "mlp", "s/epoch"), ("train epoch", "lenet", "s/epoch")]
    for row in rows:
        assert lns_value(row) > 0 and row["float32"] > 0
        assert row["ratio"] == pytest.approx(lns_value(row) / row["float32"])
        assert "extrapolated" in row["note"] and "40/4" in row["note"]


def test_train_full_epoch_times_every_step(capsys, monkeypatch):
    seen = []
    real_make_engine = bench.make_engine

    def counting_engine(*args):
        engine = real_make_engine(*args)
        step = engine.train_batch
        engine.train_batch = lambda images, labels: seen.append(len(labels)) or step(images, labels)
        return engine

    monkeypatch.setattr(bench, "make_engine", counting_engine)
    (row,) = run_json(capsys, "--only", "train", "--full-epoch", "--epoch-images", "10")["results"]
    # a warm-up step each, then the 3 steps of 4, 4 and 2 images by one engine, then by the other
    assert seen == [4, 4] + [4, 4, 2] * 2
    assert lns_value(row) > 0 and row["ratio"] == pytest.approx(lns_value(row) / row["float32"])
    assert "measured: one epoch of 10 images, 3 steps" in row["note"]


def test_peak_memory_in_child_processes(capsys):
    (row,) = run_json(capsys, "--only", "memory")["results"]
    assert row["benchmark"] == "peak memory" and row["unit"] == "MiB" and row["size"] == "mlp"
    assert lns_value(row) > 0 and row["float32"] > 0 and row["ratio"] > 0
    assert "state" in row["note"] and "target <= 1" in row["note"]


def test_table_has_one_section_per_benchmark(capsys):
    assert bench.run(parse("--only", "conv,train", "--epoch-images", "40")) == 0
    out = capsys.readouterr().out
    assert "load average" in out and "native/float32" in out
    assert "conv2d forward at LeNet's shapes" in out and "EXTRAPOLATED" in out
    assert "peak memory" not in out and "matmul M = K = N" not in out


def test_only_rejects_unknown_benchmarks(capsys):
    with pytest.raises(SystemExit):
        parse("--only", "conv,epoch")
    assert "unknown benchmark(s) epoch" in capsys.readouterr().err


def test_profile_buckets_and_top_functions(capsys):
    (report,) = run_json(capsys, "--profile", "--profile-steps", "1", "--top", "3")["profile"]
    assert report["model"] == "mlp" and report["step_seconds"] > 0
    assert set(report["buckets"]) == set(bench.PROFILE_BUCKETS)
    assert all(seconds >= 0 for seconds in report["buckets"].values())
    assert report["buckets"]["lnsnet Python"] > 0 and report["buckets"]["NumPy"] > 0
    if native.enabled():
        assert report["buckets"]["C kernels"] > 0
    assert len(report["top"]) == 3 and all(t["seconds"] > 0 for t in report["top"])
    assert bench.run(parse("--profile", "--profile-steps", "1", "--top", "2")) == 0
    out = capsys.readouterr().out
    assert "C kernels" in out and "lnsnet Python" in out and "top 2 functions" in out


def test_profile_bucket_rules():
    assert bench.profile_bucket(("~", 0, "<built-in method lnsnet._native_c.lns_matmul>")) == "C kernels"
    assert bench.profile_bucket(("~", 0, "<method 'reduce' of 'numpy.ufunc' objects>")) == "NumPy"
    assert bench.profile_bucket(("~", 0, "<built-in method builtins.len>")) == "other"
    assert bench.profile_bucket((native.__file__, 95, "_buf")) == "kernel glue"
    assert bench.profile_bucket((bench.__file__, 1, "run")) == "lnsnet Python"

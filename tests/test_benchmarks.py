"""Smoke test of benchmarks/hsv_benchmark.py: a --quick run yields every row with finite numbers.

No timing assertions: timings belong to benchmarks/RESULTS.md, not to tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import pytest

import compressm_core as cc

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "hsv_benchmark.py"


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def hsv_bench():
    spec = importlib.util.spec_from_file_location("hsv_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def quick_run(hsv_bench, tmp_path_factory):
    """(rows, printed text, JSON path) of one --quick --skip-slicot run."""
    path = tmp_path_factory.mktemp("bench") / "hsv.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rows = hsv_bench.main(["--quick", "--skip-slicot", "--json", str(path)])
    return rows, printed.getvalue(), path


def expected_keys() -> set[str]:
    """Rows that must run and give numbers in a --quick --skip-slicot run on this machine."""
    keys = {"ours-numpy", "authors", "scipy", "sqrt-ref"}
    if has_module("torch"):
        keys.add("ours-torch")
    if has_module("jax"):
        keys.add("ours-jax")
    return keys


def test_quick_run_has_every_method_row_with_finite_numbers(hsv_bench, quick_run):
    rows, _, _ = quick_run
    configs = {row.config for row in rows}
    assert len(configs) == len(hsv_bench.QUICK_SIZES) + 1  # the sizes and the batched config
    for config in configs:
        keys = {row.key for row in rows if row.config == config and row.time_s is not None}
        assert expected_keys() <= keys, config
    for row in rows:
        if row.key in expected_keys():
            assert math.isfinite(row.time_s) and row.time_s > 0, row
            assert math.isfinite(row.rel_error), row
            assert math.isfinite(row.speedup_vs_a), row
            assert row.rel_error < 1e-6, row  # loose: a smoke test, not the accuracy study


def test_quick_run_has_rank_decision_rows(hsv_bench, quick_run):
    rows, _, _ = quick_run
    rank_rows = {row.key: row for row in rows if row.key.startswith("rank-")}
    assert set(rank_rows) == {"rank-ours", "rank-authors"}
    assert math.isfinite(rank_rows["rank-authors"].time_s)
    name, _ = hsv_bench.find_rank_function()
    if name is None:
        assert "TODO" in rank_rows["rank-ours"].note
    else:
        assert math.isfinite(rank_rows["rank-ours"].time_s), rank_rows["rank-ours"]
        assert name in rank_rows["rank-ours"].method


def markdown_tables(text: str) -> list[list[str]]:
    """The blocks of consecutive lines that start with '|'."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_quick_run_prints_a_markdown_table(quick_run):
    rows, printed, _ = quick_run
    results, breakdown = markdown_tables(printed)
    assert results[0].startswith(
        "| config | method | time (s), median | min (s) | speed-up vs (a) |"
    )
    assert len(results) == len(rows) + 2
    for row, line in zip(rows, results[2:], strict=True):
        assert line.startswith(f"| {row.config} | {row.method} |")
    assert breakdown[0].startswith("| config | path | stage | time (s) |")
    assert sum("svdvals" in line for line in breakdown) == len({row.config for row in rows})


def test_quick_run_writes_json(quick_run):
    rows, _, path = quick_run
    payload = json.loads(path.read_text())
    assert len(payload["rows"]) == len(rows)
    assert payload["machine"]["os.cpu_count"] is not None
    assert "numpy" in payload["machine"]["versions"]


def test_core_is_the_one_benchmarked(hsv_bench):
    assert hsv_bench.cc is cc

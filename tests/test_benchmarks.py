"""Smoke test of benchmarks/hsv_benchmark.py: a --quick run yields every row with finite numbers.

No timing assertions: timings belong to benchmarks/RESULTS.md, not to tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import compressm_core as cc

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def hsv_bench(load_benchmark):
    return load_benchmark("hsv_benchmark")


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
        keys |= {"ours-torch", "authors-torch"}
    if has_module("jax"):
        keys |= {"ours-jax", "ours-jax-jit", "authors-jax"}
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
            if row.key.startswith("ours-"):
                assert math.isfinite(row.speedup_vs_a_same_backend), row
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
    assert sum("eigvalsh" in line for line in breakdown) == len({row.config for row in rows})


def test_quick_run_writes_json(quick_run):
    rows, _, path = quick_run
    payload = json.loads(path.read_text())
    assert len(payload["rows"]) == len(rows)
    assert payload["machine"]["os.cpu_count"] is not None
    assert "numpy" in payload["machine"]["versions"]


def test_device_cuda_without_a_gpu_falls_back_with_one_line(hsv_bench, capsys):
    import _timing

    if _timing.torch_cuda_available() or _timing.jax_gpu_available():
        pytest.skip("a GPU is present")
    args = hsv_bench.parse_args(["--quick", "--skip-slicot", "--device", "cuda", "--no-batch"])
    args.sizes = [8]
    rows, _, notes = hsv_bench.run(args)
    assert "--device cuda: no GPU" in capsys.readouterr().err
    assert any("no GPU" in note for note in notes)
    assert {"ours-numpy", "authors"} <= {row.key for row in rows if row.time_s is not None}


def test_core_is_the_one_benchmarked(hsv_bench):
    assert hsv_bench.cc is cc


# --- benchmarks/gpu.sh and the training-step benchmark it runs ------------------------------

NO_GPU_LINE = "gpu.sh: no GPU is visible to torch or JAX here"


def nvidia_driver_present() -> bool:
    """What gpu.sh checks first: without an NVIDIA driver no CUDA GPU is visible."""
    import shutil

    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()


def run_gpu_script(*arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh"), *arguments],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )


@pytest.mark.skipif(nvidia_driver_present(), reason="a GPU may be visible here")
def test_gpu_script_without_a_gpu_says_so_in_one_line_and_measures_nothing(tmp_path):
    done = run_gpu_script(str(tmp_path / "out"))
    assert done.returncode == 3
    assert done.stdout.splitlines() == [f"{NO_GPU_LINE}; nothing measured (exit 3)"]
    assert not (tmp_path / "out").exists()


def test_gpu_script_refuses_an_unknown_option():
    done = run_gpu_script("--fast")
    assert done.returncode == 2 and "--fast" in done.stderr


@pytest.mark.slow
def test_gpu_script_quick_writes_the_three_tables(tmp_path):
    done = run_gpu_script("--quick", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    if not nvidia_driver_present():
        assert done.stdout.splitlines()[0].startswith(f"{NO_GPU_LINE}; running the --quick benchmarks on the CPU")
    for name in ("hsv", "rank", "step"):
        text = (tmp_path / f"{name}.md").read_text()
        assert text.startswith(f"## {name} (") and "load before:" in text and "load after:" in text
    step_rows = [line for line in (tmp_path / "step.md").read_text().splitlines() if line.startswith("| 16 |")]
    assert len(step_rows) == 1


@pytest.mark.slow
def test_training_step_benchmark_quick_gives_finite_times_for_both_backends(tmp_path, load_benchmark):
    module = load_benchmark("backend_benchmark")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        rows = module.main(["--quick", "--json", str(tmp_path / "step.json")])
    assert [row["state_dim"] for row in rows] == module.QUICK["state_dims"]
    assert all(math.isfinite(row[key]) and row[key] > 0 for row in rows for key in ("torch_s", "jax_s", "jax_compile_s"))
    assert json.loads((tmp_path / "step.json").read_text())["rows"] == rows
    assert "| state dim | PyTorch step (ms, cpu) | JAX step (ms, cpu) |" in printed.getvalue()


def test_measure_alternately_times_the_calls_in_turns(load_benchmark):
    import _timing

    order = []
    results = _timing.measure_alternately([lambda: order.append("a") or 1, lambda: order.append("b") or 2], 3)
    assert order == ["a", "b"] * 4  # one untimed round, then three timed ones
    assert [out for _, out in results] == [1, 2]
    assert all(seconds >= 0 for seconds, _ in results)


def test_rank_benchmark_rows_give_one_rank_from_all_three_methods(load_benchmark):
    module = load_benchmark("rank_benchmark")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        rows = module.main(["--n", "200", "--m", "4", "--taus", "0.2", "0.05", "--repeats", "1"])
    assert [row[0] for row in rows] == [0.2, 0.05]
    assert all(row[1] == row[2] == row[3] for row in rows)
    assert "| tau | rank (a) | rank full | rank hankel_rank |" in printed.getvalue()


def test_cut_diagnosis_records_each_cut_and_summarises_layers_by_their_poles(load_benchmark):
    import torch

    import compressm_torch as ct
    from reference_models.torch_models.lru import LRU

    module = load_benchmark("cut_diagnosis")
    compressor = ct.Compressor
    flags = "--task mnist1d --steps 20 --d-model 4 --state-dim 8 --layers 1 --tau 0.5 --energy squared"
    flags += " --reduce-from 10 --reduce-every 10 --reduce-until 0.5 --eval-every 10 --max-train 64"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        cuts = module.main(flags.split())
    assert ct.Compressor is compressor  # the recording class is gone after the run
    assert [step for step, _, _ in cuts] == [10]
    (_, before), (_, after) = (next(iter(ct.compressible_layers(model))) for model in cuts[0][1:])
    assert before.state_dim == 8 > after.state_dim
    assert f"final state dims [{after.state_dim}]" in printed.getvalue()
    assert printed.getvalue().count("fresh") == 1

    layer = LRU(3, 2)
    with torch.no_grad():  # poles 0.5 and 0.25 i: moduli 0.5, 0.25; |phase| 0 (as 2 pi) and pi/2
        layer.nu_log.copy_(torch.log(-torch.log(torch.tensor([0.5, 0.25]))))
        layer.theta_log.copy_(torch.log(torch.tensor([2 * math.pi, math.pi / 2])))
    summary = module.layer_summary(layer)
    assert summary["|pole| min/med/max"] == [0.25, 0.375, 0.5]
    assert summary["|phase| med"] == pytest.approx(math.pi / 4, abs=1e-3)
    gamma_b = (torch.exp(layer.gamma_log)[:, None] * torch.complex(layer.B_re, layer.B_im)).detach()
    row_norms = [math.sqrt(sum(abs(complex(v)) ** 2 for v in row)) for row in gamma_b]
    assert summary["|B row| med"] == pytest.approx(sum(row_norms) / 2, abs=1e-3)  # the mean of two

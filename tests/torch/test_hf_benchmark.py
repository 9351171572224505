"""Smoke test of benchmarks/hf_benchmark.py: a --quick run gives every arm finite numbers.

No timing assertions: timings belong to benchmarks/RESULTS.md, not to tests.
"""

import contextlib
import io
import json
import math

import pytest

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_bench(load_benchmark):
    return load_benchmark("hf_benchmark")


@pytest.mark.slow
def test_corpus_is_split_by_file_deterministically(hf_bench):
    first, second = hf_bench.corpus_splits(), hf_bench.corpus_splits()
    assert all((first[name] == second[name]).all() for name in ("train", "val", "test"))
    assert len(first["train"]) > 4 * len(first["val"]) > 0 and len(first["test"]) > 0


@pytest.mark.slow
def test_quick_run_has_every_arm_with_finite_numbers(hf_bench, tmp_path):
    path = tmp_path / "results.json"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        results = hf_bench.main(["--quick", "--json", str(path)])
    assert [r["kind"] for r in results] == list(hf_bench.KINDS)
    for result in results:
        for arm in ("full", "compressm", "small"):
            assert math.isfinite(result[arm]["val_bpb"]) and math.isfinite(result[arm]["test_bpb"])
            assert result[arm]["seconds"] > 0
        assert result["full"]["state_sizes"] == [hf_bench.QUICK.state] * hf_bench.QUICK.layers
        assert result["small"]["state_sizes"] == result["compressm"]["state_sizes"]
        assert all(t > 0 for t in result["step_seconds"].values())
        for check in result["averaged_projections"]:
            assert check["energy_ratio"] > 0 and 0 <= check["shared_top"] <= check["kept"]
    assert "| model | arm | val bits/byte |" in printed.getvalue()
    assert json.loads(path.read_text())["results"] == json.loads(json.dumps(results))

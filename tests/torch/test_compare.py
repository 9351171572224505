"""``compressm compare``: both test metrics, paired differences per seed, the sweep, a user's
own data, failing arms recorded while the others go on, and ``--resume``."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

import reference_models.train.run as run_module
from reference_models.cli import main
from reference_models.tasks import load_task
from reference_models.train.comparison import SWEEP_TAUS, Comparison, run_comparison
from reference_models.train.comparison_report import (
    ArmResult,
    Row,
    comparison_table,
    paired_differences,
    summary,
)
from reference_models.train.config import TrainConfig
from reference_models.train.run import compare, run_and_save

TINY = TrainConfig(task="digits", steps=20, batch_size=32, d_model=8, state_dim=12, n_layers=1, tau=0.2,
                   reduce_every=5, reduce_from=5, reduce_until=0.5, rollback_tolerance=0.5, eval_every=10,
                   warmup_steps=2, max_train=200)


def _run(arm, seed, last, best, dims, seconds, tau=None, metric="accuracy"):
    metrics = {"final_state_dims": dims, f"test_{metric}": last, "wall_clock_s": seconds}
    if best is not None:
        metrics[f"test_{metric}_at_best_val"] = best
    return ArmResult(arm, tau, seed, "done", metrics)


def _results(metric):
    """Two seeds of full, CompreSSM and small (tau 0.1); numbers chosen by hand."""
    return [
        _run("full", 0, 0.90, 0.92, [64], 10.0, metric=metric),
        _run("compressm", 0, 0.85, 0.88, [8], 6.0, 0.1, metric),
        _run("small", 0, 0.70, 0.75, [8], 5.0, 0.1, metric),
        _run("full", 1, 0.80, 0.82, [64], 12.0, metric=metric),
        _run("compressm", 1, 0.84, 0.86, [10], 7.0, 0.1, metric),
        _run("small", 1, 0.86, None, [10], 5.5, 0.1, metric),
    ]


@pytest.mark.parametrize(("metric", "sign"), [("accuracy", 1.0), ("mse", -1.0)])
def test_paired_improvements_per_seed_have_a_sign_that_favours_compressm(metric, sign):
    pairs = {pair["seed"]: pair for pair in paired_differences(_results(metric), metric)}
    assert pairs[0]["improvement"]["small"] == pytest.approx({"last": sign * 0.15, "best_val": sign * 0.13})
    assert pairs[0]["improvement"]["full"] == pytest.approx({"last": sign * -0.05, "best_val": sign * -0.04})
    assert pairs[1]["improvement"]["small"] == pytest.approx({"last": sign * -0.02})  # small has no best-val metric
    assert pairs[1]["total_state_dim"] == {"compressm": 10, "small": 10, "full": 64}
    assert pairs[1]["wall_clock_s"] == {"compressm": 7.0, "small": 5.5, "full": 12.0}
    rows = [Row("full", None, "full", "full"), Row("compressm", 0.1, "compressm", "compressm"), Row("small", 0.1, "small", "small")]
    for result in _results(metric):
        next(row for row in rows if row.arm == result.arm).results.append(result)
    report = summary(rows, _results(metric), metric)
    last_vs_small = next(e for e in report["paired_summary"] if e["versus"] == "small" and e["at"] == "last")
    expected = [sign * 0.15, sign * -0.02]
    assert last_vs_small["mean"] == pytest.approx(statistics.mean(expected))
    assert last_vs_small["std"] == pytest.approx(statistics.stdev(expected))
    assert last_vs_small["wins"] == 1
    assert report["higher_is_better"] is (metric == "accuracy")
    small = report["rows"][2]
    assert small["values_at_best_val"] == [0.75, None] and small["mean_at_best_val"] == 0.75
    table = comparison_table(rows, metric)
    assert f"| test {metric}, last step | test {metric}, best val step |" in table
    assert "| compressm | 0.8450 ± 0.0071 | 0.8700 ± 0.0141 | 9 | 9 | 6.5 | 1.69x |" in table


def _fake_trainer(calls, fail=()):
    """A stand-in for ``run_and_save``: writes metrics.json as a run would (dims: CompreSSM
    halves the state, the test accuracy grows with the total state), and raises for folders
    whose name starts with an entry of ``fail``."""

    def train_and_save(config, output, *, progress, data, **options):
        calls.append(output.name)
        if output.name.startswith(tuple(fail)):
            raise RuntimeError(f"boom in {output.name}")
        dims = [config.state_dim // 2 if config.tau else config.state_dim] if isinstance(config.state_dim, int) else list(config.state_dim)
        metrics = {"final_state_dims": dims, "test_accuracy": sum(dims) / 100, "test_accuracy_at_best_val": sum(dims) / 90,
                   "best_val_step": 10, "wall_clock_s": 1.0 + config.seed, "config": config.to_dict()}
        output.mkdir(parents=True)
        (output / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    return train_and_save


def test_a_failing_arm_is_recorded_the_others_go_on_and_resume_retries_only_it(tmp_path, capsys):
    data = load_task("digits", seed=0, max_train=50)
    calls = []
    first = run_comparison(TINY, tmp_path, _fake_trainer(calls, fail=["compressm_seed1"]), seeds=(0, 1), data=data, progress=False)
    assert calls == ["full_seed0", "compressm_seed0", "small_seed0", "full_seed1", "compressm_seed1"]
    assert "compressm (tau 0.2, seed 1) failed: RuntimeError: boom in compressm_seed1" in capsys.readouterr().err
    assert [(f["arm"], f["seed"], f["status"]) for f in first.summary["failures"]] == [("compressm", 1, "failed"), ("small", 1, "skipped")]
    assert first.failures[0]["error"] == {"type": "RuntimeError", "message": "boom in compressm_seed1"}
    assert "seed 1 failed: RuntimeError: boom in compressm_seed1 |" in first.table
    assert "seed 1 skipped: needs compressm (tau 0.2, seed 1), which failed |" in first.table
    record = json.loads((tmp_path / "arms" / "compressm_seed1.json").read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "RuntimeError"
    assert (tmp_path / "comparison.md").read_text().strip() == first.table
    assert json.loads((tmp_path / "comparison.json").read_text()) == first.summary

    calls.clear()
    resumed = run_comparison(TINY, tmp_path, _fake_trainer(calls), seeds=(0, 1), data=data, progress=False, resume=True)
    assert calls == ["compressm_seed1", "small_seed1"]  # the finished arms are read back
    assert resumed.failures == [] and resumed.summary["failures"] == []
    small = next(row for row in resumed.summary["rows"] if row["arm"] == "small")
    assert small["seeds"] == [0, 1] and small["total_state_dims"] == [6, 6]

    calls.clear()
    run_comparison(TINY.replace(steps=30), tmp_path, _fake_trainer(calls), seeds=(0,), data=data, progress=False, resume=True)
    assert calls == ["full_seed0", "compressm_seed0", "small_seed0"]  # another configuration: trained again


def test_an_invalid_per_arm_setting_fails_that_arm_only(tmp_path):
    """The HNN penalty needs a time-invariant model: its arm fails, the full model trains."""
    calls = []
    data = load_task("digits", seed=0, max_train=50)
    result = run_comparison(TINY.replace(model="selective"), tmp_path, _fake_trainer(calls), arms=["hnn"], data=data, progress=False)
    assert calls == ["full_seed0"]
    (failed,) = result.failures
    assert (failed["arm"], failed["error"]["type"]) == ("hnn_untruncated", "ValueError")
    assert "`hnn_weight` needs a time-invariant model" in failed["error"]["message"]
    assert [(f["arm"], f["status"]) for f in result.summary["failures"]] == [("hnn_untruncated", "failed"), ("hnn", "skipped")]


def _argv(tmp_path, *extra):
    return ["compare", "--task", "digits", "--steps", "20", "--batch-size", "32", "--d-model", "8", "--state-dim", "10",
            "--layers", "1", "--max-train", "200", "--reduce-every", "5", "--reduce-until", "0.5", "--eval-every", "10",
            "--tau", "0.2", "--seeds", "0", "--output", str(tmp_path), "--quiet", *extra]


@pytest.mark.slow
def test_the_command_exits_1_when_an_arm_fails_and_resume_finishes_it(tmp_path, monkeypatch, capsys):
    calls = []

    def flaky(config, output, **kwargs):
        calls.append(output.name)
        if output.name.startswith("small") and len(calls) < 4:
            raise RuntimeError("out of memory")
        return run_and_save(config, output, **kwargs)

    monkeypatch.setattr(run_module, "run_and_save", flaky)
    assert main(_argv(tmp_path)) == 1
    captured = capsys.readouterr()
    assert "1 arm(s) failed: small (tau 0.2, seed 0): RuntimeError" in captured.err
    assert "| small from scratch | — | — | — | — | — | — | seed 0 failed: RuntimeError: out of memory |" in captured.out
    assert main(_argv(tmp_path)) == 2  # a non-empty folder without --resume
    assert main(_argv(tmp_path, "--resume")) == 0
    assert calls == ["full_seed0", "compressm_seed0", "small_seed0", "small_seed0"]
    report = json.loads((tmp_path / "comparison.json").read_text())
    compressed = json.loads((tmp_path / "compressm_seed0" / "metrics.json").read_text())
    small = next(row for row in report["rows"] if row["arm"] == "small")
    assert small["final_state_dims"] == [compressed["final_state_dims"]]
    assert main(_argv(tmp_path, "--resume", "--overwrite")) == 2


@pytest.mark.slow
def test_sweep_plots_one_point_per_seed_and_tau(tmp_path):
    taus = (0.05, 0.4)
    result = compare(TINY, tmp_path, taus=taus, seeds=(0, 1), arms=["small", "truncate_dims"], progress=False)
    rows = {(row["arm"], row["tau"]): row for row in result.summary["rows"]}
    assert set(rows) == {("full", None)} | {(arm, tau) for arm in ("compressm", "small", "truncate_dims") for tau in taus}
    for tau in taus:
        compressed = rows["compressm", tau]
        assert len(compressed["values"]) == len(compressed["values_at_best_val"]) == 2
        for seed, dims in zip((0, 1), compressed["final_state_dims"], strict=True):
            metrics = json.loads((tmp_path / f"compressm_tau{tau:g}_seed{seed}" / "metrics.json").read_text())
            assert metrics["final_state_dims"] == dims
        assert rows["small", tau]["final_state_dims"] == compressed["final_state_dims"]
        assert rows["truncate_dims", tau]["total_state_dims"] == compressed["total_state_dims"]
    assert len([p for p in result.summary["paired"] if p["tau"] in taus]) == 4
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert "Paired by seed: improvement in test accuracy = CompreSSM minus the other arm" in result.table


def test_sweep_flag_defaults_to_log_spaced_taus(tmp_path, monkeypatch):
    seen = {}

    def record(config, output, *args, **kwargs):
        seen.update(kwargs)
        output.mkdir(parents=True, exist_ok=True)
        return Comparison("table", {"failures": [], "rows": [], "paired_summary": [], "higher_is_better": True})

    monkeypatch.setattr(run_module, "run_comparison", record)
    assert SWEEP_TAUS == pytest.approx([0.01 * 2**k for k in range(6)])
    assert main(_argv(tmp_path, "--sweep")) == 0
    assert seen["taus"] == list(SWEEP_TAUS)
    assert main(_argv(tmp_path / "other", "--sweep", "--taus", "0.3")) == 0
    assert seen["taus"] == [0.3]


@pytest.mark.slow
def test_compare_on_a_users_regression_arrays(tmp_path):
    """One target per sequence: the improvement is small MSE minus CompreSSM MSE."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 16, 2))
    y = np.stack([x[:, :, 0].mean(1), x[:, -4:, 1].mean(1)], axis=1)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    config = TINY.replace(task="arrays", data_file=str(path), max_train=None, state_dim=8)
    result = compare(config, tmp_path / "cmp", progress=False)
    pair = result.summary["paired"][0]
    rows = {row["arm"]: row for row in result.summary["rows"]}
    assert result.summary["metric"] == "mse" and result.summary["higher_is_better"] is False
    assert pair["improvement"]["small"]["last"] == pytest.approx(rows["small"]["values"][0] - rows["compressm"]["values"][0])
    assert "the other arm minus CompreSSM" in result.table


@pytest.mark.slow
def test_resume_continues_an_interrupted_arm_from_its_checkpoint(tmp_path):
    """An arm killed after its checkpoint (no outcome recorded) continues from it: the
    trainer is asked to resume, and the run ends as the uninterrupted one did."""
    calls, finished = [], {}

    def killed_small(config, output, **options):
        calls.append((output.name, options.get("resume", False)))
        metrics = run_and_save(config, output, **options)
        if output.name == "small_seed0" and not options.get("resume"):
            finished.update(metrics)
            raise KeyboardInterrupt  # killed after the last checkpoint, before compare recorded the arm
        return metrics

    with pytest.raises(KeyboardInterrupt):
        run_comparison(TINY, tmp_path, killed_small, progress=False)
    assert not (tmp_path / "arms" / "small_seed0.json").exists()
    assert (tmp_path / "small_seed0" / "checkpoint.safetensors").is_file()
    resumed = run_comparison(TINY, tmp_path, killed_small, progress=False, resume=True)
    assert calls == [("full_seed0", False), ("compressm_seed0", False), ("small_seed0", False), ("small_seed0", True)]
    small = next(row for row in resumed.summary["rows"] if row["arm"] == "small")
    assert small["values"] == [finished["test_accuracy"]] and small["final_state_dims"] == [finished["final_state_dims"]]


def test_headline_states_size_speed_and_paired_points():
    from reference_models.train.comparison_report import headline

    def row(arm, tau, mean, dims, seconds):
        return {"arm": arm, "tau": tau, "seeds": [0, 1], "mean": mean, "total_state_dim": dims, "wall_clock_s": seconds}

    def paired(versus, improvements):
        return {"tau": 0.5, "versus": versus, "at": "last", "improvements": improvements,
                "mean": sum(improvements) / 2, "wins": sum(v > 0 for v in improvements)}

    summary = {
        "higher_is_better": True,
        "rows": [row("full", None, 0.94, 256, [60.0, 60.0]), row("compressm", 0.5, 0.88, 13, [20.0, 40.0]),
                 row("small", 0.5, 0.80, 13, [10.0, 10.0])],
        "paired_summary": [paired("small", [0.10, 0.06]), paired("full", [-0.07, -0.05])],
    }
    (sentence,) = headline(summary)
    assert sentence == (
        "CompreSSM (tau 0.5, 2 seeds) cut the state from 256 to 13 in total and trained 2.0x faster than the "
        "full model; at the last step its test accuracy is 8.0 points above small-from-scratch at the same size "
        "(better in 2 of 2 seeds) and 6.0 points below the full model (better in 0 of 2 seeds)."
    )
    regression = summary | {"higher_is_better": False, "rows": [row("full", None, 0.003, 64, [60.0]),
                            row("compressm", 0.5, 0.006, 11, [30.0]), row("small", 0.5, 0.015, 11, [20.0])]}
    assert "test MSE is 2.5x lower than small-from-scratch" in headline(regression)[0]
    assert "2x higher than the full model" in headline(regression)[0]

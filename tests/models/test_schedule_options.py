"""The schedule's options through TrainConfig and the CLI: windows that scale with --steps,
errors that name the flags a user typed, and the new fields' defaults."""

import pytest

from compressm_core.schedule import check_steps
from reference_models import cli
from reference_models.train.config import TrainConfig


def test_the_reduction_window_scales_with_steps():
    for steps, checks in ((200, [5, 10, 15, 20]), (2000, [50, 100, 150, 200]), (40, [1, 2, 3, 4]), (10, [1])):
        schedule = TrainConfig(task="digits", steps=steps).schedule(metric_mode="max")
        assert list(check_steps(schedule)) == checks, steps


def test_the_faithful_defaults():
    config = TrainConfig()
    assert (config.mode, config.budget, config.timing, config.optimizer_state) == ("tolerance", "per_check", "steps", "slice")
    assert config.safety_net is None and not config.schedule(metric_mode="max").net  # no rollback in tolerance mode
    pragmatic = TrainConfig(mode="pragmatic", tau=None).schedule(metric_mode="max")
    assert pragmatic.net and pragmatic.fraction == 0.1 and pragmatic.rollback_tolerance == 0.02


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--steps", "5"], ["--steps 5", "--reduce-until 0.1", "raise --steps to at least 10"]),
        (["--steps", "200", "--reduce-from", "50"], ["--reduce-from 50", "step 20", "--reduce-until", "--steps 200"]),
        (["--steps", "200", "--reduce-every", "40"], ["--reduce-every 40", "step 20"]),
        (["--mode", "pragmatic", "--no-safety-net"], ["--safety-net"]),
        (["--tau", "1.5"], ["`tau` (--tau)", "1.5"]),
        (["--timing", "certified", "--certify-over", "0"], ["`certify_over` (--certify-over)"]),
        (["--budget", "run", "--mode", "fixed"], ["`budget` (--budget)"]),
    ],
)
def test_errors_name_the_flags(argv, flags, tmp_path, capsys):
    assert cli.main(["train", "--task", "digits", *argv, "--output", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    for flag in flags:
        assert flag in error, (flag, error)
    assert "`start`" not in error and "`interval`" not in error and "total_steps" not in error


def test_the_schedule_flags_reach_the_schedule(tmp_path, monkeypatch):
    seen = {}

    def fake_run(config, output, **kwargs):
        seen["schedule"] = config.schedule(metric_mode="max")
        raise ValueError("stop here")

    monkeypatch.setattr("reference_models.train.run.run_and_save", fake_run)
    argv = ["train", "--task", "digits", "--steps", "400", "--budget", "run", "--timing", "certified", "--certify-over", "3",
            "--chance-margin", "0.1", "--safety-net", "--recovery-steps", "7", "--after-rollback", "skip",
            "--optimizer-state", "slice", "--output", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    schedule = seen["schedule"]
    assert (schedule.budget, schedule.timing, schedule.certify_over, schedule.chance_margin) == ("run", "certified", 3, 0.1)
    assert schedule.net and schedule.recovery == 7 and schedule.after_rollback == "skip"
    assert schedule.optimizer_state == "slice" and schedule.check_interval == 10


def test_no_compress_turns_off_every_mode():
    args = cli._parser(TrainConfig(), {}, "train").parse_args(["train", "--mode", "fixed", "--no-compress"])
    assert not cli._config(args, TrainConfig()).compresses


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"safety_net": True, "rollback_tolerance": 0.0, "after_rollback": "skip", "optimizer_state": "slice"},
        {"timing": "certified", "certify_over": 1, "chance_margin": 0.0, "budget": "run", "tau": 0.3},
    ],
)
def test_the_torch_trainer_runs_the_new_schedules(options):
    from reference_models.train.torch_trainer import train

    config = TrainConfig(
        task="digits", steps=40, batch_size=32, d_model=8, state_dim=16, n_layers=1, reduce_every=5,
        reduce_until=0.5, eval_every=20, max_train=200, **{"tau": 0.2, **options},
    )
    model, record = train(config, progress=False)
    dims = [layer.ssm.state_dim for layer in model.blocks]
    assert record.metrics()["final_state_dims"] == dims

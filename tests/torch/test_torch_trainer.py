"""The PyTorch trainer end to end on a tiny configuration, checkpoints, and the CLI's errors."""

import json

import pytest
import torch

from reference_models.cli import main
from reference_models.train.checkpoint_torch import load_model, save_model
from reference_models.train.config import TrainConfig
from reference_models.train.run import run_and_save
from reference_models.train.torch_trainer import build_optimizer, train

TINY = TrainConfig(task="digits", steps=40, batch_size=32, d_model=8, state_dim=16, n_layers=1,
                   tau=0.2, reduce_every=4, reduce_until=0.5, eval_every=20, warmup_steps=5, max_train=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    metrics = run_and_save(TINY, output, progress=False)
    return output, metrics


def test_run_writes_metrics_checkpoint_and_plots(tiny_run):
    output, metrics = tiny_run
    on_disk = json.loads((output / "metrics.json").read_text())
    for key in ("final_state_dims", "test_accuracy", "wall_clock_s", "reductions", "config"):
        assert key in on_disk
    assert on_disk["final_state_dims"] == metrics["final_state_dims"]
    assert on_disk["final_state_dims"][0] < 16
    assert all({"step", "layer", "old_dim", "new_dim"} <= set(r) for r in on_disk["reductions"])
    assert all(r["step"] <= 20 for r in on_disk["reductions"])  # reduce_until = 0.5 of 40 steps
    for name in ("model.safetensors", "hsv_spectra.png", "state_dims.png", "val_metric_over_time.png"):
        assert (output / name).stat().st_size > 0


def test_reduced_checkpoint_loads_and_training_resumes(tiny_run):
    output, metrics = tiny_run
    model = load_model(output / "model.safetensors")
    assert model.config["state_dims"] == metrics["final_state_dims"]
    optimizer = build_optimizer(model, TINY)
    x = torch.randn(4, 64, 1)
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_checkpoint_round_trip_is_exact(tmp_path):
    model, _ = train(TINY.replace(steps=8, tau=None), progress=False)
    save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    x = torch.randn(2, 64, 1)
    model.eval()
    loaded.eval()
    assert torch.equal(model(x), loaded(x))


def test_checkpoint_of_another_shape_is_refused(tmp_path, tiny_run):
    output, _ = tiny_run
    from safetensors.torch import load_file, save_file

    state = load_file(str(output / "model.safetensors"))
    state["blocks.0.ssm.nu_log"] = torch.zeros(state["blocks.0.ssm.nu_log"].shape[0] + 2)
    save_file(state, str(tmp_path / "bad.safetensors"), metadata={"config": json.dumps(load_model(output / "model.safetensors").config)})
    with pytest.raises(ValueError, match="does not fit"):
        load_model(tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_model(tmp_path / "junk.safetensors")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--tau", "1.5"], "`tau` (--tau) must lie in (0, 1)"),
        (["train", "--steps", "0"], "`steps` must be a positive integer"),
        (["train", "--task", "smnist", "--data-dir", "/nonexistent/mnist"], "/nonexistent/mnist"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--output", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compressm: error:") and message in err and "\n" not in err


def test_cli_does_not_overwrite_earlier_results(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("{}")
    assert main(["train", "--output", str(tmp_path), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "metrics.json").read_text() == "{}"


def test_cli_unknown_task_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "imagenet"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err

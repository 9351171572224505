"""The PyTorch trainer with ``model="selective"``: a tiny selective-copying run that reduces,
its checkpoint, and the CLI's ``--model selective``."""

import json

import pytest
import torch

import compressm_torch as ct
from reference_models.cli import main
from reference_models.tasks import load_task
from reference_models.torch_models import SelectiveSequenceModel
from reference_models.train.checkpoint_torch import load_model
from reference_models.train.config import TrainConfig
from reference_models.train.run import run_and_save

TINY = TrainConfig(task="selective_copying", model="selective", steps=30, batch_size=16, d_model=8,
                   state_dim=16, n_layers=2, tau=0.3, energy="squared", reduce_every=5,
                   reduce_until=0.5, rollback_tolerance=1.0, eval_every=15, warmup_steps=3,
                   max_train=200, calibration_size=8)


@pytest.fixture(scope="module")
def selective_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("selective")
    return output, run_and_save(TINY, output, progress=False)


def test_selective_run_reduces_and_records(selective_run):
    output, metrics = selective_run
    assert metrics["initial_state_dims"] == [16, 16]
    assert all(d < 16 for d in metrics["final_state_dims"])
    assert {r["layer"] for r in metrics["reductions"]} == {"blocks.0.ssm", "blocks.1.ssm"}
    assert all(r["error_bound"] is None for r in metrics["reductions"])  # index selection: no bound
    on_disk = json.loads((output / "metrics.json").read_text())
    assert on_disk["final_state_dims"] == metrics["final_state_dims"]
    assert list(on_disk["hsv_history"][0]["hsv"]) == ["blocks.0.ssm", "blocks.1.ssm"]


def test_selective_checkpoint_reproduces_the_trained_model(selective_run):
    output, metrics = selective_run
    model = load_model(output / "model.safetensors")
    assert isinstance(model, SelectiveSequenceModel)
    assert [layer.state_dim for _, layer in ct.selective_layers(model)] == metrics["final_state_dims"]
    data = load_task("selective_copying", seed=0, max_train=200)
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(torch.from_numpy(data.x_test)), torch.from_numpy(data.y_test))
    assert float(mse) == pytest.approx(metrics["test_mse"], rel=1e-5)


def test_selective_models_need_complex_gramians():
    with pytest.raises(ValueError, match="`gramians` 'real_output' needs a time-invariant model"):
        TINY.replace(gramians="real_output")
    with pytest.raises(ValueError, match="`calibration_size` must be a positive integer, got 0"):
        TINY.replace(calibration_size=0)


def test_cli_trains_a_selective_model(tmp_path, capsys):
    code = main(["train", "--model", "selective", "--task", "selective_copying", "--steps", "6",
                 "--batch-size", "8", "--d-model", "8", "--state-dim", "8", "--layers", "1",
                 "--max-train", "64", "--reduce-every", "2", "--reduce-until", "0.5",
                 "--eval-every", "3", "--quiet", "--output", str(tmp_path / "cli")])
    assert code == 0
    assert "test_mse" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model.safetensors").is_file()


def test_cli_compares_selective_models(tmp_path, capsys):
    code = main(["compare", "--model", "selective", "--task", "selective_copying", "--steps", "6",
                 "--batch-size", "8", "--d-model", "8", "--state-dim", "8", "--layers", "1",
                 "--max-train", "64", "--reduce-every", "2", "--reduce-until", "0.5",
                 "--rollback-tolerance", "1.0", "--eval-every", "3", "--seeds", "0", "--quiet",
                 "--output", str(tmp_path / "cmp")])
    assert code == 0
    small = json.loads((tmp_path / "cmp" / "small_seed0" / "metrics.json").read_text())
    compressed = json.loads((tmp_path / "cmp" / "compressm_seed0" / "metrics.json").read_text())
    assert small["initial_state_dims"] == compressed["final_state_dims"]
    assert small["config"]["model"] == "selective"

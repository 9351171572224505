"""Runs that survive being stopped: checkpoints, resume (bit-identical), SIGTERM, divergence,
the files a run keeps up to date, and checkpoints read as untrusted input (PyTorch)."""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from reference_models.cli import main
from reference_models.train import torch_trainer
from reference_models.train.checkpoint_torch import load_model, load_training_state
from reference_models.train.config import TrainConfig
from reference_models.train.outputs import prepare_output
from reference_models.train.run import run_and_save
from reference_models.train.run_state import RunInterrupted, TrainingDiverged

TINY = TrainConfig(task="digits", steps=40, batch_size=32, d_model=8, state_dim=16, n_layers=1, tau=0.2,
                   reduce_every=4, reduce_until=0.5, eval_every=10, warmup_steps=5, max_train=300)
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output = tmp_path_factory.mktemp("uninterrupted")
    model, record = torch_trainer.train(TINY, progress=False, output=output)
    return output, model, record


def test_run_keeps_its_files_up_to_date(uninterrupted):
    output, _, record = uninterrupted
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["completed_steps"] == 40 and metrics["device"] == "cpu"
    assert [e["step"] for e in metrics["evaluations"]] == [10, 20, 30, 40]
    assert all(math.isfinite(e["train_loss"]) for e in metrics["evaluations"])
    last_cut = max((r["step"] for r in metrics["reductions"]), default=0)  # a cut precedes its step's evaluation
    at_final_dims = [e for e in metrics["evaluations"] if e["step"] >= last_cut]
    best = max(at_final_dims, key=lambda e: e["val_accuracy"])  # first of equals: strict improvement
    assert metrics["best_val_step"] == best["step"]
    assert record.metrics()["test_accuracy_at_best_val"] is not None
    rows = list(csv.DictReader((output / "log.csv").open()))
    reductions = [row for row in rows if row["event"] == "reduction"]
    assert [int(row["step"]) for row in reductions] == [r["step"] for r in record.reductions]
    evaluations = [row for row in rows if row["event"] == "evaluation"]
    assert [float(row["val_metric"]) for row in evaluations] == [e["val_accuracy"] for e in record.evaluations]
    assert load_model(output / "best.safetensors").config["state_dims"] == best["state_dims"]
    assert not [p for p in output.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temporaries


def test_test_metric_at_best_validation_step_is_that_models(tmp_path):
    _, record = torch_trainer.train(TINY, progress=False, output=tmp_path)
    best = load_model(tmp_path / "best.safetensors")
    data = torch_trainer.load_task("digits", seed=0, max_train=300)
    assert record.test_metric_at_best_val == torch_trainer.evaluate(best, data.x_test, data.y_test, data.kind)


def test_interrupted_run_resumes_bit_identical(uninterrupted, tmp_path, monkeypatch, stop_at, without_timings):
    _, model, record = uninterrupted
    stop_at(torch_trainer, 13)  # after the cuts at steps 4, 8, 12; before the one at 16
    with pytest.raises(RunInterrupted, match=f"SIGTERM at step 14: .*resume with: compressm train --resume {tmp_path}"):
        torch_trainer.train(TINY, progress=False, output=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["completed_steps"] == 10
    assert load_training_state(tmp_path / "checkpoint.safetensors").state["step"] == 14
    monkeypatch.undo()
    resumed, resumed_record = torch_trainer.train(TINY, progress=False, output=tmp_path, resume=True)
    assert resumed_record.reductions[0]["step"] == 4 and resumed_record.current_dims == record.current_dims
    expected = model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in resumed.state_dict().items())
    assert without_timings(resumed_record.metrics()) == without_timings(record.metrics())
    logged = [{k: v for k, v in row.items() if k != "wall_clock_s"} for row in csv.DictReader((tmp_path / "log.csv").open())]
    original = [{k: v for k, v in row.items() if k != "wall_clock_s"} for row in csv.DictReader((uninterrupted[0] / "log.csv").open())]
    assert logged == original


def test_resume_between_a_cut_and_its_rollback_is_bit_identical(tmp_path, monkeypatch, stop_at, without_timings):
    """The safety net judges the cut of step 4 at step 7 and rolls it back; the run is stopped
    at step 5, while the pre-cut model and optimizer wait in the checkpoint."""
    config = TINY.replace(safety_net=True, rollback_tolerance=0.0, recovery_steps=3, after_rollback="skip", lr=0.02,
                          optimizer_state="reset")
    model, record = torch_trainer.train(config, progress=False)
    assert next((r["step"], r["judged_step"]) for r in record.rollbacks) == (4, 7) and record.reductions
    stop_at(torch_trainer, 4)
    with pytest.raises(RunInterrupted, match="at step 5"):
        torch_trainer.train(config, progress=False, output=tmp_path)
    assert load_training_state(tmp_path / "checkpoint.safetensors").pending_model is not None
    monkeypatch.undo()
    resumed, resumed_record = torch_trainer.train(config, progress=False, output=tmp_path, resume=True)
    expected = model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in resumed.state_dict().items())
    assert without_timings(resumed_record.metrics()) == without_timings(record.metrics())


class Killed(BaseException):
    """Stands for SIGKILL: the process ends there, writing nothing more."""


def test_killed_run_loses_only_the_steps_since_the_last_checkpoint(uninterrupted, tmp_path, monkeypatch, without_timings):
    original = torch_trainer.learning_rate_factor

    def factor(index, config):
        if index == 25:
            raise Killed
        return original(index, config)

    monkeypatch.setattr(torch_trainer, "learning_rate_factor", factor)
    with pytest.raises(Killed):
        torch_trainer.train(TINY.replace(checkpoint_every=20), progress=False, output=tmp_path)
    assert load_training_state(tmp_path / "checkpoint.safetensors").state["step"] == 20
    monkeypatch.undo()
    _, record = torch_trainer.train(TINY, progress=False, output=tmp_path, resume=True)
    assert without_timings(record.metrics()) == without_timings(uninterrupted[2].metrics())


@pytest.mark.slow  # a subprocess that imports torch
def test_sigterm_writes_a_checkpoint_and_says_how_to_resume(tmp_path):
    output = tmp_path / "run"
    argv = ["train", "--task", "digits", "--max-train", "300", "--steps", "100000", "--batch-size", "16", "--d-model", "4",
            "--state-dim", "8", "--layers", "1", "--eval-every", "5", "--no-compress", "--quiet", "--output", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reference_models.cli", *argv], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (output / "checkpoint.safetensors").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr
    assert f"checkpoint written; resume with: compressm train --resume {output}" in stderr.strip().splitlines()[-1]
    step = load_training_state(output / "checkpoint.safetensors").state["step"]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["completed_steps"] <= step and metrics["test_accuracy"] is None
    assert not (output / "failure.json").exists()


def test_resume_finishes_a_run_from_the_command_line(tmp_path, capsys, monkeypatch, stop_at):
    stop_at(torch_trainer, 13, signal.SIGINT)
    argv = ["train", "--task", "digits", "--max-train", "300", "--steps", "40", "--batch-size", "32", "--d-model", "8",
            "--state-dim", "16", "--layers", "1", "--tau", "0.2", "--reduce-every", "4", "--reduce-until", "0.5",
            "--eval-every", "10", "--quiet", "--output", str(tmp_path)]
    assert main(argv) == 128 + signal.SIGINT
    assert "resume with: compressm train --resume" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["completed_steps"] == 40 and metrics["test_accuracy"] is not None
    assert (tmp_path / "model.safetensors").exists()


def test_divergence_stops_at_once_naming_step_loss_and_lr(tmp_path):
    config = TINY.replace(lr=1e6, warmup_steps=0, eval_every=1, reduce_every=30, reduce_until=1.0)
    with pytest.raises(TrainingDiverged, match=r"diverged at step (\d+): loss nan, gradient norm nan, learning rate 9\.\d+e\+05") as caught:
        run_and_save(config, tmp_path, progress=False)
    step = int(str(caught.value).split("step ")[1].split(":")[0])
    state = load_training_state(tmp_path / "checkpoint.safetensors")
    assert state.state["step"] == step - 1  # the last good checkpoint is kept
    assert all(torch.isfinite(p).all() for p in state.model.parameters())
    assert not state.state["record"]["reductions"]  # the check at step 30 never saw NaN poles
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert failure["error"] == "TrainingDiverged" and f"step {step}" in failure["message"]


def test_overwrite_clears_the_previous_run(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "rank_stability.png").write_bytes(b"stale")
    with pytest.raises(ValueError, match="is not empty"):
        prepare_output(tmp_path)
    prepare_output(tmp_path, overwrite=True)
    assert not list(tmp_path.iterdir())
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="compressm did not write"):
        prepare_output(tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").exists()


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    with pytest.raises(ValueError, match="nonexistent"):
        run_and_save(TINY.replace(task="smnist", data_dir="/nonexistent/mnist"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def checkpoint_file(uninterrupted):
    return uninterrupted[0] / "checkpoint.safetensors"


def tampered(source: Path, target: Path, *, config=None, tensors=None, metadata=None) -> Path:
    with safe_open(str(source), framework="pt") as handle:
        found = handle.metadata()
    state = load_file(str(source))
    if config is not None:
        found["config"] = json.dumps(config(json.loads(found["config"])))
    state = tensors(state) if tensors is not None else state
    save_file(state, str(target), metadata={**found, **(metadata or {})})
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: {**c, "d_model": 20000}, r"`encoder.weight` is F32 \[8, 1\], expected F32 \[20000, 1\]"),
        (lambda c: {**c, "d_model": "8"}, "field `d_model` must be a positive integer"),
        (lambda c: {**c, "state_dims": [3, 3]}, "field `state_dims` must be a list of n_layers=1"),
        (lambda c: {**c, "layer": "gru"}, "field `layer` must be one of"),
        (lambda c: {**c, "surprise": 1}, "field `surprise` is unknown"),
        (lambda c: {**c, "layer_options": {"r_min": "x"}}, r"field `layer_options.r_min` must be a number"),
        (lambda c: {**c, "layer_options": {"r_min": 0.5, "r_max": 2.0}},
         r"field `layer_options`: LRU needs 0 <= `r_min` <= `r_max` < 1 .* got r_min=0.5, r_max=2.0"),
        (lambda c: {k: v for k, v in c.items() if k != "pooling"}, "field `pooling` must be present"),
        (lambda c: [c], "field `config` must be a JSON object"),
    ],
)
def test_tampered_configs_raise_one_value_error_naming_the_field(checkpoint_file, tmp_path, change, message):
    path = tampered(checkpoint_file, tmp_path / "bad.safetensors", config=change)
    with pytest.raises(ValueError, match=message):
        load_training_state(path)


def test_a_claimed_huge_model_fails_before_allocating(uninterrupted, tmp_path):
    path = tampered(uninterrupted[0] / "best.safetensors", tmp_path / "big.safetensors",
                    config=lambda c: {**c, "d_model": 20000, "n_layers": 1})
    start = time.perf_counter()
    with pytest.raises(ValueError, match="does not fit its recorded model"):
        load_model(path)
    assert time.perf_counter() - start < 5  # not the 30 s an allocation of 1.6e9 floats takes


def test_tampered_tensors_and_versions_are_refused(checkpoint_file, tmp_path):
    def wrong_moment(state):
        name = next(n for n in state if n.endswith(".exp_avg"))
        return {**state, name: torch.zeros(state[name].numel() + 2)}

    cases = [
        ({"tensors": lambda s: {**s, "extra.weight": torch.zeros(2)}}, r"unknown tensors \['extra.weight'\]"),
        ({"tensors": wrong_moment}, "optimizer `exp_avg` of parameter"),
        ({"tensors": lambda s: {k: v for k, v in s.items() if k != "model.decoder.bias"}}, r"missing \['decoder.bias'\]"),
        ({"metadata": {"format": "99"}}, "has format '99', this version of compressm reads '1'"),
        ({"metadata": {"state": "{not json"}}, "metadata field `state` is not valid JSON"),
        ({"metadata": {"optimizer": json.dumps({"param_groups": 3})}}, "`optimizer` must hold `param_groups`"),
    ]
    for i, (change, message) in enumerate(cases):
        path = tampered(checkpoint_file, tmp_path / f"bad{i}.safetensors", **change)
        with pytest.raises(ValueError, match=message):
            state = load_training_state(path)
            torch_trainer.load_optimizer(torch_trainer.build_optimizer(state.model, TINY), state.optimizer, path)


def test_resume_refuses_another_runs_configuration(uninterrupted, tmp_path):
    shutil.copy(uninterrupted[0] / "checkpoint.safetensors", tmp_path / "checkpoint.safetensors")
    with pytest.raises(ValueError, match=r"belongs to a run with `lr` = 0\.003, not 0\.1"):
        torch_trainer.train(TINY.replace(lr=0.1), progress=False, output=tmp_path, resume=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--resume", "{tmp}/nothing"], "holds no checkpoint.safetensors: nothing to resume"),
        (["train", "--output", "{tmp}/file.txt/run", "--steps", "5", "--task", "digits", "--no-compress", "--quiet"], "cannot be created"),
        (["train", "--device", "cuda:7", "--steps", "5", "--task", "digits", "--no-compress", "--quiet"], "`--device` 'cuda:7' is not available"),
        (["train", "--device", "quantum"], "`device` must be 'auto'"),
    ],
)
def test_cli_user_mistakes_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    (tmp_path / "nothing").mkdir()
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_cli_refuses_a_checkpoint_of_another_version(checkpoint_file, tmp_path, capsys):
    tampered(checkpoint_file, tmp_path / "checkpoint.safetensors", metadata={"format": "0"})
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 2
    assert "has format '0', this version of compressm reads '1'" in capsys.readouterr().err


def test_progress_bar_names_the_run_and_announces_reductions(tmp_path, capsys):
    torch_trainer.train(TINY.replace(steps=10, eval_every=10), progress=True, label="compressm tau 0.2 seed 0")
    out = capsys.readouterr()
    text = out.out + out.err
    assert "compressm tau 0.2 seed 0: training on cpu" in text
    assert "compressm tau 0.2 seed 0: step 4: cut blocks.0.ssm 16 -> " in text
    assert "batch_acc=" in text


def test_tensorboard_logs_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    torch_trainer.train(TINY.replace(steps=10, tensorboard=True), progress=False, output=tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_tensorboard_missing_is_one_line(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from reference_models.train import run_log

    def missing(name):
        raise ImportError(name)

    monkeypatch.setattr(run_log, "importlib", SimpleNamespace(import_module=missing))
    with pytest.raises(ValueError, match=r'`--tensorboard` needs TensorBoard: pip install "compressm\[tensorboard\]"'):
        run_log.RunLog(tmp_path, "accuracy", tensorboard=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_reducing_run_on_cuda(tmp_path):
    metrics = run_and_save(TINY.replace(device="cuda"), tmp_path, progress=False)
    assert metrics["device"].startswith("cuda")
    assert metrics["final_state_dims"][0] < 16 and math.isfinite(metrics["test_accuracy"])
    assert load_model(tmp_path / "model.safetensors").config["state_dims"] == metrics["final_state_dims"]


def test_float64_analysis_runs_where_float64_exists():
    from compressm_torch.selective import analysis_device

    assert analysis_device(torch.device("mps")) == torch.device("cpu")  # MPS has no float64
    assert analysis_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert analysis_device(torch.device("cpu")) == torch.device("cpu")


def test_cli_a_folder_that_cannot_be_read_is_one_line(tmp_path, capsys, monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/smnist")

    monkeypatch.setattr(torch_trainer, "load_task", unreadable)
    assert main(["train", "--task", "digits", "--steps", "5", "--no-compress", "--quiet", "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == "compressm: error: /data/smnist: Permission denied"
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_of_models_sharing_parameters_saves(tmp_path, uninterrupted):
    """A pending cut's model keeps the layers the cut did not touch: the same parameters."""
    from reference_models.train.checkpoint_torch import save_training_state

    model = uninterrupted[1]
    optimizer = torch_trainer.build_optimizer(model, TINY)
    path = save_training_state(tmp_path / "c.safetensors", model=model, optimizer=optimizer, state={}, best=model, pending=(model, optimizer))
    loaded = load_training_state(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.best.state_dict().values(), model.state_dict().values(), strict=True))


def test_a_second_ctrl_c_stops_at_once(tmp_path, monkeypatch):
    original = torch_trainer.learning_rate_factor

    def factor(index, config):
        if index == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return original(index, config)

    monkeypatch.setattr(torch_trainer, "learning_rate_factor", factor)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    try:
        with pytest.raises(KeyboardInterrupt):
            torch_trainer.train(TINY, progress=False, output=tmp_path)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers given back
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_checkpoint_in_float64_loads_cast_to_the_models_dtype(uninterrupted, tmp_path):
    """JAX with x64 on writes float64 weights; they load into the float32 model exactly cast."""
    output = uninterrupted[0]
    with safe_open(str(output / "best.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    wide = {name: value.double() for name, value in load_file(str(output / "best.safetensors")).items()}
    save_file(wide, str(tmp_path / "wide.safetensors"), metadata=metadata)
    loaded = load_model(tmp_path / "wide.safetensors")
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, wide[name].float()), name

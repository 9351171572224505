"""The LRU's pole ring as a run option: ``TrainConfig.lru_r_min``/``lru_r_max``, ``--r-min``/
``--r-max``, config.toml, checkpoints and ``--resume``, and the models both trainers build.

Oracle for the poles: the closed form ``|lambda| = exp(-exp(nu_log))`` evaluated in NumPy on
the layers' parameters."""

from __future__ import annotations

import inspect
import json
import math
import signal
import sys

import numpy as np
import pytest

from reference_models import cli
from reference_models.tasks.dataset import SequenceDataset
from reference_models.train.config import TrainConfig
from reference_models.train.config_file import read_config, write_config
from reference_models.train.run_state import check_resumable, config_from_dict, resumed_config

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

RING = ("--r-min", "0.4", "--r-max", "0.6")
SMALL = TrainConfig(task="digits", steps=8, batch_size=16, d_model=4, state_dim=32, n_layers=2, tau=None,
                    eval_every=4, warmup_steps=0, lru_r_min=0.4, lru_r_max=0.6)


def toy_data() -> SequenceDataset:
    rng = np.random.default_rng(0)

    def split(count):
        x = rng.standard_normal((count, 12, 2)).astype(np.float32)
        return x, (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(64), split(16), split(16)
    return SequenceDataset("toy", "classification", x_train, y_train, x_val, y_val, x_test, y_test, num_classes=2)


def parsed(argv: list[str]) -> TrainConfig:
    base, options, command = cli._defaults(argv)
    return cli._config(cli._parser(base, options, command).parse_args(argv), base)


def moduli(nu_logs) -> np.ndarray:
    """|lambda| = exp(-exp(nu_log)) of every layer's poles, concatenated."""
    return np.concatenate([np.exp(-np.exp(np.asarray(nu_log, dtype=np.float64))) for nu_log in nu_logs])


def test_the_defaults_are_the_lru_layers_own():
    defaults = TrainConfig()
    for module in ("torch", "jax"):
        layer = pytest.importorskip(f"reference_models.{module}_models").LRU
        parameters = inspect.signature(layer).parameters
        assert (parameters["r_min"].default, parameters["r_max"].default) == (defaults.lru_r_min, defaults.lru_r_max)
    assert defaults.layer_options() == {"r_min": 0.9, "r_max": 0.999}
    assert TrainConfig(model="s5").layer_options() == {} and TrainConfig(model="selective").layer_options() == {}


@pytest.mark.parametrize(
    ("r_min", "r_max"),
    [(0.9, 1.0), (0.5, 1.5), (0.95, 0.9), (-0.1, 0.5), (0.0, 0.0), (True, 0.9), (math.nan, 0.9), ("0.5", 0.9)],
)
def test_a_ring_outside_the_unit_disc_names_both_fields_and_flags(r_min, r_max):
    message = (rf"`lru_r_min` \(--r-min\) and `lru_r_max` \(--r-max\) must satisfy 0 <= lru_r_min <= lru_r_max < 1 and lru_r_max > 0 "
               rf".* got lru_r_min={r_min!r}, lru_r_max={r_max!r}")
    with pytest.raises(ValueError, match=message):
        TrainConfig(lru_r_min=r_min, lru_r_max=r_max)


def test_a_ring_of_zero_width_is_accepted():
    assert TrainConfig(lru_r_min=0.7, lru_r_max=0.7).layer_options() == {"r_min": 0.7, "r_max": 0.7}


@pytest.mark.parametrize("model", ["s5", "selective"])
def test_a_ring_for_another_layer_is_refused(model, capsys):
    with pytest.raises(ValueError, match=rf"set the pole ring of LRU layers; model '{model}' has none, got lru_r_min=0.4"):
        TrainConfig(model=model, lru_r_min=0.4)
    assert TrainConfig(model=model).lru_r_min == 0.9  # the defaults are no request
    assert cli.main(["train", "--model", model, "--r-max", "0.95", "--no-compress", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(--r-max)" in err[0] and "got lru_r_min=0.9, lru_r_max=0.95" in err[0]


@pytest.mark.parametrize("command", ["train", "compare", "demo"])
def test_the_flags_set_it(command):
    assert (parsed([command]).lru_r_min, parsed([command]).lru_r_max) == (0.9, 0.999)
    config = parsed([command, *RING])
    assert (config.lru_r_min, config.lru_r_max) == (0.4, 0.6)


def test_config_toml_round_trips_the_ring(tmp_path):
    path = write_config(TrainConfig(lru_r_min=0.4, lru_r_max=0.6), tmp_path / "config.toml")
    with path.open("rb") as file:
        table = tomllib.load(file)  # an independent TOML reader
    assert (table["lru_r_min"], table["lru_r_max"]) == (0.4, 0.6)
    assert read_config(path) == TrainConfig(lru_r_min=0.4, lru_r_max=0.6)
    assert parsed(["train", "--config", str(path)]).lru_r_min == 0.4
    assert parsed(["train", "--config", str(path), "--r-min", "0.5"]).lru_r_min == 0.5


def test_a_checkpoint_config_keeps_the_ring_and_resume_refuses_another():
    """What ``--resume`` reads back from a checkpoint's ``train_config``, and compares."""
    saved = json.loads(json.dumps(SMALL.to_dict()))
    assert config_from_dict(saved) == SMALL
    state = {"step": 4, "train_config": saved, "record": {}, "batches": {}, "compressor": {}, "elapsed_s": 0.0,
             "accumulated": {"loss": 0.0, "metric": 0.0, "batches": 0}}
    check_resumable(state, SMALL, "checkpoint.safetensors")
    with pytest.raises(ValueError, match=r"belongs to a run with `lru_r_min` = 0\.4, not 0\.5"):
        check_resumable(state, SMALL.replace(lru_r_min=0.5), "checkpoint.safetensors")


def test_the_torch_model_starts_on_the_ring_and_its_checkpoints_keep_it(tmp_path):
    torch = pytest.importorskip("torch")
    from reference_models.train.checkpoint_torch import load_model, save_model
    from reference_models.train.torch_trainer import build_model

    config = parsed(["train", "--task", "digits", "--state-dim", "64", *RING])
    torch.manual_seed(0)
    model = build_model(config, toy_data())
    found = moduli(block.ssm.nu_log.detach().numpy() for block in model.blocks)
    assert found.size == 128 and found.min() >= 0.4 and found.max() <= 0.6
    loaded = load_model(save_model(model, tmp_path / "model.safetensors"))
    assert loaded.config["layer_options"] == {"r_min": 0.4, "r_max": 0.6}
    assert all(block.ssm.r_min == 0.4 and block.ssm.r_max == 0.6 for block in loaded.blocks)


def test_the_jax_model_starts_on_the_ring_and_its_checkpoints_keep_it(tmp_path, jax_default_precision):
    jax = pytest.importorskip("jax")
    from reference_models.jax_models import model_config
    from reference_models.train.checkpoint_jax import load_model, save_model
    from reference_models.train.jax_trainer import build_model

    config = parsed(["train", "--backend", "jax", "--task", "digits", "--state-dim", "64", *RING])
    model = build_model(config, toy_data(), jax.random.key(0))
    found = moduli(block.ssm.nu_log for block in model.blocks)
    assert found.size == 128 and found.min() >= 0.4 and found.max() <= 0.6
    loaded = load_model(save_model(model, tmp_path / "model.safetensors"))
    assert model_config(loaded)["layer_options"] == {"r_min": 0.4, "r_max": 0.6, "max_phase": 2 * math.pi}


def test_a_run_stopped_and_resumed_from_the_command_line_keeps_the_ring(tmp_path, monkeypatch, stop_at, capsys):
    pytest.importorskip("torch")
    from reference_models.train import torch_trainer
    from reference_models.train.checkpoint_torch import load_model

    stop_at(torch_trainer, 5, signal.SIGINT)
    argv = ["train", "--task", "digits", "--max-train", "200", "--steps", "8", "--batch-size", "16", "--d-model", "4",
            "--state-dim", "8", "--layers", "1", "--no-compress", "--eval-every", "4", *RING, "--quiet",
            "--output", str(tmp_path)]
    assert cli.main(argv) == 128 + signal.SIGINT
    capsys.readouterr()
    monkeypatch.undo()
    resumed = resumed_config(tmp_path, "auto", None, False)
    assert (resumed.lru_r_min, resumed.lru_r_max) == (0.4, 0.6)
    assert cli.main(["train", "--resume", str(tmp_path), "--quiet"]) == 0
    written = read_config(tmp_path / "config.toml")
    assert (written.lru_r_min, written.lru_r_max) == (0.4, 0.6)
    assert load_model(tmp_path / "model.safetensors").config["layer_options"] == {"r_min": 0.4, "r_max": 0.6}

"""The Gramians' horizon as a run option: ``TrainConfig.horizon``, ``--horizon``, config.toml,
the paper presets, resuming, and the trainers resolving "sequence" to the data's length."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reference_models import cli
from reference_models.tasks.dataset import SequenceDataset
from reference_models.train.config import TrainConfig
from reference_models.train.config_file import read_config, write_config
from reference_models.train.presets import PRESETS
from reference_models.train.run_state import config_from_dict

#: Sequences of length 12 (not a task's usual length): "sequence" must come from the data.
LENGTH = 12
SMALL = TrainConfig(task="digits", steps=8, batch_size=16, d_model=4, state_dim=8, n_layers=1, tau=0.2,
                    reduce_every=2, reduce_until=0.5, eval_every=4, warmup_steps=0)


def toy_data() -> SequenceDataset:
    rng = np.random.default_rng(0)

    def split(count):
        x = rng.standard_normal((count, LENGTH, 2)).astype(np.float32)
        return x, (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(64), split(16), split(16)
    return SequenceDataset("toy", "classification", x_train, y_train, x_val, y_val, x_test, y_test, num_classes=2)


def test_the_default_is_the_sequence_length_and_it_resolves():
    assert TrainConfig().horizon == "sequence"
    assert TrainConfig().resolved_horizon(64) == 64
    assert TrainConfig(horizon=None).resolved_horizon(64) is None
    assert TrainConfig(horizon=30).resolved_horizon(64) == 30


def test_selective_models_record_no_horizon():
    assert TrainConfig(model="selective").resolved_horizon(64) is None


@pytest.mark.parametrize("value", [0, -5, True, 2.5, "seq", "none", "40"])
def test_a_bad_horizon_names_the_field_and_the_value(value):
    with pytest.raises(ValueError, match=rf"`horizon` must be 'sequence' .* got {value!r}"):
        TrainConfig(horizon=value)


def parsed(argv: list[str]) -> TrainConfig:
    base, options, command = cli._defaults(argv)
    return cli._config(cli._parser(base, options, command).parse_args(argv), base)


@pytest.mark.parametrize("command", ["train", "compare", "demo"])
def test_the_flag_sets_it(command):
    assert parsed([command]).horizon == "sequence"
    assert parsed([command, "--horizon", "none"]).horizon is None
    assert parsed([command, "--horizon", "25"]).horizon == 25
    assert parsed([command, "--horizon", "sequence"]).horizon == "sequence"


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5", "None"])
def test_a_bad_flag_value_names_the_flag_and_the_value(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parsed(["train", "--horizon", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --horizon" in err and repr(value) in err


@pytest.mark.parametrize("horizon", [None, 40, "sequence"])
def test_config_toml_round_trips_the_horizon(horizon, tmp_path):
    path = write_config(TrainConfig(horizon=horizon), tmp_path / "config.toml")
    assert read_config(path).horizon == horizon
    assert parsed(["train", "--config", str(path)]).horizon == horizon
    assert parsed(["train", "--config", str(path), "--horizon", "7"]).horizon == 7


def test_a_checkpoint_config_keeps_the_horizon():
    """What ``--resume`` reads back from a checkpoint's ``train_config``."""
    for horizon in (None, 33, "sequence"):
        assert config_from_dict(json.loads(json.dumps(TrainConfig(horizon=horizon).to_dict()))).horizon == horizon


def test_the_paper_presets_use_the_infinite_horizon():
    assert PRESETS and all(config.horizon is None for config in PRESETS.values())
    assert parsed(["train", "--preset", "smnist-tau0.01"]).horizon is None


def test_the_torch_trainer_resolves_sequence_to_the_data_length():
    torch = pytest.importorskip("torch")
    import compressm_torch as ct
    from reference_models.train.torch_trainer import build_model, train

    data = toy_data()
    _, record = train(SMALL, data=data, progress=False)
    assert record.horizon == LENGTH and record.metrics()["horizon"] == LENGTH
    torch.manual_seed(SMALL.seed)
    initial = build_model(SMALL, data)
    expected = ct.hankel_singular_values(initial, horizon=LENGTH)["blocks.0.ssm"].tolist()
    assert record.hsv_history[0]["hsv"]["blocks.0.ssm"] == pytest.approx(expected, rel=1e-9)
    assert not np.allclose(expected, ct.hankel_singular_values(initial)["blocks.0.ssm"].tolist())
    assert record.reductions and all(r["error_bound"] is None for r in record.reductions)  # no bound
    _, infinite = train(SMALL.replace(horizon=None), data=data, progress=False)
    assert infinite.metrics()["horizon"] is None
    assert infinite.reductions and all(r["error_bound"] > 0 for r in infinite.reductions)
    json.dumps(record.metrics(), allow_nan=False)  # valid JSON: no NaN anywhere


@pytest.mark.slow
def test_the_jax_trainer_resolves_sequence_to_the_data_length(jax_default_precision):
    pytest.importorskip("jax")
    from reference_models.train.jax_trainer import train

    _, record = train(SMALL.replace(backend="jax"), data=toy_data(), progress=False)
    assert record.horizon == LENGTH and record.metrics()["horizon"] == LENGTH
    assert record.reductions and all(r["error_bound"] is None for r in record.reductions)


def test_post_training_truncation_uses_the_run_horizon(tmp_path):
    pytest.importorskip("torch")
    import compressm_torch as ct
    from reference_models.train.checkpoint_torch import save_model
    from reference_models.train.torch_trainer import build_model
    from reference_models.train.torch_truncation import truncated_run

    data = toy_data()
    model = build_model(SMALL, data).double()
    path = save_model(model, tmp_path / "model.safetensors")
    source = {"config": SMALL.to_dict(), "horizon": 5, "final_state_dims": [8], "test_accuracy": 0.5, "wall_clock_s": 1.0}
    _, metrics = truncated_run(str(path), source, data, tau=0.3)
    expected = ct.hankel_singular_values(model, horizon=5)["blocks.0.ssm"].tolist()
    assert metrics["hsv"]["blocks.0.ssm"] == pytest.approx(expected, rel=1e-6)
    assert metrics["error_bounds"] == {"blocks.0.ssm": None} and metrics["truncation"]["horizon"] == 5
    _, metrics = truncated_run(str(path), {**source, "horizon": None}, data, tau=0.3)
    assert metrics["error_bounds"]["blocks.0.ssm"] > 0


def test_rank_stability_logging_uses_the_run_horizon():
    torch = pytest.importorskip("torch")
    import compressm_torch as ct
    from reference_models.train.stability import factor_product
    from reference_models.train.torch_trainer import build_model

    torch.manual_seed(0)
    model = build_model(SMALL, toy_data()).double()
    (name, layer), = ct.reducible_layers(model)
    singular = np.linalg.svd(factor_product(layer, "complex", LENGTH), compute_uv=False)
    np.testing.assert_allclose(singular, ct.hankel_singular_values(model, horizon=LENGTH)[name].numpy(), rtol=1e-9)


def test_post_training_truncation_records_the_poles_it_moved_in(tmp_path, escaping_poles):
    """``escaping_poles``' layer (its B and C padded with zero columns and rows to d_model 4: the
    same Gramians) truncated over its horizon: the count and the largest modulus are the NumPy
    oracle's."""
    torch = pytest.importorskip("torch")
    from reference_models.train.checkpoint_torch import save_model
    from reference_models.train.torch_trainer import build_model
    from reference_models.train.torch_truncation import truncated_run

    case, data = escaping_poles, toy_data()
    model = build_model(SMALL, data).double()
    pad = SMALL.d_model - case.d_model
    with torch.no_grad():
        for name, value in case.lru_parameters().items():
            if name.startswith("B_"):
                value = np.pad(value, ((0, 0), (0, pad)))
            elif name.startswith("C_"):
                value = np.pad(value, ((0, pad), (0, 0)))
            getattr(model.blocks[0].ssm, name).copy_(torch.from_numpy(value))
    path = save_model(model, tmp_path / "model.safetensors")
    source = {"config": SMALL.to_dict(), "horizon": case.horizon, "final_state_dims": [8], "test_accuracy": 0.5,
              "wall_clock_s": 1.0}
    escaped = case.escaped(case.rank)
    _, metrics = truncated_run(str(path), source, data, dims=[case.rank])
    moved = metrics["moved_poles"]["blocks.0.ssm"]
    assert moved["poles_moved_in"] == len(escaped) >= 2
    assert moved["moved_from_modulus"] == pytest.approx(escaped[0], rel=1e-6)
    assert moved["moved_to_modulus"] == pytest.approx(case.limit, rel=1e-6)
    json.dumps(metrics, allow_nan=False)

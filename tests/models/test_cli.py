"""The ``compressm`` command line: help texts, --version, --config files, missing extras."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest

from reference_models import cli
from reference_models.train import run
from reference_models.train.config import TrainConfig
from reference_models.train.config_file import read_config, write_config

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    (commands,) = (action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(commands.choices)


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_option_is_explained_and_shows_its_default(command, capsys):
    for action in subcommands()[command]._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings} has no help text"
        assert "`" not in action.help, f"{command} {action.option_strings}: RST markup in {action.help!r}"
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    options = [action for action in subcommands()[command]._actions if action.dest != "help"]
    assert text.count("(default: ") == len(options)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"compressm {version('compressm')}"


def parsed_runs(monkeypatch, tmp_path, argv: list[str]) -> list[tuple[TrainConfig, dict]]:
    """What ``compressm argv`` would train (the runs themselves are replaced): (config, options)."""
    seen = []

    def fake_run(config, output, *, progress=True, **kwargs):
        seen.append((config, {"output": output}))
        return {"test_accuracy": 0.0, "test_accuracy_at_best_val": 0.0, "best_val_step": 1, "final_state_dims": [1], "wall_clock_s": 0.0}

    def fake_compare(config, output, **kwargs):
        seen.append((config, {"output": output, **kwargs}))
        output.mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(table="table", failures=[], summary={"rows": [], "paired_summary": []})

    monkeypatch.setattr(run, "run_and_save", fake_run)
    monkeypatch.setattr(run, "compare", fake_compare)
    assert cli.main([*argv, "--quiet"]) == 0
    return seen


def test_config_file_sets_the_options_and_flags_override_it(monkeypatch, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('steps = 1230\nssm_lr_factor = 0.25\nstate_dim = [16, 8]\ntask = "digits"\nhsv_every = 10\n')
    out = str(tmp_path / "out")
    [(config, _)] = parsed_runs(monkeypatch, tmp_path, ["train", "--config", str(path), "--output", out])
    assert config == TrainConfig(steps=1230, ssm_lr_factor=0.25, state_dim=(16, 8), task="digits", hsv_every=10)
    [(config, _)] = parsed_runs(
        monkeypatch, tmp_path, ["train", "--config", str(path), "--steps", "5000", "--task", "sysid", "--output", out]
    )
    assert config == TrainConfig(steps=5000, ssm_lr_factor=0.25, state_dim=(16, 8), task="sysid", hsv_every=10)


def test_config_file_takes_long_option_names_too(monkeypatch, tmp_path):
    path = tmp_path / "compare.toml"
    path.write_text(f'seeds = [4, 5]\narms = ["full", "compressm"]\nlayers = 3\noutput = "{tmp_path / "cmp"}"\n')
    [(config, options)] = parsed_runs(monkeypatch, tmp_path, ["compare", "--config", str(path)])
    assert config.n_layers == 3
    assert options["seeds"] == (4, 5) and options["arms"] == ["full", "compressm"]
    assert options["output"] == tmp_path / "cmp"


def test_config_file_without_compression_stays_without(monkeypatch, tmp_path):
    path = write_config(TrainConfig(tau=None, steps=40), tmp_path / "config.toml")
    [(config, _)] = parsed_runs(monkeypatch, tmp_path, ["train", "--config", str(path), "--output", str(tmp_path / "o")])
    assert config == TrainConfig(tau=None, steps=40) and not config.compresses


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stpes = 10\n", "unknown key 'stpes' for `compressm train`"),
        ("seeds = [1]\n", "unknown key 'seeds' for `compressm train`"),  # compare's option
        ("steps = \n", "is not valid TOML"),
        ("steps = -1\n", "`steps` must be a positive integer, got -1"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_problem(text, message, tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert cli.main(["train", "--config", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("compressm: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path / "nope.toml")]) == 2
    assert f"`--config` {tmp_path / 'nope.toml'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(),
        TrainConfig(tau=None, state_dim=(12, 7), data_dir="/data/mnist", hsv_every=5, lr=1e-3, reduce_from=30),
        TrainConfig(mode="fixed", tau=None, fraction=0.2, backend="jax", n_layers=1, state_dim=(9,)),
    ],
)
def test_write_config_round_trips_every_field(config, tmp_path):
    path = write_config(config, tmp_path / "config.toml")
    with path.open("rb") as file:
        table = tomllib.load(file)  # an independent TOML reader
    expected = {key: value for key, value in config.to_dict().items() if value is not None}
    assert {key: value for key, value in table.items() if value != "none"} == expected
    assert read_config(path) == config


def test_read_config_refuses_unknown_keys(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("d_modle = 3\n")
    with pytest.raises(ValueError, match=r"unknown key 'd_modle'"):
        read_config(path)


@pytest.mark.parametrize(
    ("hidden", "extra"),
    [(("mnist1d", "mnist1d.data"), "tasks"), (("sklearn", "sklearn.datasets"), "tasks")],
)
def test_a_missing_optional_package_names_its_extra(hidden, extra, monkeypatch, tmp_path, capsys):
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)  # import raises ModuleNotFoundError
    task = "mnist1d" if hidden[0] == "mnist1d" else "digits"
    argv = ["train", "--task", task, "--steps", "2", "--no-compress", "--output", str(tmp_path / "out"), "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"compressm: error: the optional package {hidden[0]!r} is not installed; install it with: pip install \"compressm[{extra}]\"\n"


def test_a_missing_package_of_no_extra_is_not_hidden(monkeypatch):
    error = ModuleNotFoundError("No module named 'nonexistent'", name="nonexistent")
    assert cli._missing_extra(error, "torch") is None
    error = ModuleNotFoundError("No module named 'safetensors'", name="safetensors")
    assert "compressm[jax]" in cli._missing_extra(error, "jax")


def test_a_run_writes_a_config_that_reruns_it(tmp_path):
    argv = ["train", "--task", "sysid", "--steps", "4", "--d-model", "4", "--state-dim", "6", "--layers", "1",
            "--no-compress", "--eval-every", "2", "--quiet"]
    assert cli.main([*argv, "--output", str(tmp_path / "first")]) == 0
    written = read_config(tmp_path / "first" / "config.toml")
    assert written == TrainConfig(task="sysid", steps=4, d_model=4, state_dim=6, n_layers=1, tau=None, eval_every=2)
    config_path = str(tmp_path / "first" / "config.toml")
    assert cli.main(["train", "--config", config_path, "--output", str(tmp_path / "again"), "--quiet"]) == 0
    assert read_config(tmp_path / "again" / "config.toml") == written


def test_paths_in_a_config_file_are_paths(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('output = "somewhere"\n')
    base, options, command = cli._defaults(["compare", "--config", str(path)])
    assert cli._parser(base, options, command).parse_args(["compare", "--config", str(path)]).output == Path("somewhere")


def test_compare_writes_a_config_that_reruns_it(monkeypatch, tmp_path):
    argv = ["compare", "--task", "sysid", "--steps", "3000", "--seeds", "3", "4", "--arms", "full", "hnn",
            "--taus", "0.05", "0.2", "--layers", "1", "--output", str(tmp_path / "first")]
    [(config, _)] = parsed_runs(monkeypatch, tmp_path, argv)
    path = tmp_path / "first" / "config.toml"
    assert path.read_text().startswith("# compressm run configuration; rerun with: compressm compare --config")
    again = ["compare", "--config", str(path), "--output", str(tmp_path / "again")]
    [(config_again, options_again)] = parsed_runs(monkeypatch, tmp_path, again)
    assert config_again == config
    assert {key: options_again[key] for key in ("seeds", "arms", "taus")} == {
        "seeds": (3, 4), "arms": ["full", "hnn"], "taus": [0.05, 0.2]
    }


@pytest.fixture
def torch_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_torch_runs_use_one_thread_unless_told(monkeypatch, torch_threads):
    torch_threads.set_num_threads(2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cli._limit_threads(None)
    assert torch_threads.get_num_threads() == 1
    cli._limit_threads(2)
    assert torch_threads.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    cli._limit_threads(None)  # the user's setting stands
    assert torch_threads.get_num_threads() == 2


def test_threads_must_be_positive(capsys):
    assert cli.main(["train", "--threads", "0", "--steps", "10"]) == 2
    assert "`--threads` must be a positive integer, got 0" in capsys.readouterr().err

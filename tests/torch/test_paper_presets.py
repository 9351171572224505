"""Paper presets: the published settings (METHOD.md), ``--preset`` on the command line, a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reference_models import cli
from reference_models.train import run
from reference_models.train.config import TrainConfig
from reference_models.train.presets import PRESETS, preset

#: METHOD.md's published settings: (blocks, state dim n, H, steps) and the tolerances.
PAPER = {
    "smnist": ((1, 256, 8, 200_000), {0.01, 0.02, 0.04}),
    "scifar": ((6, 384, 512, 180_000), {0.05, 0.10, 0.15}),
}


@pytest.mark.parametrize("task", PAPER)
def test_image_presets_mirror_the_paper(task):
    (blocks, n, hidden, steps), taus = PAPER[task]
    mine = {name: config for name, config in PRESETS.items() if config.task == task}
    assert {config.tau for config in mine.values()} == taus | {None}
    for config in mine.values():
        assert (config.n_layers, config.state_dim, config.d_model, config.steps) == (
            blocks,
            n,
            hidden,
            steps,
        )
        assert (config.model, config.mode, config.selection) == ("lru", "tolerance", "largest")
        # the authors' configs: checks every 2000 steps during the first 10% of training
        assert (config.reduce_every, config.reduce_until) == (2000, 0.1)
        # the authors' code: no rollback in tolerance mode; Adam moments sliced after a cut
        assert config.safety_net is False and config.optimizer_state == "slice"
        if config.compresses:
            assert not config.schedule(metric_mode="max").net


def test_every_preset_is_a_valid_config_named_after_its_task_and_tolerance():
    assert {config.task for config in PRESETS.values()} == {
        "smnist",
        "scifar",
        "listops",
        "imdb",
        "aan",
        "pathfinder",
    }
    for name, config in PRESETS.items():
        assert isinstance(config, TrainConfig)
        task, _, variant = name.partition("-")
        assert config.task == task
        if variant == "full":
            assert config.tau is None and not config.compresses
        else:
            assert variant == f"tau{config.tau:g}" and config.compresses
        assert config == TrainConfig(**config.to_dict())  # survives the round trip through JSON


def test_an_unknown_preset_is_named():
    with pytest.raises(
        ValueError, match="`preset` 'smnist' is unknown; choose one of: smnist-full"
    ):
        preset("smnist")


def parsed_config(monkeypatch, tmp_path, argv: list[str]) -> TrainConfig:
    """The config ``compressm`` would train for ``argv`` (the run itself is replaced)."""
    seen = []

    def fake_run(config, output, *, progress=True, **kwargs):
        seen.append(config)
        return {"test_accuracy": 0.0, "test_accuracy_at_best_val": 0.0, "best_val_step": 1,
                "final_state_dims": [1], "wall_clock_s": 0.0}

    monkeypatch.setattr(run, "run_and_save", fake_run)
    assert cli.main([*argv, "--output", str(tmp_path / "out"), "--quiet"]) == 0
    return seen[0]


def test_preset_sets_the_defaults_and_options_override_them(monkeypatch, tmp_path):
    config = parsed_config(monkeypatch, tmp_path, ["train", "--preset", "scifar-tau0.1"])
    assert config == PRESETS["scifar-tau0.1"]  # fields without an option (ssm_lr_factor, ...) too
    config = parsed_config(
        monkeypatch,
        tmp_path,
        ["train", "--steps", "70000", "--preset", "scifar-tau0.1", "--tau", "0.2"],
    )
    assert config == PRESETS["scifar-tau0.1"].replace(steps=70000, tau=0.2)
    config = parsed_config(
        monkeypatch, tmp_path, ["train", "--preset", "imdb-tau0.05", "--no-compress"]
    )
    assert config == PRESETS["imdb-full"]


def test_without_a_preset_the_defaults_are_unchanged(monkeypatch, tmp_path):
    assert parsed_config(monkeypatch, tmp_path, ["train"]) == TrainConfig()


def test_an_unknown_preset_on_the_command_line_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--preset", "smnist-tau0.5"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'smnist-tau0.5'" in capsys.readouterr().err


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: magic 0x0000 08 ndim, big-endian uint32 sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_idx(folder: Path, rng: np.random.Generator) -> None:
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, 12))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 4))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("smnist-full", []),
        # 5 steps hold no check at the preset's interval (2000): check at steps 2 and 4
        ("smnist-tau0.01", ["--reduce-every", "2", "--reduce-until", "1.0"]),
    ],
)
def test_a_preset_runs_end_to_end_on_a_tiny_local_folder(tmp_path, name, options):
    data, output = tmp_path / "mnist", tmp_path / "run"
    write_mnist_idx(data, np.random.default_rng(0))
    argv = ["train", "--preset", name, "--data-dir", str(data), "--steps", "5", *options]
    assert cli.main([*argv, "--output", str(output), "--quiet"]) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    changes = {"steps": 5, "data_dir": str(data)}
    if options:
        changes.update(reduce_every=2, reduce_until=1.0)
    assert metrics["config"] == PRESETS[name].replace(**changes).to_dict()
    assert metrics["initial_state_dims"] == [256]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert (output / "model.safetensors").is_file() and (output / "hsv_spectra.png").is_file()


def test_a_preset_whose_window_holds_no_check_says_so(capsys, tmp_path):
    assert (
        cli.main(["train", "--preset", "smnist-tau0.01", "--steps", "5", "--output", str(tmp_path)])
        == 2
    )
    error = capsys.readouterr().err
    assert "--steps 5 with --reduce-until 0.1 leaves no step for a reduction check" in error

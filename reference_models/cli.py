"""``compressm``: train SSMs that shrink during training, compare against baselines, run the demo.

    compressm train --task mnist1d --tau 0.05 --output runs/lru
    compressm compare --task digits --seeds 0 1 2 --output runs/cmp
    compressm demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .tasks import TASKS
from .train.config import ARMS, BACKENDS, DEFAULT_ARMS, GRAMIANS, MODELS, TrainConfig
from .train.presets import PRESETS

#: The demo: ``compare`` on MNIST-1D with settings that finish in about 5 minutes on 2 CPU cores.
#: Checks start at step 100, once the model is above chance: before that the validation
#: accuracy is noise, and a "drop" would trip the safety net. MNIST-1D's validation split
#: has 400 sequences (about 2.5 points of binomial noise), hence a 0.05 rollback tolerance.
#: Squared-HSV energy separates states far better than the sum at this early stage.
DEMO = TrainConfig(
    task="mnist1d",
    steps=1500,
    batch_size=64,
    d_model=32,
    state_dim=128,
    n_layers=2,
    tau=0.1,
    energy="squared",
    reduce_every=50,
    reduce_from=100,
    reduce_until=0.2,
    rollback_tolerance=0.05,
    eval_every=100,
)


def _add_run_options(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    add = parser.add_argument
    add("--preset", choices=PRESETS, default=None, metavar="NAME",
        help="start from a paper preset (e.g. smnist-tau0.01, see reference_models/train/presets.py); other options override it")
    add("--backend", choices=BACKENDS, default=defaults.backend)
    add("--model", choices=MODELS, default=defaults.model, help="SSM layer type")
    add("--task", choices=TASKS, default=defaults.task)
    add("--data-dir", default=None, help="local data folder (smnist, scifar, listops, imdb, aan, pathfinder)")
    add("--max-train", type=int, default=None, help="use at most this many training sequences")
    add("--steps", type=int, default=defaults.steps, help="training steps")
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--lr", type=float, default=defaults.lr)
    add("--d-model", type=int, default=defaults.d_model)
    add("--state-dim", type=int, default=defaults.state_dim, help="initial state dim of every layer")
    add("--layers", type=int, default=defaults.n_layers)
    add("--dropout", type=float, default=defaults.dropout)
    add("--tau", type=float, default=defaults.tau, help="energy tolerance; omit with --no-compress")
    add("--no-compress", action="store_true", help="train the full model only")
    add("--mode", choices=("tolerance", "fixed"), default=defaults.mode)
    add("--fraction", type=float, default=defaults.fraction, help="fixed mode: fraction cut per check")
    add("--energy", choices=("sum", "squared"), default=defaults.energy)
    add("--reduce-every", type=int, default=defaults.reduce_every, help="steps between reduction checks")
    add("--reduce-until", type=float, default=defaults.reduce_until, help="fraction of training with reductions")
    add("--reduce-from", type=int, default=defaults.reduce_from, help="first check step (default: --reduce-every)")
    add("--rollback-tolerance", type=float, default=defaults.rollback_tolerance)
    add("--selection", choices=("largest", "smallest", "random"), default=defaults.selection)
    add("--gramians", choices=GRAMIANS, default=defaults.gramians)
    add("--eval-every", type=int, default=defaults.eval_every)
    add("--hsv-every", type=int, default=defaults.hsv_every,
        help="log every layer's HSVs every N steps and certify when the kept states settle (rank_stability in metrics.json)")
    add("--seed", type=int, default=defaults.seed)
    add("--output", type=Path, default=None, help="output folder (must be empty or new)")
    add("--overwrite", action="store_true", help="allow writing into a non-empty output folder")
    add("--quiet", action="store_true", help="no progress bars")


def _config(args: argparse.Namespace) -> TrainConfig:
    base = PRESETS[args.preset] if args.preset else TrainConfig()  # keeps what has no option
    return base.replace(
        task=args.task,
        backend=args.backend,
        model=args.model,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        d_model=args.d_model,
        state_dim=args.state_dim,
        n_layers=args.layers,
        dropout=args.dropout,
        tau=None if args.no_compress or args.mode == "fixed" else args.tau,
        mode=args.mode,
        fraction=args.fraction,
        energy=args.energy,
        reduce_every=args.reduce_every,
        reduce_until=args.reduce_until,
        reduce_from=args.reduce_from,
        rollback_tolerance=args.rollback_tolerance,
        selection=args.selection,
        gramians=args.gramians,
        eval_every=args.eval_every,
        hsv_every=args.hsv_every,
        seed=args.seed,
        data_dir=args.data_dir,
        max_train=args.max_train,
        **_objective_options(args),
    )


def _add_objective_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--hnn-weight", type=float, default=TrainConfig().hnn_weight, help="Hankel nuclear norm penalty weight")
    add("--distill-weight", type=float, default=TrainConfig().distill_weight, help="distillation: soft-loss weight")
    add("--temperature", type=float, default=TrainConfig().distill_temperature, help="distillation temperature")
    add("--teacher", default=None, help="distillation: the teacher's checkpoint (model.safetensors)")


def _objective_options(args: argparse.Namespace) -> dict:
    """The trainer's HNN and distillation options (``train``; ``compare`` sets them per arm)."""
    if args.command != "train":
        return {}
    return {
        "hnn_weight": args.hnn_weight,
        "distill_weight": args.distill_weight,
        "distill_temperature": args.temperature,
        "teacher": args.teacher,
    }


def _add_arm_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--arms", nargs="+", choices=ARMS, default=list(DEFAULT_ARMS), metavar="ARM",
        help=f"arms to run ('full' always runs; arms bring the arms they need): {', '.join(ARMS)}")
    add("--taus", type=float, nargs="+", default=None, help="tolerances to compare (default: --tau)")
    add("--hnn-weight", type=float, default=None, help="hnn arm: weight of the HSV-sum penalty")
    add("--distill-weight", type=float, default=None, help="distill arm: soft-loss weight")
    add("--temperature", type=float, default=None, help="distill arm: temperature")


def _arm_options(args: argparse.Namespace):  # -> ArmOptions, imported after argument parsing
    """The baseline arms' settings given on the command line (defaults: ``ArmOptions``)."""
    from .train.comparison import ArmOptions  # heavy import, after argument parsing

    given = {"hnn_weight": args.hnn_weight, "distill_weight": args.distill_weight, "distill_temperature": args.temperature}
    return ArmOptions(**{name: value for name, value in given.items() if value is not None})


def _output_folder(args: argparse.Namespace, default: str) -> Path:
    output = args.output or Path("runs") / default
    if output.exists() and not output.is_dir():
        msg = f"`--output` {output} exists and is not a folder"
        raise ValueError(msg)
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        msg = f"`--output` {output} is not empty; choose another folder or pass --overwrite"
        raise ValueError(msg)
    return output


def _preset_name(argv: list[str] | None) -> str | None:
    """The ``--preset`` of ``argv``, read before the full parse so that it sets the defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=None)
    return pre.parse_known_args(argv)[0].preset


def _parser(preset: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``train`` and ``compare`` take their defaults from ``PRESETS[preset]``."""
    run_defaults = PRESETS.get(preset, TrainConfig())
    parser = argparse.ArgumentParser(prog="compressm", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one model (compressing unless --no-compress)")
    _add_run_options(train, run_defaults)
    _add_objective_options(train)
    compare = commands.add_parser("compare", help="CompreSSM against baselines, over seeds and tolerances")
    _add_run_options(compare, run_defaults)
    _add_arm_options(compare)
    compare.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    demo = commands.add_parser("demo", help="`compare` on MNIST-1D with defaults for ~5 minutes on 2 cores")
    _add_run_options(demo, DEMO)
    _add_arm_options(demo)
    demo.add_argument("--seeds", type=int, nargs="+", default=[0])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser(_preset_name(argv)).parse_args(argv)
    from .train.run import (  # heavy imports after argument parsing
        compare,
        is_main_process,
        run_and_save,
    )

    try:
        config = _config(args)
        if args.command == "train":
            output = _output_folder(args, f"{config.model}_{config.task}")
            metrics = run_and_save(config, output, progress=not args.quiet)
            metric = next(key for key in metrics if key.startswith("test_"))
            dims = metrics["final_state_dims"]
            if is_main_process(config.backend):
                print(f"{metric} {metrics[metric]:.4f}, final state dims {dims}, {metrics['wall_clock_s']:.1f} s -> {output}")
        else:
            output = _output_folder(args, args.command)
            table = compare(
                config, output, seeds=tuple(args.seeds), arms=args.arms, taus=args.taus,
                options=_arm_options(args), progress=not args.quiet,
            )
            if is_main_process(config.backend):
                print(f"{table}\n\ntables, metrics, checkpoints and plots in {output}")
    except ValueError as error:
        print(f"compressm: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``compressm``: train SSMs that shrink during training, compare against baselines, run the demo.

    compressm train --task mnist1d --tau 0.05 --output runs/lru
    compressm compare --task digits --seeds 0 1 2 --output runs/cmp
    compressm demo
    compressm train --config runs/lru/config.toml --steps 5000   # rerun a run, flags override

Every option's default is in ``compressm COMMAND --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .tasks import TASKS
from .train.config import ARMS, BACKENDS, DEFAULT_ARMS, GRAMIANS, MODELS, TrainConfig
from .train.presets import PRESETS
from .train.run_state import RunInterrupted, resumed_config

#: The demo: ``compare`` on MNIST-1D in the regime where a small model falls short (8 states
#: per layer trained from scratch reach about 81% against 94% for the full model: see
#: docs/results.md). One cut, at 30% of training, once the model has learned (validation accuracy
#: about 0.84 there; cuts made at chance level choose states on noise), keeping in each layer the
#: states that hold 40% of the squared-HSV energy over the 40-step sequences (tau 0.6, the
#: default time-limited Gramians): 14-18 of 256 states. Tolerance mode without rollback, as in
#: the authors' code. About 2 minutes on 2 idle cores.
DEMO = TrainConfig(
    task="mnist1d",
    steps=1500,
    batch_size=64,
    d_model=32,
    state_dim=128,
    n_layers=2,
    tau=0.6,
    energy="squared",
    reduce_from=450,
    reduce_every=450,
    reduce_until=0.3,
    eval_every=100,
)


def _add_run_options(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    add = parser.add_argument
    add("--config", type=Path, default=None, metavar="TOML",
        help="read options from a TOML file, e.g. a run's config.toml; flags given here override it")
    add("--preset", choices=PRESETS, default=None, metavar="NAME",
        help="start from a paper preset (e.g. smnist-tau0.01, see reference_models/train/presets.py); other options override it")
    add("--backend", choices=BACKENDS, default=defaults.backend, help="framework: PyTorch or JAX (Equinox, Optax)")
    add("--model", choices=MODELS, default=defaults.model, help="SSM layer type")
    add("--task", choices=TASKS, default=defaults.task, help="data set (mnist1d, digits, sysid, selective_copying are offline)")
    add("--data-dir", default=defaults.data_dir, help="local data folder of smnist, scifar, listops, imdb, aan, pathfinder (never downloaded)")
    add("--data-file", default=defaults.data_file, help="--task arrays: an .npz with x_train, y_train, x_test, y_test (optional x_val, y_val)")
    add("--max-train", type=int, default=defaults.max_train, help="use at most this many training sequences (none: all)")
    add("--steps", type=int, default=defaults.steps, help="training steps")
    add("--batch-size", type=int, default=defaults.batch_size, help="sequences per step (under torchrun: the global batch)")
    add("--lr", type=float, default=defaults.lr, help="peak learning rate (AdamW, warm-up then cosine decay)")
    add("--d-model", type=int, default=defaults.d_model, help="width of the model (SSM inputs and outputs)")
    add("--state-dim", type=int, default=defaults.state_dim, help="initial state dimension of every SSM layer")
    add("--layers", type=int, default=defaults.n_layers, help="number of SSM blocks")
    add("--dropout", type=float, default=defaults.dropout, help="dropout probability in every block")
    add("--r-min", type=float, default=defaults.lru_r_min,
        help="--model lru: smallest modulus of the initial poles (they lie uniformly on the ring --r-min <= |lambda| <= --r-max)")
    add("--r-max", type=float, default=defaults.lru_r_max, help="--model lru: largest modulus of the initial poles, below 1")
    add("--tau", type=float, default=defaults.tau, help="tolerance mode: keep the smallest rank whose HSVs hold a fraction 1 - tau of the energy")
    add("--no-compress", action="store_true", help="train the full model only, without reductions")
    add("--mode", choices=("tolerance", "fixed", "pragmatic"), default=defaults.mode,
        help="tolerance: ranks from --tau; fixed: cut --fraction of every layer at each check; "
             "pragmatic: fixed cuts with the safety net (the authors' pragmatic mode)")
    add("--fraction", type=float, default=defaults.fraction, help="fixed and pragmatic mode: fraction of the states cut at each check")
    add("--budget", choices=("per_check", "run"), default=defaults.budget,
        help="tolerance mode: --tau of each layer's current energy at every check (per_check, the paper; cuts compound) "
             "or of its original energy over the whole run (run)")
    add("--timing", choices=("steps", "certified"), default=defaults.timing,
        help="steps: cut at the check steps (the paper); certified: cut a layer only once the Weyl certificate holds "
             "over the last --certify-over checks and the validation metric is --chance-margin above its first value")
    add("--certify-over", type=int, default=defaults.certify_over, help="certified timing: earlier checks the certificate must reach back to")
    add("--chance-margin", type=float, default=defaults.chance_margin,
        help="certified timing: how far (in metric units) the validation metric must beat its value at the first step")
    add("--safety-net", action=argparse.BooleanOptionalAction, default=defaults.safety_net,
        help="judge every cut after --recovery-steps of training and undo it if the validation metric fell by more than "
             "--rollback-tolerance (none: on in pragmatic mode only, as in the authors' code)")
    add("--recovery-steps", type=int, default=defaults.recovery_steps,
        help="safety net: training steps on the reduced model before the judgement (none: one check interval)")
    add("--after-rollback", choices=("stop", "skip"), default=defaults.after_rollback,
        help="safety net: after a rollback stop reducing (the authors' rule) or try again at the next check")
    add("--optimizer-state", choices=("reset", "slice"), default=defaults.optimizer_state,
        help="reduced layers' optimizer state: reset (fresh) or slice (the moments of the kept coordinates and the "
             "step count, as the authors' code does)")
    add("--energy", choices=("sum", "squared"), default=defaults.energy,
        help="HSV energy for --tau: sum of sigma (the authors' code) or of sigma^2")
    add("--reduce-every", type=int, default=defaults.reduce_every,
        help="steps between reduction checks (none: a quarter of the window, i.e. four checks)")
    add("--reduce-until", type=float, default=defaults.reduce_until, help="reduction checks happen in this first fraction of training")
    add("--reduce-from", type=int, default=defaults.reduce_from, help="first check step (none: --reduce-every)")
    add("--rollback-tolerance", type=float, default=defaults.rollback_tolerance,
        help="safety net: undo a cut if the validation metric after recovery is more than this below the metric before it")
    add("--selection", choices=("largest", "smallest", "random"), default=defaults.selection,
        help="which balanced states to keep: the largest HSVs (CompreSSM) or an ablation")
    add("--gramians", choices=GRAMIANS, default=defaults.gramians,
        help="complex: balance u -> C x (the authors'); real_output: the map u -> Re(C x) the LRU computes")
    add("--horizon", type=_horizon, default=defaults.horizon, metavar="{sequence,none,INT}",
        help="steps the Gramians sum over: sequence (the training sequences' length: time-limited Gramians, in "
             "which a near-integrator pole weighs what a sequence can see of it), none (infinite horizon, the "
             "authors'), or a number of steps")
    add("--eval-every", type=int, default=defaults.eval_every, help="steps between validation evaluations")
    add("--hsv-every", type=int, default=defaults.hsv_every,
        help="log every layer's HSVs every N steps and certify when the kept states settle (rank_stability in metrics.json; none: off)")
    add("--seed", type=int, default=defaults.seed, help="random seed (initialisation, batches, generated data)")
    add("--output", type=Path, default=None, help="output folder, empty or new (none: runs/MODEL_TASK, runs/compare or runs/demo)")
    add("--overwrite", action="store_true", help="allow writing into a non-empty output folder")
    add("--quiet", action="store_true", help="no progress bars")
    add("--device", default=defaults.device,
        help="auto: CUDA, then MPS, then the CPU (JAX: its default backend); or cpu, cuda, cuda:N, mps, gpu")
    add("--checkpoint-every", type=int, default=defaults.checkpoint_every,
        help="write checkpoint.safetensors every N steps (none: at every evaluation); also on Ctrl-C and SIGTERM")
    add("--tensorboard", action="store_true", default=defaults.tensorboard,
        help="also log to TensorBoard in OUTPUT/tensorboard (log.csv is always written)")
    add("--threads", type=int, default=None,
        help="PyTorch CPU threads (none: $OMP_NUM_THREADS if set, else 1: these models are too small to gain "
             "from a second thread, and two threads on a busy 2-core machine run 20-50x slower)")


def _horizon(text: str) -> int | str | None:
    """``--horizon``: "sequence", "none" (None) or a positive number of steps."""
    if text in ("sequence", "none"):
        return None if text == "none" else text
    steps = int(text) if text.isascii() and text.isdigit() else 0
    if steps < 1:
        msg = f"must be 'sequence', 'none' or a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return steps


def _limit_threads(threads: int | None) -> None:
    """Set PyTorch's CPU threads: ``threads``, else ``$OMP_NUM_THREADS`` (torch reads it), else 1."""
    if threads is not None and threads < 1:
        msg = f"`--threads` must be a positive integer, got {threads}"
        raise ValueError(msg)
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        return
    import torch

    torch.set_num_threads(threads or 1)


def _config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    """``base`` (preset, ``--config`` file: keeps what has no option) with the options of ``args``."""
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
        lru_r_min=args.r_min,
        lru_r_max=args.r_max,
        tau=None if args.no_compress or args.mode != "tolerance" else args.tau,
        mode="tolerance" if args.no_compress else args.mode,
        fraction=args.fraction,
        energy=args.energy,
        reduce_every=args.reduce_every,
        reduce_until=args.reduce_until,
        reduce_from=args.reduce_from,
        budget=args.budget,
        timing=args.timing,
        certify_over=args.certify_over,
        chance_margin=args.chance_margin,
        safety_net=args.safety_net,
        recovery_steps=args.recovery_steps,
        rollback_tolerance=args.rollback_tolerance,
        after_rollback=args.after_rollback,
        optimizer_state=args.optimizer_state,
        selection=args.selection,
        gramians=args.gramians,
        horizon=args.horizon,
        eval_every=args.eval_every,
        hsv_every=args.hsv_every,
        seed=args.seed,
        data_dir=args.data_dir,
        data_file=args.data_file,
        max_train=args.max_train,
        device=args.device,
        checkpoint_every=args.checkpoint_every,
        tensorboard=args.tensorboard,
        **_objective_options(args),
    )


def _add_objective_options(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    add = parser.add_argument
    add("--hnn-weight", type=float, default=defaults.hnn_weight, help="Hankel nuclear norm penalty weight")
    add("--distill-weight", type=float, default=defaults.distill_weight, help="distillation: soft-loss weight")
    add("--temperature", type=float, default=defaults.distill_temperature, help="distillation temperature")
    add("--teacher", default=defaults.teacher, help="distillation: the teacher's checkpoint (model.safetensors)")


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
    add("--taus", type=float, nargs="+", default=None, help="tolerances to compare (none: --tau)")
    add("--hnn-weight", type=float, default=None, help="hnn arm: weight of the HSV-sum penalty")
    add("--distill-weight", type=float, default=None, help="distill arm: soft-loss weight")
    add("--temperature", type=float, default=None, help="distill arm: temperature")
    add("--sweep", action="store_true",
        help="the paper's figure: test metric vs final total state dim over --taus (none: 0.01 to 0.32, doubling) -> sweep.png")
    add("--resume", action="store_true",
        help="continue in --output: arms already done with the same settings are read back, failed and missing ones run")


def _arm_options(args: argparse.Namespace):  # -> ArmOptions, imported after argument parsing
    """The baseline arms' settings given on the command line (defaults: ``ArmOptions``)."""
    from .train.comparison import ArmOptions  # heavy import, after argument parsing

    given = {"hnn_weight": args.hnn_weight, "distill_weight": args.distill_weight, "distill_temperature": args.temperature}
    return ArmOptions(**{name: value for name, value in given.items() if value is not None})


def _compare_taus(args: argparse.Namespace) -> list[float] | None:
    """``--taus``, or with ``--sweep`` and no ``--taus`` the sweep's default tolerances."""
    from .train.comparison import SWEEP_TAUS

    return args.taus or (list(SWEEP_TAUS) if args.sweep else None)


def _output_folder(args: argparse.Namespace, default: str) -> Path:
    output = args.output or Path("runs") / default
    resume = getattr(args, "resume", False)
    if resume and args.overwrite:
        msg = "`--resume` keeps the arms already done in --output and `--overwrite` removes them; choose one"
        raise ValueError(msg)
    if output.exists() and not output.is_dir():
        msg = f"`--output` {output} exists and is not a folder"
        raise ValueError(msg)
    if output.is_dir() and any(output.iterdir()) and not args.overwrite and not resume:
        msg = f"`--output` {output} is not empty; choose another folder or pass --overwrite"
        raise ValueError(msg)
    return output


COMMANDS = ("train", "compare", "demo")
#: The extra that installs each optional package the commands import.
_EXTRAS = {
    "mnist1d": "tasks", "sklearn": "tasks", "lightning": "lightning", "tensorboard": "tensorboard",
    "tensorboardX": "tensorboard", "transformers": "hf", "torch": "torch", "jax": "jax", "equinox": "jax",
    "optax": "jax", "control": "validate", "slycot": "validate",
}
#: Packages in the extra of either backend (``torch`` and ``jax``).
_BACKEND_PACKAGES = ("safetensors", "tqdm", "matplotlib", "tomli", "tomli_w")


def _defaults(argv: list[str]) -> tuple[TrainConfig, dict[str, Any], str | None]:
    """Read before the full parse: the run settings that flags override (``--preset`` or the
    demo's, then the ``--config`` file's fields), the file's other options (``seeds``,
    ``output``, ...) and the command."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=None)
    pre.add_argument("--config", type=Path, default=None)
    known = pre.parse_known_args(argv)[0]
    command = next((word for word in argv if word in COMMANDS), None)
    base = PRESETS.get(known.preset) or (DEMO if command == "demo" else TrainConfig())
    if known.config is None:
        return base, {}, command
    from .train.config_file import apply_options, read_options

    options = read_options(known.config)
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    in_config = {key: value for key, value in options.items() if key in fields}
    others = {key: value for key, value in options.items() if key not in fields}
    return apply_options(base, in_config, known.config), others, command


def _set_file_options(parser: argparse.ArgumentParser, options: dict[str, Any], command: str) -> None:
    """Make a ``--config`` file's options that are no ``TrainConfig`` field (the long option
    names with underscores: ``seeds``, ``arms``, ``output``, ...) the defaults of ``parser``."""
    names = set(vars(parser.parse_args([]))) - {"config", "preset"}
    unknown = [key for key in options if key not in names]
    if unknown:
        msg = f"`--config`: unknown key {unknown[0]!r} for `compressm {command}`; keys are the fields of a run's config.toml or long options with underscores (e.g. reduce_every)"
        raise ValueError(msg)
    parser.set_defaults(**options)


def _parser(
    defaults: TrainConfig | None = None, options: dict[str, Any] | None = None, command: str | None = None
) -> argparse.ArgumentParser:
    """The command line; the options of ``command`` take their defaults from ``defaults`` and
    ``options`` (see ``_defaults``)."""
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="compressm", description=__doc__.split("\n")[0], formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"compressm {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one model (compressing unless --no-compress)", formatter_class=formatter)
    _add_run_options(train, defaults or TrainConfig())
    _add_objective_options(train, defaults or TrainConfig())
    train.add_argument("--resume", type=Path, default=None, metavar="DIR",
                       help="continue the run in DIR from its checkpoint.safetensors (its options; --device, --checkpoint-every, --tensorboard may change)")
    compare = commands.add_parser("compare", help="CompreSSM against baselines, over seeds and tolerances", formatter_class=formatter)
    _add_run_options(compare, defaults or TrainConfig())
    _add_arm_options(compare)
    compare.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random seeds; every arm runs once per seed")
    demo = commands.add_parser("demo", help="compare on MNIST-1D, full vs CompreSSM vs small, ~5 minutes on 2 cores", formatter_class=formatter)
    _add_run_options(demo, defaults or DEMO)
    _add_arm_options(demo)
    demo.add_argument("--seeds", type=int, nargs="+", default=[0], help="random seeds; every arm runs once per seed")
    if options and command in commands.choices:
        _set_file_options(commands.choices[command], options, command)
    return parser


def _version() -> str:
    try:
        return version("compressm")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def _missing_extra(error: ModuleNotFoundError, backend: str) -> str | None:
    """One line naming the extra that installs the missing package, or None if none does."""
    package = (error.name or "").split(".")[0]
    extra = _EXTRAS.get(package) or (backend if package in _BACKEND_PACKAGES else None)
    if extra is None:
        return None
    return f'the optional package {package!r} is not installed; install it with: pip install "compressm[{extra}]"'


def _fail(message: str) -> int:
    print(f"compressm: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    backend = TrainConfig().backend
    try:
        base, options, command = _defaults(argv)
        args = _parser(base, options, command).parse_args(argv)
        backend = args.backend
        from .train.comparison_report import headline
        from .train.config_file import write_config
        from .train.outputs import prepare_output
        from .train.run import (  # heavy imports after argument parsing
            compare,
            is_main_process,
            run_and_save,
        )

        config = _config(args, base)
        if config.backend == "torch":
            _limit_threads(args.threads)
        if args.command == "train":
            if args.resume is not None:
                output, config = args.resume, resumed_config(args.resume, args.device, args.checkpoint_every, args.tensorboard)
            else:
                output = prepare_output(args.output or Path("runs") / f"{config.model}_{config.task}", overwrite=args.overwrite)
            metrics = run_and_save(config, output, progress=not args.quiet, resume=args.resume is not None)
            metric = next(key for key in metrics if key.startswith("test_"))
            dims = metrics["final_state_dims"]
            if is_main_process(config.backend):
                best = f"{metrics[metric + '_at_best_val']:.4f} at the best validation step {metrics['best_val_step']}"
                print(f"{metric} {metrics[metric]:.4f} ({best}), final state dims {dims}, {metrics['wall_clock_s']:.1f} s -> {output}")
        else:
            output = _output_folder(args, args.command)
            comparison = compare(
                config, output, seeds=tuple(args.seeds), arms=args.arms, taus=_compare_taus(args),
                options=_arm_options(args), progress=not args.quiet, resume=args.resume,
            )
            if is_main_process(config.backend):
                taus = _compare_taus(args)
                rerun = {"seeds": list(args.seeds), "arms": list(args.arms)} | ({"taus": taus} if taus else {})
                write_config(config, output / "config.toml", command=args.command, options=rerun)
                print(f"{comparison.table}\n\ntables, metrics, checkpoints and plots in {output}")
                print("\n".join(["", *headline(comparison.summary)]))
            if comparison.failures:
                failed = ", ".join(f"{f['arm']} (tau {f['tau']}, seed {f['seed']}): {f['error']['type']}" for f in comparison.failures)
                print(f"compressm: {len(comparison.failures)} arm(s) failed: {failed}; the errors are in "
                      f"{output / 'comparison.json'}; rerun with --resume to retry them", file=sys.stderr)
                return 1
    except ValueError as error:
        return _fail(str(error))
    except OSError as error:  # a folder or file the user named that cannot be read or written
        return _fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
    except RunInterrupted as stop:
        if command == "train":
            print(f"compressm: {stop}", file=sys.stderr)
        else:  # an arm of compare or demo: the whole comparison resumes
            print(f"compressm: {stop.signal_name} at step {stop.step} of {stop.folder}: checkpoint written; "
                  "rerun the same command with --resume to continue", file=sys.stderr)
        return 128 + signal.Signals[stop.signal_name].value
    except ModuleNotFoundError as error:
        missing = _missing_extra(error, backend)
        if missing is None:
            raise
        return _fail(missing)
    return 0


if __name__ == "__main__":
    sys.exit(main())

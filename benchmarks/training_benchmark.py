"""Training-time benchmarks of compress-during-training (issues #3 and #4), one run, one process.

1. ``compare`` on a configuration (default: the demo) over several seeds: accuracy of the
   full model, CompreSSM and a small model trained from scratch at CompreSSM's dims, and
   wall-clock ratios against the full run.
2. The reductions' share of CompreSSM's wall-clock (HSVs, truncation, optimizer rebuild,
   and the validation passes of the safety net), and apart from it (JAX) the compilation for
   the shapes each reduction made (``reduction_compile_s``).
3. Step cost after the last reduction: the compressed model vs a freshly built model of the
   same dims, timed alternately on the same batches (target: at most 1.10x).

    python benchmarks/training_benchmark.py --seeds 0 1 2 --output runs/bench
    python benchmarks/training_benchmark.py --backend jax --seeds 0 --compressm-only   # 2. and 3. only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from reference_models.cli import DEMO
from reference_models.train.config import ARMS, DEFAULT_ARMS
from reference_models.train.run import compare, run_and_save


def _torch_step_seconds(model, x, y, repeats: int) -> list[float]:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def _torch_step_timers(checkpoint: Path, batch_size: int, seq_len: int, repeats: int):
    """Step timers of the compressed PyTorch model and of a fresh model of the same dims."""
    import torch

    from reference_models.torch_models import SequenceModel
    from reference_models.train.checkpoint_torch import load_model

    compressed = load_model(checkpoint)
    fresh = SequenceModel.from_config(compressed.config)
    x = torch.randn(batch_size, seq_len, compressed.config["d_input"])
    y = torch.randint(0, compressed.config["d_output"], (batch_size,))
    return [lambda model=model: _torch_step_seconds(model, x, y, repeats) for model in (compressed, fresh)]


def _jax_step_timers(checkpoint: Path, batch_size: int, seq_len: int, repeats: int):
    """Step timers of the compressed JAX model and of a fresh model of the same dims: the
    trainer's jitted AdamW step, compiled (and run once) before timing."""
    import equinox as eqx
    import jax
    import optax

    from reference_models.jax_models import model_config, model_from_config
    from reference_models.train.jax_trainer import _train_step, load_model

    compressed = load_model(checkpoint)
    fresh = model_from_config(model_config(compressed), jax.random.key(1))
    config = model_config(compressed)
    x = jax.random.normal(jax.random.key(2), (batch_size, seq_len, config["d_input"]))
    y = jax.random.randint(jax.random.key(3), (batch_size,), 0, config["d_output"])
    optimizer = optax.adamw(1e-3)

    def timer(model):
        state = [model, optimizer.init(eqx.filter(model, eqx.is_array))]

        def step() -> None:
            state[0], state[1], loss, *_ = _train_step(*state, optimizer, x, y, jax.random.key(0), True)
            jax.block_until_ready(loss)

        step()  # compile

        def times() -> list[float]:
            result = []
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                result.append(time.perf_counter() - start)
            return result

        return times

    return [timer(compressed), timer(fresh)]


def post_reduction_step_ratio(
    output: Path, seed: int, batch_size: int, repeats: int, backend: str = "torch"
) -> tuple[float, float, float]:
    """Median step seconds of the compressed model, of a same-dims model from scratch, and their ratio."""
    make_timers = _torch_step_timers if backend == "torch" else _jax_step_timers
    compressed, fresh = make_timers(output / f"compressm_seed{seed}" / "model.safetensors", batch_size, 40, repeats)
    compressed_times, fresh_times = [], []
    for _ in range(3):  # alternate, so that load changes hit both alike
        compressed_times += compressed()
        fresh_times += fresh()
    a, b = statistics.median(compressed_times), statistics.median(fresh_times)
    return a, b, a / b


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backend", choices=("torch", "jax"), default="torch")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=ARMS)
    parser.add_argument("--steps", type=int, default=DEMO.steps)
    parser.add_argument("--output", type=Path, default=Path("runs/training_benchmark"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--compressm-only", action="store_true", help="train only the CompreSSM arm (no comparison table)"
    )
    args = parser.parse_args(argv)
    config = DEMO.replace(backend=args.backend, steps=args.steps)
    if args.compressm_only:
        for seed in args.seeds:
            run_and_save(config.replace(seed=seed), args.output / f"compressm_seed{seed}", progress=False)
    else:
        print(compare(config, args.output, seeds=tuple(args.seeds), arms=args.arms, progress=False).table)
    runs = [
        json.loads((args.output / f"compressm_seed{s}" / "metrics.json").read_text())
        for s in args.seeds
    ]
    for key, what in (("reduction_overhead_s", "reduction overhead"), ("reduction_compile_s", "compiling for new shapes")):
        shares = [run.get(key, 0.0) / run["wall_clock_s"] for run in runs]
        seconds = ", ".join(f"{run.get(key, 0.0):.2f}" for run in runs)
        print(f"{what}: {100 * np.mean(shares):.2f}% of CompreSSM's wall-clock (max {100 * max(shares):.2f}%; {seconds} s)")
    compressed, fresh, ratio = post_reduction_step_ratio(
        args.output, args.seeds[0], config.batch_size, args.repeats, args.backend
    )
    print(
        f"step after the last reduction: {1e3 * compressed:.1f} ms vs {1e3 * fresh:.1f} ms from scratch at the same dims: {ratio:.3f}x"
    )


if __name__ == "__main__":
    main()

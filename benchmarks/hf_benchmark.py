"""transformers Mamba and Mamba-2 compressed during training on real text (issue #14).

A byte-level language model (vocabulary 256, randomly initialised, a few layers) is trained on
the Python standard library's own .py source, split by file into train / validation / test
(by a CRC of the file's path: deterministic on any machine with the same Python). Per model
kind and seed, three arms with the same data, steps and optimizer:

- full: state size N in every layer;
- compressm: state size N, reduced during training by ``compressm_torch.Compressor`` (the
  mixers found by ``compressm_torch.hf``; tolerance mode, no safety net);
- small: trained from scratch at compressm's final per-layer state sizes.

Reports validation and test bits per byte (at the end of training), final state sizes, the
training-step time of the full and the compressed model (timed alternately on one batch),
wall-clock, how much of a full step the state size decides on this machine (the step time
at N, at compressm's sizes and at N = 1; the CPU path loops over time in Python), and, on the
trained full model, what averaging the projections first would have ranked
(``averaged_projections_check``).

    OMP_NUM_THREADS=1 python benchmarks/hf_benchmark.py --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/hf_benchmark.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sysconfig
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from _timing import machine_info, machine_line, markdown_table
from torch.nn import functional as F

import compressm_torch as ct
import compressm_torch.hf as chf
from compressm_core.layers import CompressionEvent
from compressm_core.schedule import ReductionSchedule

KINDS = ("mamba", "mamba2")


@dataclass(frozen=True)
class Setup:
    hidden: int = 32
    layers: int = 2
    state: int = 16
    length: int = 64
    batch: int = 8
    steps: int = 240
    lr: float = 3e-3
    tau: float = 0.1
    eval_windows: int = 48
    timing_repeats: int = 5
    #: the cut mixers' Adam moments: "slice" (kept entries, ``chf.compressor_step``) or "reset"
    optimizer_state: str = "slice"


QUICK = Setup(hidden=16, layers=1, state=8, length=24, batch=4, steps=8, eval_windows=2, timing_repeats=1)


def corpus_splits() -> dict[str, np.ndarray]:
    """The standard library's .py files (outside site-packages) as bytes, split by file:
    CRC32 of the relative path mod 10 is 0 -> test, 1 -> validation, else train."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: dict[str, list[bytes]] = {"train": [], "val": [], "test": []}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if "site-packages" in relative:
            continue
        bucket = zlib.crc32(relative.encode()) % 10
        parts["test" if bucket == 0 else "val" if bucket == 1 else "train"].append(path.read_bytes())
    return {name: np.frombuffer(b"\n".join(files), dtype=np.uint8) for name, files in parts.items()}


def windows(data: np.ndarray, count: int, length: int) -> torch.Tensor:
    """``count`` evenly spaced windows of ``length + 1`` bytes, (count, length + 1) int64."""
    starts = np.linspace(0, len(data) - length - 2, count).astype(np.int64)
    return torch.from_numpy(np.stack([data[s : s + length + 1] for s in starts]).astype(np.int64))


def make_model(kind: str, setup: Setup, seed: int) -> transformers.PreTrainedModel:
    torch.manual_seed(seed)
    common = dict(vocab_size=256, hidden_size=setup.hidden, state_size=setup.state,
                  num_hidden_layers=setup.layers, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    if kind == "mamba":
        return transformers.MambaForCausalLM(transformers.MambaConfig(**common, expand=2))
    head_dim = min(16, setup.hidden)
    return transformers.Mamba2ForCausalLM(transformers.Mamba2Config(
        **common, expand=2, head_dim=head_dim, num_heads=2 * setup.hidden // head_dim, n_groups=1,
        chunk_size=min(64, setup.length),
    ))


def at_sizes(model: transformers.PreTrainedModel, sizes: list[int]) -> transformers.PreTrainedModel:
    """``model`` with each mixer cut to its first ``sizes[layer]`` states (a fresh model at those
    sizes: Mamba's A initialisation is per state index)."""
    for name, mixer in chf.mamba_mixers(model):
        ct.reduce.set_submodule(model, name, chf.MixerView(mixer).with_states(range(sizes[mixer.layer_idx])))
    chf.record_state_sizes(model)
    return model


def state_sizes(model: transformers.PreTrainedModel) -> list[int]:
    return [int(mixer.ssm_state_size) for _, mixer in chf.mamba_mixers(model)]


@torch.no_grad()
def bits_per_byte(model: transformers.PreTrainedModel, data: torch.Tensor, batch: int) -> float:
    training = model.training
    model.eval()
    total = 0.0
    for chunk in data.split(batch):
        logits = model(chunk[:, :-1]).logits
        total += F.cross_entropy(logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum").item()
    model.train(training)
    return total / (data[:, 1:].numel() * math.log(2))


def learning_rate(setup: Setup, step: int) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 10%."""
    warmup = max(1, setup.steps // 20)
    if step < warmup:
        return setup.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, setup.steps - warmup)
    return setup.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def schedule_for(setup: Setup) -> ReductionSchedule:
    """Checks at 10%, 15%, ..., 30% of training; tolerance mode (no safety net)."""
    interval = max(1, setup.steps // 20)
    return ReductionSchedule(
        total_steps=setup.steps, interval=interval, start=max(1, setup.steps // 10),
        reduce_until=0.3, tau=setup.tau, rollback_tolerance=math.inf, optimizer_state="reset",
    )


def train(model, setup: Setup, train_data: np.ndarray, seed: int, *, compressor=None, val=None):
    """Train in a plain loop (AdamW; ``compressor.step`` after each step when given);
    returns the model and the wall-clock seconds."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=0.01)
    model.train()
    started = time.perf_counter()
    for step in range(setup.steps):
        starts = rng.integers(0, len(train_data) - setup.length - 1, setup.batch)
        chunk = torch.from_numpy(np.stack([train_data[s : s + setup.length + 1] for s in starts]).astype(np.int64))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(setup, step)
        loss = F.cross_entropy(model(chunk[:, :-1]).logits.flatten(0, 1), chunk[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if compressor is not None:
            step_of = chf.compressor_step if setup.optimizer_state == "slice" else type(compressor).step
            model, optimizer = step_of(
                compressor, step, model, optimizer, lambda m: -bits_per_byte(m, val, setup.batch)
            )
    return model, time.perf_counter() - started


def step_seconds(models: dict[str, torch.nn.Module], chunk: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds of one training step (forward, backward, AdamW) per model, timed
    alternately on the same batch after one warm-up step each."""
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(repeats + 1):
        for name, model in models.items():
            model.train()
            started = time.perf_counter()
            loss = F.cross_entropy(model(chunk[:, :-1]).logits.flatten(0, 1), chunk[:, 1:].flatten())
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()
            if repeat:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def run_seed(kind: str, setup: Setup, splits: dict[str, np.ndarray], seed: int, *, compressm_only: bool = False) -> dict:
    val = windows(splits["val"], setup.eval_windows, setup.length)
    test = windows(splits["test"], setup.eval_windows, setup.length)
    val_small = val[: max(2, setup.eval_windows // 6)]
    calibration = windows(splits["train"], 8, setup.length)[:, :-1]
    result = {"kind": kind, "seed": seed}
    compressor = ct.Compressor(schedule_for(setup), seed=seed, calibration=calibration)
    arms = {"compressm": (make_model(kind, setup, seed), compressor)}
    if not compressm_only:
        arms = {"full": (make_model(kind, setup, seed), None)} | arms
    trained = {}
    for arm, (model, comp) in arms.items():
        trained[arm], seconds = train(model, setup, splits["train"], seed, compressor=comp, val=val_small)
        result[arm] = {"seconds": seconds}
    if not compressm_only:
        sizes = state_sizes(trained["compressm"])
        trained["small"], seconds = train(at_sizes(make_model(kind, setup, seed), sizes), setup, splits["train"], seed)
        result["small"] = {"seconds": seconds}
    for arm, model in trained.items():
        result[arm] |= {
            "val_bpb": bits_per_byte(model, val, setup.batch),
            "test_bpb": bits_per_byte(model, test, setup.batch),
            "state_sizes": state_sizes(model),
        }
    result["cuts"] = [
        {"step": event.step, "sizes": {r.name: r.new_dim for r in event.reductions}}
        for event in compressor.events if isinstance(event, CompressionEvent)
    ]
    if compressm_only:
        return result
    result["averaged_projections"] = averaged_projections_check(trained["full"], calibration, sizes)
    chunk = windows(splits["train"], setup.batch, setup.length)
    timed = step_seconds(
        {
            "full": trained["full"],
            "compressm": trained["compressm"],
            "state_1": at_sizes(make_model(kind, setup, seed), [1] * setup.layers),
        },
        chunk, setup.timing_repeats,
    )
    result["step_seconds"] = timed
    return result


@torch.no_grad()
def averaged_projections_check(model: transformers.PreTrainedModel, calibration: torch.Tensor, keep: list[int]) -> list[dict]:
    """Per mixer, the state energies of an LTI stand-in built by averaging abar, dt B and C
    over the calibration batch and time first (closed-form diagonal Gramians
    ``p = b^2 / (1 - a^2)``, ``q = c^2 / (1 - a^2)``), against the energies of the
    time-varying Gramians: the ratio of their totals, and how many of the ``keep[layer]``
    states each ranks highest they share."""
    inputs = ct.selective.layer_inputs(model, calibration)
    energies = ct.state_energies(model, calibration)
    checks = []
    for name, view in ct.selective_layers(model):
        abar, bbar, C = view.time_varying_system(inputs[name])
        a, b = abar.mean((0, 1)), bbar.mean((0, 1))  # (channels, N)
        c = C.mean((0, 1))  # (N,) or (channels, N)
        averaged = (b**2 * c**2 / (1 - a**2) ** 2).sum(0)
        exact, r = energies[name], keep[view.mixer.layer_idx]
        top = set(torch.argsort(exact, descending=True)[:r].tolist())
        top_averaged = set(torch.argsort(averaged, descending=True)[:r].tolist())
        checks.append({
            "layer": name, "energy_ratio": float(averaged.sum() / exact.sum()), "kept": r,
            "shared_top": len(top & top_averaged),
        })
    return checks


def mean_std(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(results: list[dict]) -> str:
    rows, timing = [], []
    for kind in KINDS:
        runs = [r for r in results if r["kind"] == kind]
        for arm in [arm for arm in ("full", "compressm", "small") if runs and arm in runs[0]]:
            rows.append([
                kind, arm, mean_std([r[arm]["val_bpb"] for r in runs]), mean_std([r[arm]["test_bpb"] for r in runs]),
                "; ".join(",".join(map(str, r[arm]["state_sizes"])) for r in runs),
                mean_std([r[arm]["seconds"] for r in runs], 1),
            ])
        steps = [r["step_seconds"] for r in runs if "step_seconds" in r]
        if steps:
            full, compressed, one = ([1e3 * t[key] for t in steps] for key in ("full", "compressm", "state_1"))
            timing.append([
                kind, mean_std(full, 1), mean_std(compressed, 1),
                mean_std([f / c for f, c in zip(full, compressed, strict=True)], 2) + "x", mean_std(one, 1),
                mean_std([(f - o) / f for f, o in zip(full, one, strict=True)], 2),
            ])
    header = ["model", "arm", "val bits/byte", "test bits/byte", "final state sizes", "train wall-clock (s)"]
    timing_header = [
        "model", "step full (ms)", "step compressed (ms)", "speed-up", "step at N = 1 (ms)",
        "share of the full step the state size decides",
    ]
    return markdown_table(header, rows) + "\n\n" + markdown_table(timing_header, timing)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--steps", type=int, help="training steps (default 240)")
    parser.add_argument("--tau", type=float, help="energy tolerance (default 0.1)")
    parser.add_argument("--optimizer-state", choices=("slice", "reset"), help="default: slice")
    parser.add_argument("--compressm-only", action="store_true", help="train only the CompreSSM arm (no timing)")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else Setup()
    for name in ("steps", "tau", "optimizer_state"):
        if getattr(args, name) is not None:
            setup = Setup(**(asdict(setup) | {name: getattr(args, name)}))
    seeds = args.seeds[:1] if args.quick else args.seeds
    splits = corpus_splits()
    print(
        f"# corpus: Python {platform.python_version()} stdlib .py bytes "
        + ", ".join(f"{name} {len(data)}" for name, data in splits.items())
        + f"; {setup}; {machine_line(machine_info())}",
        flush=True,
    )
    results = []
    for kind in args.kinds:
        for seed in seeds:
            results.append(run_seed(kind, setup, splits, seed, compressm_only=args.compressm_only))
            print(json.dumps(results[-1]), flush=True)
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps({"setup": asdict(setup), "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()

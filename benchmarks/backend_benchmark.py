"""PyTorch vs JAX: training-step time of the same LRU SequenceModel at several state dims, one process.

Both models hold the same weights (loaded by parameter name); a step is forward, cross-
entropy, backward and an Adam update (JAX: one ``eqx.filter_jit``-compiled function, timed
after compilation; torch on CUDA: synchronised before the clock stops). The median over
``--repeats`` steps is reported, the JAX / PyTorch ratio, and each backend's speed-up of the
smaller state dims over the first one (the training-step gain after a compression), and the
JAX step's first call (compiling, what a reduction to those dims costs once).

    python benchmarks/backend_benchmark.py --state-dims 16 128 --length 40 --batch 64
    python benchmarks/backend_benchmark.py --scifar --device cuda   # the paper's sCIFAR LRU
    python benchmarks/backend_benchmark.py --quick                  # tiny CPU smoke run

``--scifar``: 6 LRU layers, H = 512, L = 1024, 3 input channels, batch 50, state dims 384
(full) and 161, 93, 57 per layer (the paper's CompreSSM dims at tau = 0.05, 0.10, 0.15).
``--device cuda`` without a visible GPU runs on the CPU and says so in one line.
``--jax-scan parallel|sequential`` times the JAX LRU with ``diagonal_scan`` (associative) or the
``jax.lax.scan`` loop in place of its ``linear_recurrence`` ("auto": the loop on the CPU, the
parallel scan on accelerators).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from unittest import mock

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from _timing import choose_device, machine_info, machine_line, markdown_table, measure

import reference_models.jax_models.lru as jax_lru
from reference_models.jax_models import SequenceModel as JaxModel
from reference_models.jax_models import diagonal_scan, load_state_dict, sequential_scan, state_dict
from reference_models.torch_models import SequenceModel as TorchModel

SCIFAR = {"layers": 6, "d_model": 512, "length": 1024, "d_input": 3, "batch": 50, "state_dims": [384, 161, 93, 57]}
SCANS = {"auto": jax_lru.linear_recurrence, "parallel": diagonal_scan, "sequential": sequential_scan}
QUICK = {"layers": 1, "d_model": 8, "length": 32, "d_input": 1, "batch": 4, "state_dims": [16, 4], "repeats": 2}


def torch_step_seconds(model: TorchModel, x: np.ndarray, y: np.ndarray, repeats: int, device: str) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()

    step()  # first-call allocations
    return measure(step, repeats)[0]


def jax_step_seconds(
    model: JaxModel, x: np.ndarray, y: np.ndarray, repeats: int, device: jax.Device
) -> tuple[float, float]:
    """Median step seconds, and the seconds of the first call (compiling: what a reduction
    to these shapes costs once)."""
    optimizer = optax.adam(1e-3)
    arrays, static = eqx.partition(model, eqx.is_array)
    model = eqx.combine(jax.device_put(arrays, device), static)
    state = [model, optimizer.init(eqx.filter(model, eqx.is_array))]
    xj, yj = jax.device_put(jnp.asarray(x), device), jax.device_put(jnp.asarray(y), device)

    @eqx.filter_jit
    def step(model, opt_state):
        def loss(m):
            logits = jax.vmap(lambda xi: m(xi, inference=True))(xj)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yj).mean()

        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, value

    def timed_step() -> None:
        state[0], state[1], value = step(*state)
        value.block_until_ready()

    start = time.perf_counter()
    timed_step()  # compile
    compile_s = time.perf_counter() - start
    return measure(timed_step, repeats)[0], compile_s


def step_times(args: argparse.Namespace, device: str) -> list[dict]:
    """Median step seconds of both backends at each state dim, same weights and batch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.length, args.d_input)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    jax_device = jax.devices("gpu" if device == "cuda" and _jax_has_gpu() else "cpu")[0]
    torch_device = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
    rows = []
    for n in args.state_dims:
        torch.manual_seed(0)
        torch_model = TorchModel(args.d_input, 10, args.d_model, n, args.layers)
        jax_model = JaxModel(args.d_input, 10, args.d_model, n, args.layers, key=jax.random.key(0))
        weights = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
        jax_model = load_state_dict(jax_model, {k: weights[k] for k in state_dict(jax_model)})
        with mock.patch.object(jax_lru, "linear_recurrence", SCANS[args.jax_scan]):
            jax_s, jax_compile_s = jax_step_seconds(jax_model, x, y, args.repeats, jax_device)
        rows.append({
            "state_dim": n,
            "torch_s": torch_step_seconds(torch_model.to(torch_device), x, y, args.repeats, torch_device),
            "torch_device": torch_device,
            "jax_s": jax_s,
            "jax_compile_s": jax_compile_s,
            "jax_device": jax_device.platform,
        })
    return rows


def _jax_has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def table(rows: list[dict]) -> str:
    first = rows[0]
    return markdown_table(
        ["state dim", f"PyTorch step (ms, {first['torch_device']})", f"JAX step (ms, {first['jax_device']})",
         "JAX / PyTorch", f"PyTorch speed-up vs {first['state_dim']}", f"JAX speed-up vs {first['state_dim']}",
         "JAX compile (s)"],
        [[r["state_dim"], f"{1e3 * r['torch_s']:.1f}", f"{1e3 * r['jax_s']:.1f}", f"{r['jax_s'] / r['torch_s']:.2f}",
          f"{first['torch_s'] / r['torch_s']:.2f}x", f"{first['jax_s'] / r['jax_s']:.2f}x", f"{r['jax_compile_s']:.1f}"]
         for r in rows],
        align="rrrrrrr",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dims", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--d-input", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--jax-scan", choices=tuple(SCANS), default="auto",
                        help="the JAX LRU's scan: auto (the model's: the loop on the CPU), parallel (diagonal_scan) or the sequential loop")
    parser.add_argument("--scifar", action="store_true", help="the paper's sCIFAR LRU (overrides the sizes)")
    parser.add_argument("--quick", action="store_true", help="a tiny model (smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the machine as JSON")
    args = parser.parse_args(argv)
    for preset, chosen in ((SCIFAR, args.scifar), (QUICK, args.quick)):
        if chosen:
            vars(args).update(preset)
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device, note = choose_device(args.device)
    if note:
        print(note)
    info = machine_info()
    print(machine_line(info))
    print(f"torch {torch.__version__}, jax {jax.__version__} ({jax.default_backend()})")
    print(f"LRU, {args.layers} layers, d_model {args.d_model}, L {args.length}, d_input {args.d_input}, "
          f"batch {args.batch}, median of {args.repeats} steps, JAX scan {args.jax_scan}\n")
    rows = step_times(args, device)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "machine": info, "args": vars(args)}, indent=2))
    return rows


if __name__ == "__main__":
    main()

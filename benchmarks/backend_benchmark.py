"""PyTorch vs JAX: training-step time of the same LRU SequenceModel, measured in one process.

Both models hold the same weights (loaded by parameter name); a step is forward, cross-
entropy, backward and an Adam update (JAX: one ``eqx.filter_jit``-compiled function, timed
after compilation). The median over ``--repeats`` steps is reported, and the ratio.

    python benchmarks/backend_benchmark.py --state-dims 16 128 --length 40 --batch 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from reference_models.jax_models import SequenceModel as JaxModel
from reference_models.jax_models import load_state_dict, state_dict
from reference_models.torch_models import SequenceModel as TorchModel


def torch_step_ms(model: TorchModel, x: np.ndarray, y: np.ndarray, repeats: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[2:])


def jax_step_ms(model: JaxModel, x: np.ndarray, y: np.ndarray, repeats: int) -> float:
    optimizer = optax.adam(1e-3)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    @eqx.filter_jit
    def step(model, state):
        def loss(m):
            logits = jax.vmap(lambda xi: m(xi, inference=True))(xj)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yj).mean()

        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, value

    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        model, state, value = step(model, state)
        value.block_until_ready()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[2:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dims", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.length, 1)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"LRU, {args.layers} layers, d_model {args.d_model}, L {args.length}, batch {args.batch}\n")
    print("| state dim | PyTorch step (ms) | JAX step (ms) | JAX / PyTorch |")
    print("|---|---|---|---|")
    for n in args.state_dims:
        torch.manual_seed(0)
        torch_model = TorchModel(1, 10, args.d_model, n, args.layers)
        jax_model = JaxModel(1, 10, args.d_model, n, args.layers, key=jax.random.key(0))
        weights = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
        jax_model = load_state_dict(jax_model, {k: weights[k] for k in state_dict(jax_model)})
        t_torch = torch_step_ms(torch_model, x, y, args.repeats)
        t_jax = jax_step_ms(jax_model, x, y, args.repeats)
        print(f"| {n} | {t_torch:.1f} | {t_jax:.1f} | {t_jax / t_torch:.2f} |")


if __name__ == "__main__":
    main()

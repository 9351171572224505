"""Tests of the selective (Mamba-style) JAX layer, block and model.

Oracles: a plain NumPy loop over the recurrence, computed from the layer's parameters,

    delta_k = softplus(dt_proj(x_proj(u_k)[:dt_rank])),  B_k, C_k = the next N, last N outputs
    h_k = exp(delta_k A) * h_(k-1) + delta_k B_k u_k,     y_k = sum_n C_k h_k + D u_k

and the PyTorch reference model (``reference_models.torch_models.selective``) run on the
same weights, exchanged by parameter name, all in float64.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from reference_models.jax_models import (
    SelectiveBlock,
    SelectiveSequenceModel,
    SelectiveSSM,
    load_state_dict,
    state_dict,
)
from reference_models.jax_models.selective import CausalDepthwiseConv
from reference_models.tasks import load_task
from reference_models.torch_models import selective as torch_selective

jax.config.update("jax_enable_x64", True)

H, N, RANK = 5, 6, 2  # the layer's channels, states and dt_rank in most tests
MODEL = {"d_input": 4, "d_output": 3, "d_model": 6, "state_dim": 5, "n_layers": 2}


def make_layer(seed: int = 0) -> SelectiveSSM:
    return SelectiveSSM(H, N, dt_rank=RANK, key=jax.random.key(seed))


def torch_layer(seed: int = 0) -> torch_selective.SelectiveSSM:
    torch.manual_seed(seed)
    return torch_selective.SelectiveSSM(H, N, dt_rank=RANK, dtype=torch.float64)


def inputs(batch: int, length: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, length, width))


def torch_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {name: t.detach().numpy() for name, t in module.state_dict().items()}


def to_torch(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.array(value)) for name, value in state.items()}


@eqx.filter_jit
def _vmapped(module, u: jax.Array) -> jax.Array:
    return jax.vmap(module)(u)


def batched(module, u: np.ndarray) -> np.ndarray:
    """``module`` on each sequence of ``u`` (batch, L, width), compiled once per shape."""
    return np.asarray(_vmapped(module, jnp.asarray(u)))


def simulate_from_parameters(
    p: dict[str, np.ndarray], u: np.ndarray, states: list[int] | None = None
) -> np.ndarray:
    """Brute force over batch, time, channel and state; only the ``states`` (all by default)
    of the full layer take part."""
    rank = p["dt_proj.weight"].shape[1]
    n = p["A_log"].shape[1]
    states = list(range(n)) if states is None else states
    A = -np.exp(p["A_log"])
    batch, length, channels = u.shape
    y = np.zeros_like(u)
    for b in range(batch):
        h = np.zeros((channels, n))
        for k in range(length):
            projected = p["x_proj.weight"] @ u[b, k]
            delta = np.logaddexp(0.0, p["dt_proj.weight"] @ projected[:rank] + p["dt_proj.bias"])
            B, C = projected[rank : rank + n], projected[rank + n :]
            for c in range(channels):
                y[b, k, c] = p["D"][c] * u[b, k, c]
                for s in states:
                    h[c, s] = np.exp(delta[c] * A[c, s]) * h[c, s] + delta[c] * B[s] * u[b, k, c]
                    y[b, k, c] += C[s] * h[c, s]
    return y


def simulate_system(abar, bbar, C, D, u: np.ndarray) -> np.ndarray:
    """h_k = abar_k h_(k-1) + bbar_k u_k, y_k = sum_n C_k h_k + D u_k, for one sequence."""
    abar, bbar, C, D = (np.asarray(a) for a in (abar, bbar, C, D))
    h = np.zeros(abar.shape[1:])
    outputs = []
    for k in range(u.shape[0]):
        h = abar[k] * h + bbar[k] * u[k, :, None]
        outputs.append(h @ C[k] + D * u[k])
    return np.stack(outputs)


# --- SelectiveSSM -------------------------------------------------------------------------


def test_init_follows_s4d_real_and_the_step_range() -> None:
    layer = SelectiveSSM(300, 8, dt_min=1e-3, dt_max=1e-1, key=jax.random.key(0))
    expected = np.broadcast_to(np.log(np.arange(1, 9)), (300, 8))
    np.testing.assert_allclose(layer.A_log, expected, rtol=1e-15)
    np.testing.assert_array_equal(layer.D, 1.0)
    step = np.logaddexp(0.0, np.asarray(layer.dt_proj.bias))
    assert 1e-3 * (1 - 1e-9) <= step.min() and step.max() <= 1e-1 * (1 + 1e-9)
    assert np.log(step).mean() == pytest.approx(0.5 * np.log(1e-4), abs=0.3)
    assert layer.dt_rank == 19 and layer.x_proj.weight.shape == (19 + 16, 300)
    assert layer.state_dim == 8 and layer.dt_proj.weight.shape == (300, 19)
    assert layer.x_proj.bias is None


def test_call_equals_numpy_loop_from_parameters() -> None:
    layer = make_layer()
    u = inputs(2, 23, H)
    expected = simulate_from_parameters(state_dict(layer), u)
    np.testing.assert_allclose(batched(layer, u), expected, rtol=1e-10, atol=1e-12)


def test_time_varying_system_simulated_equals_call() -> None:
    layer = make_layer()
    u = inputs(1, 17, H)[0]
    abar, bbar, C = layer.time_varying_system(jnp.asarray(u))
    assert abar.shape == bbar.shape == (17, H, N) and C.shape == (17, N)
    assert 0 < float(abar.min()) and float(abar.max()) < 1
    expected = simulate_system(abar, bbar, C, layer.D, u)
    np.testing.assert_allclose(layer(jnp.asarray(u)), expected, rtol=1e-10, atol=1e-12)


def test_time_varying_system_and_outputs_equal_torch_on_the_same_weights() -> None:
    reference = torch_layer(seed=3)
    layer = load_state_dict(make_layer(), torch_state(reference))
    u = inputs(2, 19, H, seed=2)
    expected = [t.detach().numpy() for t in reference.time_varying_system(torch.from_numpy(u))]
    actual = jax.vmap(layer.time_varying_system)(jnp.asarray(u))
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        batched(layer, u), reference(torch.from_numpy(u)).detach().numpy(), rtol=1e-10, atol=1e-12
    )


def test_with_all_states_in_order_reproduces_the_outputs_exactly() -> None:
    layer = make_layer()
    u = inputs(2, 19, H)
    copy = layer.with_states(range(N))
    assert copy is not layer and copy.state_dim == N
    np.testing.assert_array_equal(batched(copy, u), batched(layer, u))


@pytest.mark.parametrize("keep", [[4, 1], [0, 2, 5], [3]])
def test_with_states_equals_the_full_recurrence_restricted_to_those_states(keep) -> None:
    layer = make_layer()
    before = state_dict(layer)
    u = inputs(2, 21, H, seed=1)
    reduced = layer.with_states(keep)
    assert reduced.state_dim == len(keep)
    assert reduced.x_proj.weight.shape == (RANK + 2 * len(keep), H)
    assert reduced.x_proj.out_features == RANK + 2 * len(keep)
    expected = simulate_from_parameters(before, u, states=sorted(keep))
    np.testing.assert_allclose(batched(reduced, u), expected, rtol=1e-10, atol=1e-12)
    after = state_dict(layer)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)


@pytest.mark.parametrize("keep", [[4, 1], [2, 0, 5]])
def test_with_states_equals_torch_with_states_on_the_same_weights(keep) -> None:
    reference = torch_layer(seed=1)
    layer = load_state_dict(make_layer(), torch_state(reference))
    reduced = state_dict(layer.with_states(keep))
    expected = torch_state(reference.with_states(keep))
    assert reduced.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(reduced[name], value)


def test_with_states_accepts_integer_arrays_as_ranked_by_the_core() -> None:
    layer = make_layer()
    for keep in (np.array([5, 2]), jnp.array([5, 2])):
        reduced = layer.with_states(keep)
        np.testing.assert_array_equal(reduced.A_log, np.asarray(layer.A_log)[:, [5, 2]])


def test_with_states_keeps_hyper_parameters_and_dtype() -> None:
    layer = make_layer()
    reduced = layer.with_states([2, 0])
    assert (reduced.d_model, reduced.dt_rank, reduced.dt_min, reduced.dt_max) == (
        layer.d_model,
        layer.dt_rank,
        layer.dt_min,
        layer.dt_max,
    )
    assert {a.dtype for a in state_dict(reduced).values()} == {np.dtype(np.float64)}


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ([], "`keep` is empty"),
        ([1, 1, 2], r"`keep` repeats the indices \[1\]"),
        ([0, 6], r"`keep` has indices \[6\] outside \[0, state_dim=6\)"),
        ([-1], r"`keep` has indices \[-1\]"),
        ([0.5], "`keep` must be a sequence of ints"),
    ],
)
def test_with_states_rejects_bad_indices(keep, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_layer().with_states(keep)


def test_bad_step_range_is_named() -> None:
    with pytest.raises(ValueError, match=r"dt_min=0\.1, dt_max=0\.01"):
        SelectiveSSM(4, 4, dt_min=0.1, dt_max=0.01, key=jax.random.key(0))


# --- block and model ----------------------------------------------------------------------


def test_block_shape_causality_and_conv_init() -> None:
    block = SelectiveBlock(6, 4, key=jax.random.key(0))
    assert block.ssm.d_model == 12 and block.ssm.state_dim == 4
    assert block.conv.weight.shape == (12, 1, 4) and block.conv.bias.shape == (12,)
    u = inputs(1, 15, 6)[0]
    changed = u.copy()
    changed[9:] += 1.0
    y, y_changed = np.asarray(block(jnp.asarray(u))), np.asarray(block(jnp.asarray(changed)))
    assert y.shape == (15, 6)
    np.testing.assert_array_equal(y[:9], y_changed[:9])
    assert not np.allclose(y[9:], y_changed[9:])
    wide = CausalDepthwiseConv(300, 4, key=jax.random.key(1))
    for values in (wide.weight, wide.bias):  # U(-1/sqrt(K), 1/sqrt(K)) as in torch
        assert 0.45 < float(jnp.abs(values).max()) <= 0.5


@pytest.mark.parametrize(
    ("pooling", "shape"), [("mean", (2, 3)), ("last", (2, 3)), ("none", (2, 11, 3))]
)
def test_model_shapes(pooling: str, shape: tuple[int, ...]) -> None:
    model = SelectiveSequenceModel(4, 3, 8, [5, 7], 2, pooling=pooling, key=jax.random.key(0))
    assert batched(model, inputs(2, 11, 4)).shape == shape
    assert [(name, layer.state_dim) for name, layer in model.selective_layers()] == [
        ("blocks.0.ssm", 5),
        ("blocks.1.ssm", 7),
    ]
    prefixes = {name.split(".ssm.")[0] + ".ssm" for name in state_dict(model) if ".ssm." in name}
    assert prefixes == {name for name, _ in model.selective_layers()}


def test_parameter_names_and_shapes_equal_torch() -> None:
    model = SelectiveSequenceModel(**MODEL, key=jax.random.key(0))
    reference = torch_selective.SelectiveSequenceModel(**MODEL)
    assert {n: a.shape for n, a in state_dict(model).items()} == {
        n: tuple(t.shape) for n, t in reference.state_dict().items()
    }


@pytest.mark.parametrize("pooling", ["mean", "last", "none"])
def test_torch_weights_give_the_torch_outputs(pooling: str) -> None:
    torch.manual_seed(0)
    reference = torch_selective.SelectiveSequenceModel(**MODEL, pooling=pooling).double()
    model = SelectiveSequenceModel(**MODEL, pooling=pooling, key=jax.random.key(0))
    model = load_state_dict(model, torch_state(reference))
    u = inputs(3, 13, 4, seed=5)
    expected = reference(torch.from_numpy(u)).detach().numpy()
    np.testing.assert_allclose(batched(model, u), expected, rtol=1e-10, atol=1e-12)


def test_jax_weights_give_the_jax_outputs_in_torch() -> None:
    model = SelectiveSequenceModel(**MODEL, pooling="none", key=jax.random.key(4))
    reference = torch_selective.SelectiveSequenceModel(**MODEL, pooling="none").double()
    reference.load_state_dict(to_torch(state_dict(model)))
    u = inputs(2, 13, 4, seed=6)
    expected = reference(torch.from_numpy(u)).detach().numpy()
    np.testing.assert_allclose(batched(model, u), expected, rtol=1e-10, atol=1e-12)


def test_gradients_equal_torch_gradients() -> None:
    torch.manual_seed(2)
    reference = torch_selective.SelectiveSequenceModel(**MODEL).double()
    model = load_state_dict(
        SelectiveSequenceModel(**MODEL, key=jax.random.key(0)), torch_state(reference)
    )
    u = inputs(2, 9, 4, seed=7)
    (reference(torch.from_numpy(u)) ** 2).sum().backward()

    @eqx.filter_grad
    def gradient(model: SelectiveSequenceModel) -> jax.Array:
        return jnp.sum(jax.vmap(model)(jnp.asarray(u)) ** 2)

    actual = state_dict(gradient(model))
    for name, parameter in reference.named_parameters():
        np.testing.assert_allclose(
            actual[name], parameter.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name
        )


def test_model_config_round_trip_follows_reduced_layers() -> None:
    model = SelectiveSequenceModel(4, 3, 8, 6, 2, pooling="last", expand=3, key=jax.random.key(0))
    layer = dict(model.selective_layers())["blocks.1.ssm"]
    reduced = model.with_selective_layers({"blocks.1.ssm": layer.with_states([0, 3])})
    assert model.config["state_dims"] == [6, 6]
    assert reduced.config == {
        "layer": "selective",
        "d_input": 4,
        "d_output": 3,
        "d_model": 8,
        "pooling": "last",
        "expand": 3,
        "n_layers": 2,
        "state_dims": [6, 2],
    }
    rebuilt = SelectiveSequenceModel.from_config(reduced.config, jax.random.key(1))
    assert rebuilt.config == reduced.config
    rebuilt = load_state_dict(rebuilt, state_dict(reduced))
    u = inputs(2, 9, 4)
    np.testing.assert_array_equal(batched(rebuilt, u), batched(reduced, u))
    in_torch = torch_selective.SelectiveSequenceModel.from_config(reduced.config).double()
    in_torch.load_state_dict(to_torch(state_dict(reduced)))
    expected = in_torch(torch.from_numpy(u)).detach().numpy()
    np.testing.assert_allclose(batched(reduced, u), expected, rtol=1e-10, atol=1e-12)


def test_with_selective_layers_replaces_only_the_named_layer() -> None:
    model = SelectiveSequenceModel(**MODEL, key=jax.random.key(0))
    layer = dict(model.selective_layers())["blocks.0.ssm"]
    reduced = model.with_selective_layers({"blocks.0.ssm": layer.with_states([1])})
    before, after = state_dict(model), state_dict(reduced)
    assert before.keys() == after.keys()
    changed = {n for n in before if before[n].shape != after[n].shape}
    assert changed == {"blocks.0.ssm.A_log", "blocks.0.ssm.x_proj.weight"}
    for name in before.keys() - changed:
        np.testing.assert_array_equal(after[name], before[name])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"pooling": "max"}, "`pooling` 'max' is unknown"),
        ({"state_dim": [4]}, "`state_dim` must be an int or hold n_layers=2 ints"),
    ],
)
def test_model_rejects_bad_arguments(arguments, message) -> None:
    with pytest.raises(ValueError, match=message):
        SelectiveSequenceModel(**{**MODEL, **arguments}, key=jax.random.key(0))


def test_with_selective_layers_rejects_unknown_names() -> None:
    model = SelectiveSequenceModel(2, 2, 4, 4, 1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"`layers` names \['blocks.3.ssm'\]"):
        model.with_selective_layers({"blocks.3.ssm": SelectiveSSM(8, 2, key=jax.random.key(1))})


def test_training_steps_on_selective_copying_are_finite_and_lower_the_loss() -> None:
    data = load_task("selective_copying", length=24, num_samples=64, num_memorize=2)
    model = SelectiveSequenceModel(
        data.d_input, data.d_output, 16, 8, 2, pooling="none", key=jax.random.key(0)
    )
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    x, y = jnp.asarray(data.x_train[:16]), jnp.asarray(data.y_train[:16])

    @eqx.filter_jit
    def step(model, opt_state):
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean((jax.vmap(m)(x) - y) ** 2))(
            model
        )
        updates, opt_state = optimizer.update(grads, opt_state, model)
        return eqx.apply_updates(model, updates), opt_state, loss

    losses = []
    for _ in range(5):
        model, opt_state, loss = step(model, opt_state)
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert all(np.isfinite(a).all() for a in state_dict(model).values())

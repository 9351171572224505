"""Tests of reference_models.jax_models: scans, LRU and S5 layers, the sequence model.

Oracles: a plain NumPy loop of the recurrence, SciPy's matrix exponential, and the
H-infinity error bound of balanced truncation. Sizes are shared between tests (H, N, L)
so that JAX compiles each operation once.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import compressm_core as cc
from compressm_jax import ReducibleSSM
from reference_models.jax_models import (
    LRU,
    S5,
    SequenceModel,
    diagonal_scan,
    load_state_dict,
    model_config,
    model_from_config,
    sequential_scan,
    ssm_layer_paths,
    state_dict,
    with_ssm_layers,
)

jax.config.update("jax_enable_x64", True)

H, N, L = 3, 8, 40  # d_model, state dimension and sequence length of most tests
LAYER_CLASSES = [LRU, S5]


def simulate(poles, B, C, D, u: np.ndarray) -> np.ndarray:
    """``x_k = poles * x_(k-1) + B u_k``, ``y_k = Re(C x_k) + D u_k`` in a NumPy loop."""
    poles, B, C, D = (np.asarray(a) for a in (poles, B, C, D))
    x = np.zeros(poles.shape[0], dtype=complex)
    outputs = []
    for u_k in u:
        x = poles * x + B @ u_k
        outputs.append((C @ x).real + D @ u_k)
    return np.array(outputs)


def simulate_system(system: cc.DiagonalStateSpace, u: np.ndarray) -> np.ndarray:
    return simulate(system.poles, system.B, system.C, system.feedthrough(), u)


def as_numpy(system: cc.DiagonalStateSpace) -> cc.DiagonalStateSpace:
    """The same system on NumPy arrays (the core reduces it without compiling anything)."""
    return cc.DiagonalStateSpace(
        *(np.asarray(a) for a in (system.poles, system.B, system.C, system.D))
    )


def random_inputs(seed: int, length: int = L, channels: int = H) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((length, channels))


def make_layer(layer_class):
    return layer_class(H, N, key=jax.random.key(0))


def layer_arrays(layer) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in vars(layer).items() if eqx.is_array(value)}


def random_system(poles, D, seed: int = 0) -> cc.DiagonalStateSpace:
    rng = np.random.default_rng(seed)
    n = len(poles)
    B = rng.standard_normal((n, H)) + 1j * rng.standard_normal((n, H))
    C = rng.standard_normal((H, n)) + 1j * rng.standard_normal((H, n))
    return cc.DiagonalStateSpace(np.asarray(poles, dtype=complex), B, C, D)


# --- scans --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 5, 16, 33])
@pytest.mark.parametrize("time_varying", [False, True])
def test_diagonal_scan_matches_a_loop_and_sequential_scan(length: int, time_varying: bool) -> None:
    rng = np.random.default_rng(length)
    shape = (length, N) if time_varying else (N,)
    poles = rng.uniform(0, 0.95, shape) * np.exp(1j * rng.uniform(0, 2 * np.pi, shape))
    inputs = rng.standard_normal((length, N)) + 1j * rng.standard_normal((length, N))
    expected = np.zeros((length, N), dtype=complex)
    state = np.zeros(N, dtype=complex)
    for k in range(length):
        state = (poles[k] if time_varying else poles) * state + inputs[k]
        expected[k] = state
    np.testing.assert_allclose(sequential_scan(poles, inputs), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(diagonal_scan(poles, inputs), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_diagonal_scan_runs_along_the_given_axis(axis: int) -> None:
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((5, 7, N)) + 0j
    poles = rng.uniform(-0.95, 0.95, (5, 7, N))
    np.testing.assert_allclose(
        diagonal_scan(poles, inputs, axis=axis),
        sequential_scan(poles, inputs, axis=axis),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("platform", ["cpu", "gpu"])
def test_linear_recurrence_loops_on_the_cpu_and_scans_in_parallel_elsewhere(platform, monkeypatch) -> None:
    from reference_models.jax_models import scan

    rng = np.random.default_rng(1)
    poles = rng.uniform(-0.95, 0.95, N) + 0j
    inputs = rng.standard_normal((2, L, N)) + 0j
    used = []
    for name in ("diagonal_scan", "sequential_scan"):
        original = getattr(scan, name)
        monkeypatch.setattr(scan, name, lambda *a, original=original, name=name, **k: used.append(name) or original(*a, **k))
    monkeypatch.setattr(scan.jax, "default_backend", lambda: platform)
    states = scan.linear_recurrence(poles, inputs, axis=1)
    assert used == ["sequential_scan" if platform == "cpu" else "diagonal_scan"]
    np.testing.assert_allclose(states, sequential_scan(poles, inputs, axis=1), rtol=1e-12, atol=1e-12)


def test_scan_rejects_an_axis_out_of_range() -> None:
    with pytest.raises(ValueError, match="`axis` 3"):
        diagonal_scan(jnp.ones(N), jnp.ones((5, N)), axis=3)


# --- single layers --------------------------------------------------------------------


@pytest.mark.parametrize("layer_class", LAYER_CLASSES)
def test_layers_implement_reducible_ssm(layer_class) -> None:
    layer = make_layer(layer_class)
    assert isinstance(layer, ReducibleSSM)
    assert layer.real_output and layer.state_dim == N


def test_lru_call_matches_a_loop_over_its_parameters() -> None:
    layer = make_layer(LRU)
    p = layer_arrays(layer)
    poles = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    B = np.exp(p["gamma_log"])[:, None] * (p["B_re"] + 1j * p["B_im"])
    C = p["C_re"] + 1j * p["C_im"]
    u = random_inputs(1)
    np.testing.assert_allclose(layer(u), simulate(poles, B, C, np.diag(p["D"]), u), atol=1e-12)
    assert np.all((np.abs(poles) >= 0.9) & (np.abs(poles) <= 0.999))
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - np.abs(poles) ** 2))


#: The LRU's pole ring must satisfy 0 <= r_min <= r_max < 1; the same message in both frameworks.
LRU_RING_ERROR = r"LRU needs 0 <= `r_min` <= `r_max` < 1 and `r_max` > 0 \(the moduli of the initial poles\), got r_min={}, r_max={}"


@pytest.mark.parametrize(("r_min", "r_max"), [(0.9, 1.0), (0.5, 1.5), (0.8, 0.7), (-0.1, 0.5), (0.0, 0.0)])
def test_lru_rejects_a_ring_outside_the_unit_disc_or_reversed(r_min: float, r_max: float) -> None:
    with pytest.raises(ValueError, match=LRU_RING_ERROR.format(r_min, r_max)):
        LRU(H, N, r_min=r_min, r_max=r_max, key=jax.random.key(0))


def test_lru_ring_of_zero_width_gives_poles_of_that_modulus() -> None:
    layer = LRU(H, N, r_min=0.7, r_max=0.7, key=jax.random.key(0))
    modulus = np.exp(-np.exp(np.asarray(layer.nu_log)))  # |lambda| = exp(-exp(nu_log))
    np.testing.assert_allclose(modulus, 0.7, rtol=1e-12)
    np.testing.assert_allclose(np.abs(np.asarray(layer.poles())), 0.7, rtol=1e-12)


@pytest.mark.parametrize("layer_class", LAYER_CLASSES)
def test_ssm_system_reproduces_the_layer_output(layer_class) -> None:
    layer = make_layer(layer_class)
    u = random_inputs(2)
    np.testing.assert_allclose(layer(u), simulate_system(layer.ssm_system(), u), atol=1e-12)


def test_s5_discretisation_matches_the_matrix_exponential() -> None:
    layer = make_layer(S5)
    Abar, Bbar = layer.discretise()
    step = np.exp(np.asarray(layer.log_step))
    Lambda = np.asarray(layer.continuous_poles())
    B = np.asarray(layer.B_re) + 1j * np.asarray(layer.B_im)
    augmented = np.zeros((N + H, N + H), dtype=complex)  # expm([[A, B], [0, 0]] dt) per state
    augmented[:N, :N] = np.diag(Lambda * step)
    augmented[:N, N:] = step[:, None] * B
    exponential = scipy.linalg.expm(augmented)
    np.testing.assert_allclose(np.diag(Abar), exponential[:N, :N], atol=1e-12)
    np.testing.assert_allclose(Bbar, exponential[:N, N:], atol=1e-12)


@pytest.mark.parametrize("layer_class", LAYER_CLASSES)
def test_ssm_system_and_output_are_differentiable(layer_class) -> None:
    u = random_inputs(12)

    def objective(layer) -> jax.Array:  # trace(P) = sum |B_i|^2 / (1 - |p_i|^2), plus |y|^2
        system = layer.ssm_system()
        trace = jnp.sum(jnp.sum(jnp.abs(system.B) ** 2, axis=1) / (1 - jnp.abs(system.poles) ** 2))
        return trace + jnp.sum(layer(u) ** 2)

    grads = layer_arrays(eqx.filter_jit(eqx.filter_grad(objective))(make_layer(layer_class)))
    assert grads.keys() == layer_arrays(make_layer(layer_class)).keys()
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in grads.values())


@pytest.mark.parametrize("layer_class", LAYER_CLASSES)
def test_with_system_round_trip_keeps_outputs(layer_class) -> None:
    layer = make_layer(layer_class)
    rebuilt = layer.with_system(layer.ssm_system())
    u = random_inputs(3)
    np.testing.assert_allclose(rebuilt(u), layer(u), atol=1e-10)
    assert rebuilt is not layer and rebuilt.state_dim == N


@pytest.mark.parametrize("layer_class", LAYER_CLASSES)
def test_with_system_represents_any_stable_pole(layer_class) -> None:
    # positive real (zero phase), negative real, negative phases, imaginary, (almost) zero
    poles = [0.7, -0.6, 0.5 - 0.4j, -0.3 - 0.3j, 0.2j, 1e-320, 0.99 + 0.1j, 0.9 - 0.01j]
    system = random_system(poles, np.diag([0.5, -1.0, 2.0]), seed=4)
    layer = make_layer(layer_class).with_system(system)
    assert layer.state_dim == N
    assert all(np.all(np.isfinite(value)) for value in layer_arrays(layer).values())
    rebuilt = layer.ssm_system()
    np.testing.assert_allclose(rebuilt.poles, poles, atol=1e-12)
    np.testing.assert_allclose(rebuilt.B, system.B, rtol=1e-10)
    u = random_inputs(5)
    np.testing.assert_allclose(layer(u), simulate_system(system, u), atol=1e-10)


@pytest.mark.parametrize("layer_class", LAYER_CLASSES)
def test_with_system_rejects_unstable_poles_and_wrong_shapes(layer_class) -> None:
    layer = make_layer(layer_class)
    with pytest.raises(ValueError, match=r"unstable after reduction.*1\.01"):
        layer.with_system(random_system([0.5, 1.01j], np.eye(H)))
    too_wide = cc.DiagonalStateSpace(np.ones(2), np.ones((2, H + 1)), np.ones((H, 2)))
    with pytest.raises(ValueError, match=r"B \(n, 3\)"):
        layer.with_system(too_wide)
    with pytest.raises(ValueError, match="must be diagonal"):
        layer.with_system(random_system([0.5, 0.2], np.ones((H, H))))


def fast_decaying_lru() -> LRU:
    """An LRU whose Hankel singular values decay quickly: row k of B scaled by 0.4^k."""
    system = random_system(np.linspace(0.3, 0.95, N) * np.exp(2j * np.arange(N)), np.eye(H))
    scaled = cc.DiagonalStateSpace(
        system.poles, 0.4 ** np.arange(N)[:, None] * system.B, system.C, system.D
    )
    return make_layer(LRU).with_system(scaled)


@pytest.mark.parametrize("real_output", [False, True])
def test_balanced_truncation_of_a_layer_respects_the_error_bound(real_output: bool) -> None:
    layer = fast_decaying_lru()
    system = as_numpy(layer.ssm_system())
    balanced = cc.real_output_system(system) if real_output else system
    reduction = cc.balanced_truncation(balanced, tau=0.01)
    reduced = layer.with_system(cc.to_diagonal(reduction.system, real_output=real_output))
    assert reduced.state_dim < layer.state_dim
    u = random_inputs(6)
    y, y_reduced = np.asarray(layer(u)), np.asarray(reduced(u))
    error = np.linalg.norm(y - y_reduced)
    assert error <= float(reduction.error_bound) * np.linalg.norm(u)
    assert error <= 0.05 * np.linalg.norm(y)


# --- the sequence model ---------------------------------------------------------------


def make_model(
    layer: str = "lru", pooling: str = "mean", dropout: float = 0.0, n_layers: int = 2
) -> SequenceModel:
    return SequenceModel(
        2, 5, H, N, n_layers, layer=layer, pooling=pooling, dropout=dropout, key=jax.random.key(0)
    )


@pytest.mark.parametrize("layer", ["lru", "s5"])
@pytest.mark.parametrize(("pooling", "shape"), [("mean", (5,)), ("last", (5,)), ("none", (L, 5))])
def test_sequence_model_output_shapes(layer: str, pooling: str, shape: tuple[int, ...]) -> None:
    model = make_model(layer, pooling)
    x = random_inputs(8, channels=2)
    assert model(x).shape == shape
    outputs = jax.vmap(model)(np.stack([x, -x]))
    assert outputs.shape == (2, *shape)
    np.testing.assert_allclose(outputs[0], model(x), atol=1e-12)


def test_sequence_model_pooling_reads_the_right_steps() -> None:
    x = random_inputs(9, channels=2)
    model = make_model(pooling="none")
    features = jax.vmap(model.encoder)(x)
    for block in model.blocks:
        features = block(features)
    np.testing.assert_allclose(model(x), jax.vmap(model.decoder)(features), atol=1e-12)
    np.testing.assert_allclose(make_model(pooling="last")(x), model(x)[-1], atol=1e-12)
    np.testing.assert_allclose(
        make_model(pooling="mean")(x), model.decoder(jnp.mean(features, axis=0)), atol=1e-12
    )


def test_sequence_model_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="`layer` 'gru'"):
        make_model(layer="gru")
    with pytest.raises(ValueError, match="`pooling` 'max'"):
        make_model(pooling="max")
    with pytest.raises(ValueError, match="one entry per layer"):
        SequenceModel(2, 5, H, [N, N, N], 2, key=jax.random.key(0))


def test_ssm_layers_are_named_like_torch_and_can_be_replaced() -> None:
    model = make_model()
    assert [name for name, _ in ssm_layer_paths(model)] == ["blocks.0.ssm", "blocks.1.ssm"]
    expected = {
        "encoder.weight",
        "blocks.1.norm.bias",
        "blocks.0.ssm.nu_log",
        "blocks.1.out.weight",
    }
    assert expected <= set(state_dict(model))
    smaller = fast_decaying_lru().with_system(random_system([0.5, 0.25], np.eye(H)))
    replaced = with_ssm_layers(model, {"blocks.1.ssm": smaller})
    assert [layer.state_dim for _, layer in ssm_layer_paths(replaced)] == [N, 2]
    assert [layer.state_dim for _, layer in ssm_layer_paths(model)] == [N, N]
    with pytest.raises(ValueError, match=r"\['blocks.2.ssm'\]"):
        with_ssm_layers(model, {"blocks.2.ssm": smaller})


def test_config_and_state_dict_round_trip_a_reduced_model() -> None:
    model = make_model()
    name, layer = ssm_layer_paths(model)[0]
    reduction = cc.balanced_truncation(cc.real_output_system(as_numpy(layer.ssm_system())), rank=6)
    reduced_layer = layer.with_system(cc.to_diagonal(reduction.system, real_output=True))
    model = with_ssm_layers(model, {name: reduced_layer})
    config = model_config(model)
    assert config["state_dims"] == [reduced_layer.state_dim, N]
    assert reduced_layer.state_dim < N
    rebuilt = load_state_dict(model_from_config(config, jax.random.key(1)), state_dict(model))
    x = random_inputs(10, channels=2)
    np.testing.assert_allclose(rebuilt(x), model(x), atol=1e-12)
    assert model_config(rebuilt) == config


def test_load_state_dict_names_what_does_not_match() -> None:
    model = make_model()
    state = state_dict(model)
    with pytest.raises(ValueError, match=r"missing \['decoder.bias'\]"):
        load_state_dict(model, {k: v for k, v in state.items() if k != "decoder.bias"})
    with pytest.raises(ValueError, match=r"state\['blocks.0.ssm.D'\]"):
        load_state_dict(model, {**state, "blocks.0.ssm.D": np.zeros(H + 1)})


def test_jitted_training_step_with_dropout_is_finite() -> None:
    model = make_model(dropout=0.1, n_layers=1)
    optimizer = optax.adam(1e-3)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    x = jnp.asarray(np.random.default_rng(11).standard_normal((4, 8, 2)))
    labels = jnp.array([0, 1, 2, 3])

    @eqx.filter_jit
    def step(model, state, key):
        def loss_fn(model):
            keys = jax.random.split(key, x.shape[0])
            logits = jax.vmap(lambda xi, ki: model(xi, key=ki))(x, keys)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, loss, grads

    new_model, state, loss, grads = step(model, state, jax.random.key(0))
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    assert not np.allclose(new_model.blocks[0].ssm.B_re, model.blocks[0].ssm.B_re)

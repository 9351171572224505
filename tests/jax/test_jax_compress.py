"""compressm_jax: compress over pytrees + Optax state, the Compressor, and parity with PyTorch."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import compressm_jax as cj
import compressm_torch as ct
from compressm_core.schedule import ReductionSchedule
from reference_models.jax_models import SequenceModel, state_dict
from reference_models.torch_models import SequenceModel as TorchSequenceModel

jax.config.update("jax_enable_x64", True)


def _model(state_dim=24, seed=0):
    return SequenceModel(2, 3, 8, state_dim, 2, key=jax.random.key(seed))


def _trained(model, optimizer):
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 20, 2)))

    def loss(m):
        return jnp.mean(jax.vmap(lambda xi: m(xi, inference=True))(x) ** 2)

    for _ in range(2):
        grads = eqx.filter_grad(loss)(model)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
    return model, state


def _leaves(tree):
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in flat}


def test_optax_state_follows_the_rule():
    optimizer = optax.adamw(1e-3)
    model, state = _trained(_model(), optimizer)
    result = cj.compress(model, state, optimizer, ranks={"blocks.0.ssm": 10})
    assert [layer.state_dim for _, layer in cj.reducible_layers(result.model)] == [10, 24]
    old, new = _leaves(state), _leaves(result.opt_state)
    assert old.keys() == new.keys()
    for key, leaf in new.items():
        if ".blocks[0].ssm." in key:
            assert np.all(np.asarray(leaf) == 0), f"{key} should start afresh"
        else:
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(old[key]), err_msg=key)
    grads = jax.tree_util.tree_map(jnp.ones_like, eqx.filter(result.model, eqx.is_array))
    optimizer.update(grads, result.opt_state, eqx.filter(result.model, eqx.is_array))


def test_inputs_are_untouched():
    optimizer = optax.adam(1e-3)
    model, state = _trained(_model(), optimizer)
    before = state_dict(model)
    cj.compress(model, state, optimizer, tau=0.2)
    after = state_dict(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_same_weights_give_same_hsvs_and_reductions_in_both_backends():
    jax_model = _model(state_dim=32)
    torch_model = TorchSequenceModel(2, 3, 8, 32, 2).double()
    torch_model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict(jax_model).items()})
    jax_hsv = cj.hankel_singular_values(jax_model)
    torch_hsv = ct.hankel_singular_values(torch_model)
    for name in jax_hsv:
        np.testing.assert_allclose(jax_hsv[name], torch_hsv[name].numpy(), rtol=1e-10)
    jax_result = cj.compress(jax_model, tau=0.1)
    torch_result = ct.compress(torch_model, tau=0.1)
    assert [r.new_dim for r in jax_result.reductions] == [r.new_dim for r in torch_result.reductions]
    x = np.random.default_rng(1).standard_normal((2, 30, 2))
    torch_result.model.eval()
    y_torch = torch_result.model(torch.from_numpy(x)).detach().numpy()
    y_jax = np.asarray(jax.vmap(lambda xi: jax_result.model(xi, inference=True))(jnp.asarray(x)))
    np.testing.assert_allclose(y_jax, y_torch, rtol=1e-8, atol=1e-10)


def test_compressor_rolls_back_and_stops():
    optimizer = optax.adam(1e-3)
    model, state = _trained(_model(state_dim=32), optimizer)
    compressor = cj.Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=0.3), optimizer)
    metrics = iter([0.9, 0.5])
    kept, kept_state, compressor = compressor.step(5, model, state, lambda m: next(metrics))
    assert kept is model and kept_state is state
    assert compressor.state.stopped and compressor.events[-1].rolled_back
    assert compressor.step(10, model, state, lambda m: 1.0)[0] is model


def test_compressor_keeps_good_reductions():
    optimizer = optax.adam(1e-3)
    model, state = _trained(_model(state_dim=32), optimizer)
    compressor = cj.Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=0.3), optimizer)
    new_model, _, compressor = compressor.step(5, model, state, lambda m: 1.0)
    assert all(layer.state_dim < 32 for _, layer in cj.reducible_layers(new_model))
    assert not compressor.events[-1].rolled_back


def test_training_step_recompiles_once_per_reduction():
    optimizer = optax.adam(1e-3)
    model, state = _trained(_model(state_dim=16), optimizer)
    traces = []
    x = jnp.ones((2, 10, 2))

    @eqx.filter_jit
    def step(m, s):
        traces.append(1)  # runs only while tracing
        grads = eqx.filter_grad(lambda mm: jnp.mean(jax.vmap(lambda xi: mm(xi, inference=True))(x) ** 2))(m)
        updates, s = optimizer.update(grads, s, eqx.filter(m, eqx.is_array))
        return eqx.apply_updates(m, updates), s

    for _ in range(3):
        model, state = step(model, state)
    assert len(traces) == 1
    result = cj.compress(model, state, optimizer, ranks={"blocks.0.ssm": 8, "blocks.1.ssm": 8})
    model, state = result.model, result.opt_state
    for _ in range(3):
        model, state = step(model, state)
    assert len(traces) == 2


@pytest.mark.parametrize(("kwargs", "match"), [({"ranks": {"blocks.7.ssm": 2}}, "unknown layers"), ({}, "exactly one"), ({"ranks": {"blocks.0.ssm": 24}}, "layer blocks.0.ssm")])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cj.compress(_model(), **kwargs)

"""compressm_jax: compress over pytrees + Optax state, the Compressor, and parity with PyTorch."""

from dataclasses import replace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import compressm_jax as cj
import compressm_torch as ct
from compressm_core.layers import CompressionEvent, Judgement
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


def test_compressor_judges_after_recovery_rolls_back_and_stops():
    optimizer = optax.adam(1e-3)
    model, state = _trained(_model(state_dim=32), optimizer)
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.2, tau=0.3, safety_net=True)
    compressor = cj.Compressor(schedule, optimizer)
    metrics = iter([0.9, 0.5])  # before the cut, just after it: no verdict yet
    reduced, reduced_state, compressor = compressor.step(5, model, state, lambda m: next(metrics))
    assert reduced is not model and compressor.pending.model is model and compressor.pending.opt_state is state
    assert compressor.step(7, reduced, reduced_state, lambda m: 0.0)[0] is reduced
    kept, kept_state, compressor = compressor.step(10, reduced, reduced_state, lambda m: 0.8)
    assert kept is model and kept_state is state
    judgement = compressor.events[-1]
    assert isinstance(judgement, Judgement) and judgement.rolled_back and judgement.metric_after == 0.8
    assert compressor.state.stopped and compressor.pending is None
    assert compressor.step(15, model, state, lambda m: 1.0)[0] is model


def test_compressor_keeps_cuts_without_a_net():
    optimizer = optax.adam(1e-3)
    model, state = _trained(_model(state_dim=32), optimizer)
    compressor = cj.Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=0.3), optimizer)
    metrics = iter([0.9, 0.1])
    new_model, _, compressor = compressor.step(5, model, state, lambda m: next(metrics))
    assert all(layer.state_dim < 32 for _, layer in cj.reducible_layers(new_model))
    assert isinstance(compressor.events[-1], CompressionEvent) and compressor.pending is None


def test_slice_keeps_the_leading_moments_and_the_count():
    optimizer = optax.adam(1e-3)
    model, state = _trained(_model(state_dim=32), optimizer)
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, mode="fixed", fraction=0.25)
    _, new_state, _ = cj.Compressor(replace(schedule, optimizer_state="slice"), optimizer).step(5, model, state, lambda m: 1.0)
    old, new = _leaves(state), _leaves(new_state)
    assert int(np.asarray(new["[0].count"])) == int(np.asarray(old["[0].count"])) == 2
    for key in ("[0].mu.blocks[0].ssm.nu_log", "[0].nu.blocks[1].ssm.B_re"):
        expected = np.asarray(old[key])[tuple(slice(0, n) for n in new[key].shape)]  # the authors' rule
        assert new[key].shape[0] == 24
        np.testing.assert_array_equal(np.asarray(new[key]), expected)
    reset_state = cj.Compressor(schedule, optimizer).step(5, model, state, lambda m: 1.0)[1]
    assert np.all(np.asarray(_leaves(reset_state)["[0].mu.blocks[0].ssm.nu_log"]) == 0)


def test_slice_of_a_selective_layer_keeps_exactly_the_moments_of_the_kept_states():
    from reference_models.jax_models import SelectiveSequenceModel

    optimizer = optax.adam(1e-2)
    model = SelectiveSequenceModel(2, 3, 6, 8, 1, key=jax.random.key(0))
    rng = np.random.default_rng(0)
    state = jax.tree_util.tree_map(  # moments that tell every entry apart
        lambda a: jnp.asarray(rng.standard_normal(a.shape)) if a.ndim else a,
        optimizer.init(eqx.filter(model, eqx.is_array)),
    )
    calibration = jnp.asarray(np.random.default_rng(1).standard_normal((3, 10, 2)))
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, mode="fixed", fraction=0.5)
    compressor = cj.Compressor(replace(schedule, optimizer_state="slice"), optimizer, calibration=calibration)
    _, new_state, compressor = compressor.step(5, model, state, lambda m: 1.0)
    (reduction,) = compressor.events[0].reductions
    kept = np.asarray(reduction.kept)
    layer = cj.compressible_layers(model)[0][1]
    dt_rank, n = layer.dt_rank, 8
    rows = np.concatenate([np.arange(dt_rank), dt_rank + kept, dt_rank + n + kept])  # delta, B, C rows
    old, new = _leaves(state), _leaves(new_state)
    prefix = "[0].nu.blocks[0].ssm"
    np.testing.assert_array_equal(np.asarray(new[f"{prefix}.A_log"]), np.asarray(old[f"{prefix}.A_log"])[:, kept])
    np.testing.assert_array_equal(
        np.asarray(new[f"{prefix}.x_proj.weight"]), np.asarray(old[f"{prefix}.x_proj.weight"])[rows]
    )


def test_state_dict_round_trip_gives_the_same_decisions():
    import json

    optimizer = optax.adam(1e-3)
    model, state = _trained(_model(state_dim=32), optimizer)
    schedule = ReductionSchedule(total_steps=40, interval=5, reduce_until=0.5, tau=0.2, safety_net=True, after_rollback="skip")
    metrics = {s: 0.5 if s == 10 else 0.9 for s in range(1, 41)}

    def run(compressor, model, state, steps):
        for step in steps:
            model, state, compressor = compressor.step(step, model, state, lambda m, s=step: metrics[s])
        return compressor, model, state

    straight, *_ = run(cj.Compressor(schedule, optimizer), model, state, range(1, 41))
    first, m, s = run(cj.Compressor(schedule, optimizer), model, state, range(1, 8))
    assert first.state.pending is not None
    data = json.loads(json.dumps(first.state_dict()))
    with pytest.raises(ValueError, match="pending"):
        cj.Compressor(schedule, optimizer).load_state_dict(data)
    resumed = cj.Compressor(schedule, optimizer).load_state_dict(
        data, pending_model=first.pending.model, pending_optimizer=first.pending.opt_state
    )
    resumed, *_ = run(resumed, m, s, range(8, 41))

    def summary(events):
        return [(type(e).__name__, e.step, [r.new_dim for r in e.reductions], e.rolled_back) for e in events]

    assert summary(resumed.events) == summary(straight.events)
    assert any(e.rolled_back for e in straight.events) and resumed.state == straight.state


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

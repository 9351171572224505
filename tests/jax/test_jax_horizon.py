"""compressm_jax with time-limited Gramians (``horizon``), on the decoupled LRU layer of the
``decoupled_lru`` fixture, whose HSVs with and without a horizon are known in closed form."""

from __future__ import annotations

from dataclasses import replace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import compressm_jax as cj
from compressm_core.schedule import ReductionSchedule
from reference_models.jax_models import SequenceModel

jax.config.update("jax_enable_x64", True)

HORIZON, TAU = 40, 0.2


def lru_model(case, parameters) -> SequenceModel:
    """A one-layer LRU model whose layer has ``parameters`` (by name)."""
    model = SequenceModel(2, 3, case.d_model, case.n, 1, key=jax.random.key(0))
    names = list(parameters)
    return eqx.tree_at(
        lambda m: [getattr(m.blocks[0].ssm, name) for name in names],
        model,
        [jnp.asarray(value) for value in parameters.values()],
    )


def decoupled_model(case) -> SequenceModel:
    return lru_model(case, case.parameters())


def pole_radii(model) -> np.ndarray:
    return np.sort(np.abs(np.asarray(model.blocks[0].ssm.ssm_system().poles)))[::-1]


@pytest.mark.parametrize("horizon", [None, HORIZON])
def test_hankel_singular_values_follow_the_closed_form(horizon, decoupled_lru):
    hsv = cj.hankel_singular_values(decoupled_model(decoupled_lru), horizon=horizon)["blocks.0.ssm"]
    np.testing.assert_allclose(hsv, np.sort(decoupled_lru.hsv(horizon))[::-1], rtol=1e-9)


def test_the_horizon_keeps_faster_poles_at_the_same_tolerance(decoupled_lru):
    case = decoupled_lru
    model = decoupled_model(case)
    optimizer = optax.adam(1e-3)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    infinite = cj.compress(model, state, optimizer, tau=TAU)
    limited = cj.compress(model, state, optimizer, tau=TAU, horizon=HORIZON)
    np.testing.assert_allclose(pole_radii(infinite.model), case.kept_radii(None, TAU), rtol=1e-9)
    np.testing.assert_allclose(pole_radii(limited.model), case.kept_radii(HORIZON, TAU), rtol=1e-9)
    assert len(case.kept_radii(HORIZON, TAU)) > len(case.kept_radii(None, TAU))
    assert limited.reductions[0].error_bound is None
    assert infinite.reductions[0].error_bound > 0


def test_a_cut_records_the_poles_it_moved_in(escaping_poles):
    """The layer's LayerReduction counts the truncated poles outside its largest modulus
    (``escaping_poles``' NumPy oracle), and the new layer's poles lie within it."""
    case = escaping_poles
    model = lru_model(case, case.lru_parameters())
    np.testing.assert_allclose(np.asarray(model.blocks[0].ssm.ssm_system().poles), case.poles, rtol=1e-12)
    escaped = case.escaped(case.rank)
    limited = cj.compress(model, ranks={"blocks.0.ssm": case.rank}, horizon=case.horizon)
    record = limited.reductions[0]
    assert record.poles_moved_in == len(escaped) >= 2
    assert record.moved_from_modulus == pytest.approx(escaped[0], rel=1e-9)
    assert record.moved_to_modulus == pytest.approx(case.limit, rel=1e-12)
    assert np.all(pole_radii(limited.model) <= case.limit * (1 + 1e-12))
    infinite = cj.compress(model, ranks={"blocks.0.ssm": case.rank}).reductions[0]
    assert (infinite.poles_moved_in, infinite.moved_from_modulus, infinite.moved_to_modulus) == (0, None, None)


def test_compressor_plans_with_its_horizon(decoupled_lru):
    case = decoupled_lru
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=TAU)
    optimizer = optax.adam(1e-3)
    model = decoupled_model(case)
    ranks, _ = cj.Compressor(schedule, optimizer, horizon=HORIZON).plan(model)
    assert ranks == {"blocks.0.ssm": len(case.kept_radii(HORIZON, TAU))}
    products = cj.Compressor(replace(schedule, timing="certified"), optimizer, horizon=HORIZON)._factor_products(model)
    np.testing.assert_allclose(
        np.linalg.svd(products["blocks.0.ssm"], compute_uv=False), np.sort(case.hsv(HORIZON))[::-1], rtol=1e-9
    )
    with pytest.raises(ValueError, match=r"`horizon` must be a positive integer .* got 0"):
        cj.Compressor(schedule, optimizer, horizon=0)
    with pytest.raises(ValueError, match=r"`horizon` must be a positive integer .* got 'sequence'"):
        cj.compress(model, tau=TAU, horizon="sequence")

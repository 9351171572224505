"""compressm_torch with time-limited Gramians (``horizon``): near-integrator poles lose their
weight, on the decoupled LRU layer of the ``decoupled_lru`` fixture (HSVs in closed form)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import compressm_torch as ct
from compressm_core.schedule import ReductionSchedule
from reference_models.torch_models import SequenceModel

HORIZON, TAU = 40, 0.2


def lru_model(case, parameters) -> SequenceModel:
    """A one-layer LRU model whose layer has ``parameters`` (by name)."""
    torch.manual_seed(0)
    model = SequenceModel(d_input=2, d_output=3, d_model=case.d_model, state_dim=case.n, n_layers=1, layer="lru").double()
    with torch.no_grad():
        for name, value in parameters.items():
            getattr(model.blocks[0].ssm, name).copy_(torch.from_numpy(value))
    return model


def decoupled_model(case) -> SequenceModel:
    return lru_model(case, case.parameters())


@pytest.mark.parametrize("horizon", [None, HORIZON])
def test_hankel_singular_values_follow_the_closed_form(horizon, decoupled_lru):
    hsv = ct.hankel_singular_values(decoupled_model(decoupled_lru), horizon=horizon)["blocks.0.ssm"]
    np.testing.assert_allclose(hsv.numpy(), np.sort(decoupled_lru.hsv(horizon))[::-1], rtol=1e-9)


def pole_radii(model) -> np.ndarray:
    return np.sort(model.blocks[0].ssm.poles().abs().detach().numpy())[::-1]


def test_the_horizon_keeps_faster_poles_at_the_same_tolerance(decoupled_lru):
    """Infinite horizon: the three near-integrators hold 83% of the HSV sum, so tau = 0.2 keeps
    only them. Over 40 steps they hold 39%, and the same tau keeps faster states too."""
    case = decoupled_lru
    model = decoupled_model(case)
    infinite = ct.compress(model, tau=TAU)
    limited = ct.compress(model, tau=TAU, horizon=HORIZON)
    np.testing.assert_allclose(pole_radii(infinite.model), case.kept_radii(None, TAU), rtol=1e-9)
    np.testing.assert_allclose(pole_radii(limited.model), case.kept_radii(HORIZON, TAU), rtol=1e-9)
    assert np.all(pole_radii(infinite.model) > 0.99)
    assert limited.model.blocks[0].ssm.state_dim > infinite.model.blocks[0].ssm.state_dim
    assert np.sum(pole_radii(limited.model) < 0.9) >= 3
    assert infinite.reductions[0].error_bound == pytest.approx(2 * np.sort(case.hsv(None))[::-1][3:].sum())
    assert limited.reductions[0].error_bound is None  # time-limited truncation: no a-priori bound


def test_a_cut_records_the_poles_it_moved_in(escaping_poles):
    """The layer's LayerReduction counts the truncated poles outside its largest modulus
    (``escaping_poles``' NumPy oracle), and the new layer's poles lie within it."""
    case = escaping_poles
    model = lru_model(case, case.lru_parameters())
    np.testing.assert_allclose(model.blocks[0].ssm.poles().detach().numpy(), case.poles, rtol=1e-12)
    escaped = case.escaped(case.rank)
    limited = ct.compress(model, ranks={"blocks.0.ssm": case.rank}, horizon=case.horizon)
    record = limited.reductions[0]
    assert record.poles_moved_in == len(escaped) >= 2
    assert record.moved_from_modulus == pytest.approx(escaped[0], rel=1e-9)
    assert record.moved_to_modulus == pytest.approx(case.limit, rel=1e-12)
    assert np.all(pole_radii(limited.model) <= case.limit * (1 + 1e-12))
    infinite = ct.compress(model, ranks={"blocks.0.ssm": case.rank}).reductions[0]
    assert (infinite.poles_moved_in, infinite.moved_from_modulus, infinite.moved_to_modulus) == (0, None, None)


def test_compressor_plans_with_its_horizon(decoupled_lru):
    case = decoupled_lru
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=TAU)
    model = decoupled_model(case)
    assert ct.Compressor(schedule).plan(model) == {"blocks.0.ssm": len(case.kept_radii(None, TAU))}
    assert ct.Compressor(schedule, horizon=HORIZON).plan(model) == {"blocks.0.ssm": len(case.kept_radii(HORIZON, TAU))}
    certified = ct.Compressor(replace(schedule, timing="certified"), horizon=HORIZON)
    products = certified._factor_products(model)
    singular = np.linalg.svd(products["blocks.0.ssm"], compute_uv=False)
    np.testing.assert_allclose(singular, np.sort(case.hsv(HORIZON))[::-1], rtol=1e-9)


def test_the_lightning_callback_passes_the_horizon():
    pytest.importorskip("lightning")
    from compressm_torch.lightning import CompreSSMCallback

    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=TAU)
    callback = CompreSSMCallback(schedule, lambda module: 1.0, horizon=HORIZON)
    assert callback.compressor.horizon == HORIZON


@pytest.mark.parametrize("horizon", [0, -1, True, 2.5, "sequence"])
def test_a_bad_horizon_is_refused_by_name(horizon, decoupled_lru):
    model = decoupled_model(decoupled_lru)
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=TAU)
    for call in (
        lambda: ct.hankel_singular_values(model, horizon=horizon),
        lambda: ct.compress(model, tau=TAU, horizon=horizon),
        lambda: ct.compress(model, ranks={"blocks.0.ssm": 3}, horizon=horizon),
        lambda: ct.Compressor(schedule, horizon=horizon),
    ):
        with pytest.raises(ValueError, match=f"`horizon` must be a positive integer .* got {horizon!r}"):
            call()


def test_selective_layers_ignore_the_horizon():
    """Their energies are sums over the calibration sequences (finite already)."""
    from reference_models.torch_models.selective import SelectiveSequenceModel

    torch.manual_seed(0)
    model = SelectiveSequenceModel(3, 4, 6, 8, 1).double()
    x = torch.randn(4, 10, 3, dtype=torch.float64)
    without = ct.hankel_singular_values(model, calibration=x)
    with_horizon = ct.hankel_singular_values(model, calibration=x, horizon=3)
    for name, values in without.items():
        torch.testing.assert_close(with_horizon[name], values)
    assert math.isfinite(float(without[next(iter(without))][0]))

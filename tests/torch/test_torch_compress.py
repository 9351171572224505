"""compressm_torch: reading layers, compressing them, and carrying the optimizer over."""

import copy

import numpy as np
import pytest
import torch

import compressm_torch as ct
from reference_models.torch_models import SequenceModel


def _model(layer="lru", state_dim=24, seed=0):
    torch.manual_seed(seed)
    return SequenceModel(d_input=2, d_output=3, d_model=8, state_dim=state_dim, n_layers=2, layer=layer).double()


def _trained_optimizer(model, kind="adamw"):
    if kind == "adamw":
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for n, p in model.named_parameters() if ".ssm." in n], "lr": 1e-3, "weight_decay": 0.0},
                {"params": [p for n, p in model.named_parameters() if ".ssm." not in n], "lr": 2e-3},
            ]
        )
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    x = torch.randn(4, 20, 2, dtype=torch.float64)
    for _ in range(2):
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
    return optimizer


def _oracle_hsv(layer):
    """HSVs of (lambda, gamma B, C) from closed-form Gramians built here, sqrt(eig(P Q))."""
    lam = np.exp(-np.exp(layer.nu_log.detach().numpy()) + 1j * np.exp(layer.theta_log.detach().numpy()))
    B = np.exp(layer.gamma_log.detach().numpy())[:, None] * (layer.B_re.detach().numpy() + 1j * layer.B_im.detach().numpy())
    C = layer.C_re.detach().numpy() + 1j * layer.C_im.detach().numpy()
    P = (B @ B.conj().T) / (1 - np.outer(lam, lam.conj()))
    Q = (C.conj().T @ C) / (1 - np.outer(lam.conj(), lam))
    return np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q))))[::-1]


def test_reducible_layers_are_found_in_order():
    model = _model()
    assert [name for name, _ in ct.reducible_layers(model)] == ["blocks.0.ssm", "blocks.1.ssm"]


@pytest.mark.parametrize("layer", ["lru", "s5"])
def test_hankel_singular_values_per_layer(layer):
    model = _model(layer)
    hsvs = ct.hankel_singular_values(model)
    assert list(hsvs) == ["blocks.0.ssm", "blocks.1.ssm"]
    for name, module in ct.reducible_layers(model):
        assert hsvs[name].shape == (24,)
        assert torch.all(hsvs[name][:-1] >= hsvs[name][1:])
        if layer == "lru":
            np.testing.assert_allclose(hsvs[name].numpy(), _oracle_hsv(module), rtol=1e-8, atol=1e-10)


def test_real_output_hsvs_have_two_per_state():
    hsvs = ct.hankel_singular_values(_model(), gramians="real_output")
    assert all(h.shape == (48,) for h in hsvs.values())


def _parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_compress_leaves_model_and_optimizer_untouched():
    model = _model()
    optimizer = _trained_optimizer(model)
    params_before = _parameters(model)
    state_before = copy.deepcopy(optimizer.state_dict())
    ct.compress(model, optimizer, ranks={"blocks.0.ssm": 10})
    assert all(torch.equal(params_before[n], p) for n, p in model.named_parameters())
    state_after = optimizer.state_dict()
    for index, entry in state_before["state"].items():
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(state_after["state"][index][key]))


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_optimizer_state_follows_the_rule(kind):
    model = _model()
    optimizer = _trained_optimizer(model, kind)
    result = ct.compress(model, optimizer, ranks={"blocks.0.ssm": 10})
    old = dict(model.named_parameters())
    new = dict(result.model.named_parameters())
    for name, param in new.items():
        if name.startswith("blocks.0.ssm."):
            assert param not in result.optimizer.state, f"{name} should start afresh"
            continue
        old_state, new_state = optimizer.state[old[name]], result.optimizer.state[param]
        assert old_state.keys() == new_state.keys()
        for key in old_state:
            assert torch.equal(torch.as_tensor(old_state[key]), torch.as_tensor(new_state[key]))
            if torch.is_tensor(old_state[key]) and old_state[key].dim() > 0:
                assert new_state[key].data_ptr() != old_state[key].data_ptr()
    assert [g["lr"] for g in result.optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]
    x = torch.randn(3, 20, 2, dtype=torch.float64)
    result.optimizer.zero_grad()
    result.model(x).pow(2).mean().backward()
    result.optimizer.step()
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


@pytest.mark.parametrize("layer", ["lru", "s5"])
def test_compressed_model_output_error_within_layer_bounds(layer):
    """A single reduced layer's output moves by at most its H-inf bound times the input size."""
    model = _model(layer, state_dim=32)
    result = ct.compress(model, ranks={"blocks.0.ssm": 12})
    (record,) = result.reductions
    assert (record.old_dim, record.new_dim) == (32, 12)
    old_layer = model.get_submodule("blocks.0.ssm")
    new_layer = result.model.get_submodule("blocks.0.ssm")
    assert new_layer.state_dim == 12
    u = torch.randn(1, 400, 8, dtype=torch.float64)
    with torch.no_grad():
        error = (old_layer(u) - new_layer(u)).squeeze(0)
    # ||y - y_r||_2 <= ||G - G_r||_inf ||u||_2 over the whole sequence (zero initial state)
    assert float(error.norm()) <= record.error_bound * float(u.norm()) + 1e-9


def test_tau_reduces_every_layer_to_its_energy_rank():
    model = _model(state_dim=32)
    hsvs = ct.hankel_singular_values(model)
    result = ct.compress(model, tau=0.2)
    for record in result.reductions:
        hsv = hsvs[record.name].numpy()
        kept = np.cumsum(hsv) / hsv.sum()
        expected = int(np.argmax(kept >= 0.8)) + 1
        assert record.new_dim == expected


def test_real_output_gramians_pair_states():
    model = _model(state_dim=16)
    result = ct.compress(model, ranks={"blocks.0.ssm": 12}, gramians="real_output")
    (record,) = result.reductions
    assert 6 <= record.new_dim <= 12


def test_selection_ablation_keeps_other_states():
    model = _model(state_dim=32)
    largest = ct.compress(model, ranks={"blocks.0.ssm": 8}, selection="largest").reductions[0]
    smallest = ct.compress(model, ranks={"blocks.0.ssm": 8}, selection="smallest").reductions[0]
    random_a = ct.compress(model, ranks={"blocks.0.ssm": 8}, selection="random", seed=1).reductions[0]
    assert largest.error_bound < random_a.error_bound <= smallest.error_bound


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ranks": {"blocks.9.ssm": 3}}, "unknown layers"),
        ({"ranks": {"blocks.0.ssm": 0}}, "layer blocks.0.ssm"),
        ({"ranks": {"blocks.0.ssm": 24}}, "layer blocks.0.ssm"),
        ({"ranks": {"blocks.0.ssm": 3}, "tau": 0.1}, "exactly one"),
        ({}, "exactly one"),
        ({"tau": 0.1, "gramians": "imaginary"}, "gramians"),
        ({"ranks": {"blocks.0.ssm": 3}, "selection": "best"}, "selection"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct.compress(_model(), **kwargs)

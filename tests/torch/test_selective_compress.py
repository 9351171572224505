"""compressm_torch on selective (Mamba-style) layers: state energies on calibration inputs,
reduction by index selection, the optimizer, and the Compressor with its rollback.

Oracles: the layer inputs are rebuilt by running the block's pieces by hand (no hooks), and
the state energies by NumPy loops over the Gramian recursions of docs/ltv.md."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import compressm_torch as ct
from compressm_core.schedule import ReductionSchedule
from reference_models.torch_models.selective import SelectiveSequenceModel

F64 = torch.float64


def make_model(state_dim: int = 8, n_layers: int = 2, seed: int = 0) -> SelectiveSequenceModel:
    torch.manual_seed(seed)
    model = SelectiveSequenceModel(3, 4, 6, state_dim, n_layers).to(F64)
    with torch.no_grad():  # spread the states' importance: scale the B and C rows
        for block in model.blocks:
            rows = block.ssm.x_proj.weight
            rank, n = block.ssm.dt_rank, block.ssm.state_dim
            scale = torch.logspace(0.5, -1.5, n, dtype=F64)
            rows[rank : rank + n] *= scale[:, None]
            rows[rank + n :] *= scale[torch.randperm(n)][:, None]
    return model


def sequences(batch: int, length: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, length, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)


@torch.no_grad()
def block_inputs_by_hand(model: SelectiveSequenceModel, x: torch.Tensor) -> list[torch.Tensor]:
    """What each block's SSM receives, computed from the block's pieces (no hooks)."""
    inputs = []
    h = model.encoder(x)
    for block in model.blocks:
        inner, _ = block.in_proj(block.norm(h)).chunk(2, dim=-1)
        inner = block.conv(inner.transpose(-1, -2))[..., : h.shape[-2]].transpose(-1, -2)
        inputs.append(F.silu(inner))
        h = block(h)
    return inputs


def energies_by_loops(layer, u: torch.Tensor) -> np.ndarray:
    """s_i = sum_h mean_s p_i q_i, with p, q the time averages of the Gramians' diagonals,
    from the parameters by plain loops (docs/ltv.md, diagonal transitions)."""
    W = layer.x_proj.weight.detach().numpy()
    rank, n = layer.dt_rank, layer.state_dim
    A = -np.exp(layer.A_log.detach().numpy())
    u = u.numpy()
    S, L, H = u.shape
    p_mean, q_mean = np.zeros((H, n)), np.zeros((H, n))
    for s in range(S):
        projected = u[s] @ W.T  # (L, rank + 2n)
        dt = projected[:, :rank] @ layer.dt_proj.weight.detach().numpy().T
        delta = np.logaddexp(0.0, dt + layer.dt_proj.bias.detach().numpy())  # (L, H)
        B, C = projected[:, rank : rank + n], projected[:, rank + n :]
        for h in range(H):
            for i in range(n):
                a = np.exp(delta[:, h] * A[h, i])
                b = delta[:, h] * B[:, i]
                p, p_sum = 0.0, 0.0
                for k in range(L):
                    p = a[k] ** 2 * p + b[k] ** 2
                    p_sum += p
                q, q_sum = 0.0, 0.0
                for k in reversed(range(L)):
                    q = a[k] ** 2 * q + C[k, i] ** 2
                    q_sum += q
                p_mean[h, i] += p_sum / L / S
                q_mean[h, i] += q_sum / L / S
    return (p_mean * q_mean).sum(axis=0)


def test_layer_inputs_are_what_the_blocks_feed_their_ssms() -> None:
    model, x = make_model().train(), sequences(3)
    captured = ct.selective.layer_inputs(model, x)
    assert list(captured) == ["blocks.0.ssm", "blocks.1.ssm"]
    for got, expected in zip(captured.values(), block_inputs_by_hand(model, x), strict=True):
        torch.testing.assert_close(got, expected)
    assert model.training  # the mode is restored


def test_state_energies_match_loops_over_the_recursions() -> None:
    model, x = make_model(), sequences(3)
    energies = ct.state_energies(model, x)
    for (name, layer), u in zip(ct.selective_layers(model), block_inputs_by_hand(model, x), strict=True):
        assert energies[name].dtype == F64
        np.testing.assert_allclose(energies[name].numpy(), energies_by_loops(layer, u), rtol=1e-10)


def test_hankel_singular_values_of_selective_layers_are_their_energy_spectra() -> None:
    model, x = make_model(), sequences(3)
    hsvs = ct.hankel_singular_values(model, calibration=x)
    energies = ct.state_energies(model, x)
    assert list(hsvs) == [name for name, _ in ct.compressible_layers(model)]
    for name, hsv in hsvs.items():
        expected = np.sqrt(np.sort(energies[name].numpy())[::-1])
        np.testing.assert_allclose(hsv.numpy(), expected, rtol=1e-12)


@torch.no_grad()
def test_compress_keeps_the_states_of_largest_energy() -> None:
    model, x = make_model(), sequences(4)
    energies = ct.state_energies(model, x)
    compressed = ct.compress(model, ranks={"blocks.0.ssm": 3}, calibration=x)
    layer = compressed.model.blocks[0].ssm
    assert layer.state_dim == 3 and compressed.model.blocks[1].ssm.state_dim == 8
    top = np.argsort(-energies["blocks.0.ssm"].numpy())[:3]
    expected_layer = model.blocks[0].ssm.with_states(top.tolist())
    for (name, got), (_, want) in zip(layer.named_parameters(), expected_layer.named_parameters(), strict=True):
        torch.testing.assert_close(got, want, msg=name)
    (record,) = compressed.reductions
    assert (record.name, record.old_dim, record.new_dim, record.error_bound) == ("blocks.0.ssm", 8, 3, None)
    assert model.blocks[0].ssm.state_dim == 8  # the input model is untouched


@torch.no_grad()
def test_largest_energy_states_reproduce_the_model_better_than_the_ablations() -> None:
    """Held-out inputs: the output error of keeping the top-energy states is below that of
    keeping the lowest-energy ones or a random set."""
    model, calibration, held_out = make_model(state_dim=12), sequences(8), sequences(8, seed=1)
    full = model(held_out)
    errors = {}
    for selection in ("largest", "smallest", "random"):
        reduced = ct.compress(
            model, tau=0.2, energy="squared", selection=selection, calibration=calibration, seed=3
        ).model
        errors[selection] = float((reduced(held_out) - full).norm() / full.norm())
    assert errors["largest"] < errors["random"] and errors["largest"] < errors["smallest"]


def test_tau_keeps_the_smallest_set_holding_the_energy() -> None:
    model, x = make_model(state_dim=10), sequences(4)
    energies = {name: e.numpy() for name, e in ct.state_energies(model, x).items()}
    compressed = ct.compress(model, tau=0.1, energy="squared", calibration=x)
    for name, layer in ct.selective_layers(compressed.model):
        descending = np.sort(energies[name])[::-1]
        r = layer.state_dim
        assert descending[:r].sum() >= 0.9 * descending.sum()
        assert descending[: r - 1].sum() < 0.9 * descending.sum()


def test_the_optimizer_keeps_untouched_state_and_resets_the_reduced_layer() -> None:
    model, x = make_model(), sequences(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
    compressed = ct.compress(model, optimizer, ranks={"blocks.1.ssm": 4}, calibration=x)
    old = dict(model.named_parameters())
    for name, param in compressed.model.named_parameters():
        state = compressed.optimizer.state.get(param, {})
        if name.startswith("blocks.1.ssm."):
            assert state == {}
        else:
            torch.testing.assert_close(state["exp_avg"], optimizer.state[old[name]]["exp_avg"])
    compressed.model(x).pow(2).mean().backward()
    compressed.optimizer.step()  # trains on


def test_compressor_reduces_a_selective_model_and_rolls_back() -> None:
    model, x = make_model(), sequences(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    schedule = ReductionSchedule(total_steps=100, interval=10, reduce_until=0.5, tau=0.1, energy="squared")
    kept = ct.Compressor(schedule, calibration=x)
    new_model, _ = kept.step(10, model, optimizer, lambda m: 1.0)
    assert [layer.state_dim for _, layer in ct.selective_layers(new_model)] == [
        event.new_dim for event in kept.events[0].reductions
    ]
    assert all(layer.state_dim < 8 for _, layer in ct.selective_layers(new_model))
    undone = ct.Compressor(replace(schedule, safety_net=True), calibration=x)
    metrics = iter([1.0, 0.9, 0.5])  # before, just after the cut, after recovery: beyond the tolerance
    reduced, reduced_optimizer = undone.step(10, model, optimizer, lambda m: next(metrics))
    same_model, same_optimizer = undone.step(20, reduced, reduced_optimizer, lambda m: next(metrics))
    assert same_model is model and same_optimizer is optimizer and undone.events[-1].rolled_back


def test_selective_layers_need_calibration_sequences() -> None:
    model = make_model()
    with pytest.raises(ValueError, match=r"selective layers \['blocks.0.ssm', 'blocks.1.ssm'\].*`calibration`"):
        ct.compress(model, tau=0.1)
    with pytest.raises(ValueError, match="`calibration`"):
        ct.hankel_singular_values(model)
    with pytest.raises(ValueError, match=r"`calibration` must be a batch of sequences .* got shape \(12, 3\)"):
        ct.compress(model, tau=0.1, calibration=sequences(1)[0])
    with pytest.raises(ValueError, match=r"layer blocks.0.ssm: `rank` must be an integer in \[1, 7\], got 8"):
        ct.compress(model, ranks={"blocks.0.ssm": 8}, calibration=sequences(2))

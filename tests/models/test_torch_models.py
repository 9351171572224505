"""Tests of the PyTorch reference models: the parallel scan, LRU, S5 and SequenceModel.

Oracles are independent of the code under test: a NumPy loop over the recurrence, SciPy's
matrix exponential for the zero-order hold, and the balanced-truncation error bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import compressm_core as cc
from compressm_torch import ReducibleSSM
from reference_models.torch_models import (
    LRU,
    S5,
    SequenceModel,
    diagonal_scan,
    sequential_scan,
)

F64 = torch.float64
C128 = torch.complex128


def random_poles(*shape: int, generator: torch.Generator) -> torch.Tensor:
    """Complex poles with moduli in [0.5, 0.99) and phases in [-pi, pi)."""
    modulus = 0.5 + 0.49 * torch.rand(*shape, generator=generator, dtype=F64)
    phase = math.pi * (2 * torch.rand(*shape, generator=generator, dtype=F64) - 1)
    return torch.polar(modulus, phase)


def simulate(poles, B, C, D, u: np.ndarray) -> np.ndarray:
    """Brute force: x_k = poles * x_(k-1) + B u_k, y_k = Re(C x_k) + D u_k; u (batch, L, m)."""
    poles, B, C, D = (np.asarray(a) for a in (poles, B, C, D))
    x = np.zeros((u.shape[0], poles.shape[0]), dtype=complex)
    outputs = []
    for k in range(u.shape[1]):
        x = poles * x + u[:, k] @ B.T
        outputs.append((x @ C.T).real + u[:, k] @ np.real(D).T)
    return np.stack(outputs, axis=1)


def system_arrays(system: cc.DiagonalStateSpace) -> tuple[np.ndarray, ...]:
    return tuple(t.detach().numpy() for t in (system.poles, system.B, system.C, system.D))


def inputs(batch: int, length: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(
        batch, length, width, generator=torch.Generator().manual_seed(seed), dtype=F64
    )


def make_layer(kind: str, d_model: int = 3, state_dim: int = 6, seed: int = 0) -> LRU | S5:
    torch.manual_seed(seed)
    return {"lru": LRU, "s5": S5}[kind](d_model, state_dim, dtype=F64)


def detached(system: cc.DiagonalStateSpace) -> cc.DiagonalStateSpace:
    return cc.DiagonalStateSpace(
        *(t.detach() for t in (system.poles, system.B, system.C, system.D))
    )


def designed_system(d_model: int = 3) -> cc.DiagonalStateSpace:
    """Poles with positive, negative and zero phase, including real positive and negative ones."""
    g = torch.Generator().manual_seed(1)
    poles = torch.tensor(
        [0.9, -0.6, 0.8j, 0.7 * np.exp(-0.4j), 0.95 * np.exp(3.0j), 0.5 * np.exp(-3.1j), 0.3],
        dtype=C128,
    )
    n = poles.shape[0]
    B = torch.randn(n, d_model, generator=g, dtype=C128)
    C = torch.randn(d_model, n, generator=g, dtype=C128)
    D = torch.diag(torch.randn(d_model, generator=g, dtype=F64)).to(C128)
    return cc.DiagonalStateSpace(poles, B, C, D)


# --- scan -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 13, 64, 100])
@pytest.mark.parametrize("time_varying", [False, True])
def test_diagonal_scan_equals_sequential_scan(length: int, time_varying: bool) -> None:
    g = torch.Generator().manual_seed(length)
    shape = (2, length, 4) if time_varying else (4,)
    poles = random_poles(*shape, generator=g)
    drive = torch.randn(2, length, 4, generator=g, dtype=C128)
    expected = sequential_scan(poles, drive)
    torch.testing.assert_close(diagonal_scan(poles, drive), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 80), seed=st.integers(0, 2**16))
def test_diagonal_scan_broadcasts_time_varying_poles(length: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    poles = random_poles(1, length, 3, generator=g)
    drive = torch.randn(2, length, 3, generator=g, dtype=C128)
    expected = sequential_scan(poles, drive)
    torch.testing.assert_close(diagonal_scan(poles, drive), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("time_varying", [False, True])
def test_diagonal_scan_gradcheck(time_varying: bool) -> None:
    g = torch.Generator().manual_seed(2)
    shape = (2, 5, 3) if time_varying else (3,)
    poles = random_poles(*shape, generator=g).requires_grad_()
    drive = torch.randn(2, 5, 3, generator=g, dtype=C128, requires_grad=True)
    assert torch.autograd.gradcheck(diagonal_scan, (poles, drive))


@pytest.mark.parametrize("time_varying", [False, True])
def test_diagonal_scan_gradients_equal_sequential_ones(time_varying: bool) -> None:
    g = torch.Generator().manual_seed(3)
    shape = (2, 37, 4) if time_varying else (4,)
    poles0 = random_poles(*shape, generator=g)
    drive0 = torch.randn(2, 37, 4, generator=g, dtype=C128)
    weights = torch.randn(2, 37, 4, generator=g, dtype=C128)
    grads = []
    for scan in (diagonal_scan, sequential_scan):
        poles, drive = poles0.clone().requires_grad_(), drive0.clone().requires_grad_()
        (scan(poles, drive) * weights).real.sum().backward()
        grads.append((poles.grad, drive.grad))
    for parallel, sequential in zip(*grads, strict=True):
        torch.testing.assert_close(parallel, sequential, rtol=1e-10, atol=1e-12)


def test_diagonal_scan_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="`poles` must have shape"):
        diagonal_scan(torch.ones(3, dtype=C128), torch.ones(2, 5, 4, dtype=C128))
    with pytest.raises(ValueError, match="`poles` must have shape"):
        diagonal_scan(torch.ones(2, 4, 4, dtype=C128), torch.ones(2, 5, 4, dtype=C128))
    with pytest.raises(ValueError, match="`inputs` must have shape"):
        diagonal_scan(torch.ones(4, dtype=C128), torch.ones(4, dtype=C128))


# --- LRU and S5 against brute force -----------------------------------------------------


def test_lru_forward_equals_numpy_loop_from_parameters() -> None:
    layer = make_layer("lru")
    p = {name: t.detach().numpy() for name, t in layer.named_parameters()}
    poles = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    B = np.exp(p["gamma_log"])[:, None] * (p["B_re"] + 1j * p["B_im"])
    u = inputs(2, 30, 3)
    expected = simulate(poles, B, p["C_re"] + 1j * p["C_im"], np.diag(p["D"]), u.numpy())
    np.testing.assert_allclose(layer(u).detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_lru_init_follows_the_ring_and_gamma_normalisation() -> None:
    torch.manual_seed(0)
    layer = LRU(4, 500, r_min=0.4, r_max=0.8, max_phase=math.pi, dtype=F64)
    poles = layer.poles().detach()
    assert 0.4 <= float(poles.abs().min()) and float(poles.abs().max()) <= 0.8
    assert 0 <= float(poles.angle().min()) and float(poles.angle().max()) <= math.pi
    gamma = torch.exp(layer.gamma_log.detach())
    torch.testing.assert_close(gamma, torch.sqrt(1 - poles.abs() ** 2))


#: The LRU's pole ring must satisfy 0 <= r_min <= r_max < 1; the same message in both frameworks.
LRU_RING_ERROR = r"LRU needs 0 <= `r_min` <= `r_max` < 1 and `r_max` > 0 \(the moduli of the initial poles\), got r_min={}, r_max={}"


@pytest.mark.parametrize(("r_min", "r_max"), [(0.9, 1.0), (0.5, 1.5), (0.8, 0.7), (-0.1, 0.5), (0.0, 0.0)])
def test_lru_rejects_a_ring_outside_the_unit_disc_or_reversed(r_min: float, r_max: float) -> None:
    with pytest.raises(ValueError, match=LRU_RING_ERROR.format(r_min, r_max)):
        LRU(4, 6, r_min=r_min, r_max=r_max, dtype=F64)


def test_lru_ring_of_zero_width_gives_poles_of_that_modulus() -> None:
    layer = LRU(4, 50, r_min=0.7, r_max=0.7, dtype=F64)
    modulus = np.exp(-np.exp(layer.nu_log.detach().numpy()))  # |lambda| = exp(-exp(nu_log))
    np.testing.assert_allclose(modulus, 0.7, rtol=1e-12)
    np.testing.assert_allclose(layer.poles().detach().abs().numpy(), 0.7, rtol=1e-12)


@pytest.mark.parametrize("kind", ["lru", "s5"])
def test_ssm_system_simulated_in_numpy_equals_forward(kind: str) -> None:
    layer = make_layer(kind)
    system = layer.ssm_system()
    assert isinstance(layer, ReducibleSSM) and layer.real_output and layer.state_dim == 6
    assert {t.dtype for t in (system.poles, system.B, system.C, system.D)} == {C128}
    assert system.poles.requires_grad
    u = inputs(2, 40, 3)
    expected = simulate(*system_arrays(system), u.numpy())
    np.testing.assert_allclose(layer(u).detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_ssm_system_is_complex64_for_float32_layers() -> None:
    system = LRU(3, 4).ssm_system()
    assert {t.dtype for t in (system.poles, system.B, system.C, system.D)} == {torch.complex64}


def test_s5_zero_order_hold_equals_scipy_expm() -> None:
    layer = make_layer("s5", state_dim=5)
    layer.log_step.data = torch.log(torch.tensor([0.01, 0.05, 0.1, 0.3, 1.0], dtype=F64))
    Lambda = -np.exp(layer.Lambda_re_log.detach().numpy()) + 1j * layer.Lambda_im.detach().numpy()
    step = np.exp(layer.log_step.detach().numpy())
    B = layer.B_re.detach().numpy() + 1j * layer.B_im.detach().numpy()
    n, m = B.shape
    block = np.zeros(
        (n + m, n + m), dtype=complex
    )  # expm([[A S, S B], [0, 0]]) = [[Abar, Bbar], [0, I]]
    block[:n, :n] = np.diag(Lambda * step)
    block[:n, n:] = step[:, None] * B
    exponential = scipy.linalg.expm(block)
    poles, Bbar, _, _ = system_arrays(layer.ssm_system())
    np.testing.assert_allclose(poles, np.diag(exponential[:n, :n]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Bbar, exponential[:n, n:], rtol=1e-10, atol=1e-13)


# --- with_system ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lru", "s5"])
def test_with_own_system_reproduces_forward(kind: str) -> None:
    layer = make_layer(kind)
    rebuilt = layer.with_system(layer.ssm_system())
    u = inputs(2, 50, 3)
    torch.testing.assert_close(rebuilt(u), layer(u), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("kind", ["lru", "s5"])
def test_with_system_represents_poles_of_any_phase_exactly(kind: str) -> None:
    system = designed_system()
    layer = make_layer(kind).with_system(system)
    assert layer.state_dim == system.n
    own = layer.ssm_system()
    for got, want in zip(system_arrays(own), system_arrays(system), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    u = inputs(2, 40, 3)
    expected = simulate(*system_arrays(system), u.numpy())
    np.testing.assert_allclose(layer(u).detach().numpy(), expected, rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(layer.with_system(own)(u), layer(u), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("kind", ["lru", "s5"])
def test_with_system_keeps_dtype_flags_and_leaves_self_and_rng_alone(kind: str) -> None:
    torch.manual_seed(0)
    layer = {"lru": LRU, "s5": S5}[kind](3, 6)
    layer.D.requires_grad_(False)
    layer.eval()
    before = {name: t.clone() for name, t in layer.state_dict().items()}
    rng = torch.random.get_rng_state()
    new = layer.with_system(designed_system())
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(before[name], t) for name, t in layer.state_dict().items())
    assert new is not layer and type(new) is type(layer) and not new.training
    assert new.hyper_parameters() == layer.hyper_parameters()
    assert {t.dtype for t in new.parameters()} == {torch.float32}
    flags = {name: t.requires_grad for name, t in new.named_parameters()}
    assert flags == {name: t.requires_grad for name, t in layer.named_parameters()}
    assert not flags["D"] and flags["B_re"]


def test_s5_with_system_uses_the_mean_step() -> None:
    layer = make_layer("s5")
    new = layer.with_system(designed_system())
    mean = layer.log_step.detach().mean()
    torch.testing.assert_close(new.log_step.detach(), mean.expand(new.state_dim))


@pytest.mark.parametrize("kind", ["lru", "s5"])
def test_with_balanced_truncation_stays_within_the_error_bound(kind: str) -> None:
    layer = make_layer(kind, d_model=3, state_dim=24, seed=4)
    with torch.no_grad():  # spread the modes' energies so that the HSVs decay
        layer.B_re.mul_(0.7 ** torch.arange(24.0)[:, None])
        layer.B_im.mul_(0.7 ** torch.arange(24.0)[:, None])
    system = detached(layer.ssm_system())
    hsv = cc.hankel_singular_values(system)
    tail = torch.flip(torch.cumsum(torch.flip(hsv, [0]), 0), [0])  # tail[r] = sum_{i >= r} hsv_i
    rank = int(torch.nonzero(2 * tail < 1e-2 * hsv[0])[0])
    assert 0 < rank < system.n
    reduction = cc.balanced_truncation(system, rank=rank)
    reduced = layer.with_system(cc.to_diagonal(reduction.system, real_output=False))
    assert reduced.state_dim == rank
    u = inputs(3, 200, 3)
    error = torch.linalg.vector_norm((reduced(u) - layer(u)).detach(), dim=(1, 2))
    bound = reduction.error_bound * torch.linalg.vector_norm(u, dim=(1, 2))
    assert bool((error <= bound * (1 + 1e-8)).all())
    relative = error / torch.linalg.vector_norm(layer(u).detach(), dim=(1, 2))
    assert float(relative.max()) < 1e-2


@pytest.mark.parametrize("kind", ["lru", "s5"])
def test_with_system_rejects_unstable_zero_batched_and_misshaped_systems(kind: str) -> None:
    layer = make_layer(kind)
    good = designed_system()
    unstable = cc.DiagonalStateSpace(good.poles * 1.1, good.B, good.C, good.D)
    with pytest.raises(ValueError, match="unstable after reduction"):
        layer.with_system(unstable)
    zero = cc.DiagonalStateSpace(
        torch.cat([good.poles[:-1], good.poles[:1] * 0]), good.B, good.C, good.D
    )
    with pytest.raises(ValueError, match="pole at 0"):
        layer.with_system(zero)
    batched = cc.DiagonalStateSpace(good.poles[None], good.B[None], good.C[None], good.D[None])
    with pytest.raises(ValueError, match="unbatched"):
        layer.with_system(batched)
    narrow = cc.DiagonalStateSpace(good.poles, good.B[:, :2], good.C, None)
    with pytest.raises(ValueError, match="3 inputs to 3 outputs"):
        layer.with_system(narrow)


@pytest.mark.parametrize("kind", ["lru", "s5"])
def test_with_system_accepts_real_systems(kind: str) -> None:
    g = torch.Generator().manual_seed(5)
    poles = torch.tensor([0.9, -0.5, 0.2], dtype=F64)
    B, C = torch.randn(3, 3, generator=g, dtype=F64), torch.randn(3, 3, generator=g, dtype=F64)
    layer = make_layer(kind).with_system(
        cc.DiagonalStateSpace(poles, B, C, torch.eye(3, dtype=F64))
    )
    u = inputs(2, 20, 3)
    expected = simulate(poles, B, C, np.eye(3), u.numpy())
    np.testing.assert_allclose(layer(u).detach().numpy(), expected, rtol=1e-10, atol=1e-11)


def test_with_system_without_feedthrough_sets_D_to_zero() -> None:
    good = designed_system()
    layer = make_layer("lru").with_system(cc.DiagonalStateSpace(good.poles, good.B, good.C))
    assert torch.equal(layer.D.detach(), torch.zeros(3, dtype=F64))


# --- SequenceModel ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["lru", "s5"])
@pytest.mark.parametrize(
    ("pooling", "shape"), [("mean", (4, 5)), ("last", (4, 5)), ("none", (4, 12, 5))]
)
def test_sequence_model_output_shapes(layer: str, pooling: str, shape: tuple[int, ...]) -> None:
    model = SequenceModel(3, 5, 8, [6, 4], 2, layer=layer, pooling=pooling)
    assert model(torch.randn(4, 12, 3)).shape == shape
    assert [(name, type(ssm).__name__) for name, ssm in model.ssm_layers()] == [
        ("blocks.0.ssm", type(model.blocks[0].ssm).__name__),
        ("blocks.1.ssm", type(model.blocks[1].ssm).__name__),
    ]
    assert [ssm.state_dim for _, ssm in model.ssm_layers()] == [6, 4]


@pytest.mark.parametrize("layer", ["lru", "s5"])
@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_config_round_trip_rebuilds_the_architecture(layer: str, norm: str) -> None:
    options = {"r_min": 0.5} if layer == "lru" else {"step_max": 0.2}
    model = SequenceModel(3, 5, 8, 6, 2, layer=layer, norm=norm, dropout=0.1, layer_options=options)
    rebuilt = SequenceModel.from_config(model.config)
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    u = torch.randn(4, 12, 3)
    torch.testing.assert_close(rebuilt.eval()(u), model.eval()(u))


def test_with_ssm_layers_returns_a_new_model_and_leaves_self_alone() -> None:
    torch.manual_seed(0)
    model = SequenceModel(3, 5, 8, 6, 2)
    name, layer = model.ssm_layers()[1]
    reduction = cc.balanced_truncation(detached(layer.ssm_system()), rank=3)
    smaller = layer.with_system(cc.to_diagonal(reduction.system))
    reduced = model.with_ssm_layers({name: smaller})
    assert reduced.config["state_dims"] == [6, 3] and model.config["state_dims"] == [6, 6]
    assert reduced.blocks[1].ssm is smaller and model.blocks[1].ssm is layer
    assert reduced.encoder.weight is not model.encoder.weight
    torch.testing.assert_close(reduced.encoder.weight, model.encoder.weight)
    rebuilt = SequenceModel.from_config(reduced.config)
    rebuilt.load_state_dict(reduced.state_dict())
    with pytest.raises(ValueError, match="not SSM layers"):
        model.with_ssm_layers({"blocks.0": smaller})


def test_sequence_model_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="`layer`"):
        SequenceModel(3, 5, 8, 6, 2, layer="mamba")
    with pytest.raises(ValueError, match="`pooling`"):
        SequenceModel(3, 5, 8, 6, 2, pooling="max")
    with pytest.raises(ValueError, match="`norm`"):
        SequenceModel(3, 5, 8, 6, 2, norm="group")
    with pytest.raises(ValueError, match="`state_dim`"):
        SequenceModel(3, 5, 8, [6, 4, 2], 2)


@pytest.mark.parametrize("layer", ["lru", "s5"])
@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_models_train_without_nans(layer: str, norm: str) -> None:
    torch.manual_seed(0)
    model = SequenceModel(3, 4, 8, 8, 2, layer=layer, norm=norm, dropout=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    u, labels = torch.randn(8, 20, 3), torch.randint(0, 4, (8,))
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(u), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(value) for value in losses)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert losses[-1] < losses[0]

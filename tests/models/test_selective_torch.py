"""Tests of the selective (Mamba-style) PyTorch layer, block and model, and the selective
copying task.

The oracle is a plain NumPy loop over the recurrence, computed from the layer's parameters:

    delta_k = softplus(dt_proj(x_proj(u_k)[:dt_rank])),  B_k, C_k = the next N, last N outputs
    h_k = exp(delta_k A) * h_(k-1) + delta_k B_k u_k,     y_k = sum_n C_k h_k + D u_k
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_models.tasks import TASKS, load_task
from reference_models.torch_models.selective import (
    SelectiveBlock,
    SelectiveSequenceModel,
    SelectiveSSM,
)

F64 = torch.float64


def make_layer(d_model: int = 5, state_dim: int = 6, seed: int = 0) -> SelectiveSSM:
    torch.manual_seed(seed)
    return SelectiveSSM(d_model, state_dim, dt_rank=2, dtype=F64)


def inputs(batch: int, length: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(
        batch, length, width, generator=torch.Generator().manual_seed(seed), dtype=F64
    )


def numpy_parameters(layer: SelectiveSSM) -> dict[str, np.ndarray]:
    return {name: t.detach().numpy() for name, t in layer.named_parameters()}


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


def simulate_system(abar, bbar, C, D, u) -> np.ndarray:
    """h_k = abar_k h_(k-1) + bbar_k u_k, y_k = sum_n C_k h_k + D u_k, vectorised over batch."""
    abar, bbar, C, D = (np.asarray(t.detach()) for t in (abar, bbar, C, D))
    h = np.zeros(abar.shape[:1] + abar.shape[2:])
    outputs = []
    for k in range(u.shape[1]):
        h = abar[:, k] * h + bbar[:, k] * u[:, k, :, None]
        outputs.append(np.einsum("bhn,bn->bh", h, C[:, k]) + D * u[:, k])
    return np.stack(outputs, axis=1)


# --- SelectiveSSM -------------------------------------------------------------------------


def test_init_follows_s4d_real_and_the_step_range() -> None:
    torch.manual_seed(0)
    layer = SelectiveSSM(300, 8, dt_min=1e-3, dt_max=1e-1)
    expected = torch.log(torch.arange(1, 9, dtype=torch.float32)).expand(300, 8)
    torch.testing.assert_close(layer.A_log.detach(), expected)
    step = torch.nn.functional.softplus(layer.dt_proj.bias.detach().double())
    assert 1e-3 * (1 - 1e-5) <= float(step.min()) and float(step.max()) <= 1e-1 * (1 + 1e-5)
    assert float(step.log().mean()) == pytest.approx(0.5 * np.log(1e-4), abs=0.3)
    assert layer.dt_rank == 19 and layer.x_proj.weight.shape == (19 + 16, 300)
    assert layer.state_dim == 8 and layer.dt_proj.weight.shape == (300, 19)


def test_forward_equals_numpy_loop_from_parameters() -> None:
    layer = make_layer()
    u = inputs(2, 23, 5)
    expected = simulate_from_parameters(numpy_parameters(layer), u.numpy())
    np.testing.assert_allclose(layer(u).detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_time_varying_system_simulated_equals_forward() -> None:
    layer = make_layer()
    u = inputs(3, 17, 5)
    abar, bbar, C = layer.time_varying_system(u)
    assert abar.shape == bbar.shape == (3, 17, 5, 6) and C.shape == (3, 17, 6)
    assert abar.requires_grad and 0 < float(abar.detach().min()) and float(abar.detach().max()) < 1
    expected = simulate_system(abar, bbar, C, layer.D, u.numpy())
    np.testing.assert_allclose(layer(u).detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_with_all_states_in_order_reproduces_the_outputs_exactly() -> None:
    layer = make_layer()
    u = inputs(2, 19, 5)
    copy = layer.with_states(range(6))
    assert copy is not layer and copy.state_dim == 6
    torch.testing.assert_close(copy(u), layer(u), rtol=0, atol=0)


@pytest.mark.parametrize("keep", [[4, 1], [0, 2, 5], [3]])
def test_with_states_equals_the_full_recurrence_restricted_to_those_states(keep) -> None:
    layer = make_layer()
    before = {name: t.detach().clone() for name, t in layer.named_parameters()}
    u = inputs(2, 21, 5, seed=1)
    reduced = layer.with_states(keep)
    assert reduced.state_dim == len(keep)
    expected = simulate_from_parameters(numpy_parameters(layer), u.numpy(), states=sorted(keep))
    np.testing.assert_allclose(reduced(u).detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    for name, t in layer.named_parameters():
        torch.testing.assert_close(t, before[name], rtol=0, atol=0)


def test_with_states_keeps_dtype_device_mode_and_requires_grad() -> None:
    layer = make_layer().eval()
    layer.A_log.requires_grad_(False)
    reduced = layer.with_states([2, 0])
    assert not reduced.training and reduced.hyper_parameters() == layer.hyper_parameters()
    assert {p.dtype for p in reduced.parameters()} == {F64}
    assert not reduced.A_log.requires_grad and reduced.x_proj.weight.requires_grad
    assert reduced.x_proj.weight.shape == (2 + 2 * 2, 5)


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
        SelectiveSSM(4, 4, dt_min=0.1, dt_max=0.01)


# --- block and model ----------------------------------------------------------------------


def test_block_shape_and_causality() -> None:
    torch.manual_seed(0)
    block = SelectiveBlock(6, 4, dtype=F64)
    assert block.ssm.d_model == 12 and block.ssm.state_dim == 4
    u = inputs(2, 15, 6)
    changed = u.clone()
    changed[:, 9:] += 1.0
    y, y_changed = block(u), block(changed)
    assert y.shape == (2, 15, 6)
    torch.testing.assert_close(y[:, :9], y_changed[:, :9], rtol=0, atol=0)
    assert not torch.allclose(y[:, 9:], y_changed[:, 9:])


@pytest.mark.parametrize(
    ("pooling", "shape"), [("mean", (2, 3)), ("last", (2, 3)), ("none", (2, 11, 3))]
)
def test_model_shapes(pooling: str, shape: tuple[int, ...]) -> None:
    model = SelectiveSequenceModel(4, 3, 8, [5, 7], 2, pooling=pooling)
    assert model(torch.randn(2, 11, 4)).shape == shape
    assert [(name, layer.state_dim) for name, layer in model.selective_layers()] == [
        ("blocks.0.ssm", 5),
        ("blocks.1.ssm", 7),
    ]


def test_model_config_round_trip_follows_reduced_layers() -> None:
    model = SelectiveSequenceModel(4, 3, 8, 6, 2, pooling="last", expand=3)
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
    rebuilt = SelectiveSequenceModel.from_config(reduced.config)
    assert rebuilt.config == reduced.config
    assert {n: p.shape for n, p in rebuilt.named_parameters()} == {
        n: p.shape for n, p in reduced.named_parameters()
    }
    rebuilt.load_state_dict(reduced.state_dict())
    u = torch.randn(2, 9, 4)
    torch.testing.assert_close(rebuilt(u), reduced(u))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"pooling": "max"}, "`pooling` 'max' is unknown"),
        ({"state_dim": [4]}, "`state_dim` must be an int or hold n_layers=2 ints"),
    ],
)
def test_model_rejects_bad_arguments(arguments, message) -> None:
    options = {"d_input": 2, "d_output": 2, "d_model": 4, "state_dim": 4, "n_layers": 2}
    with pytest.raises(ValueError, match=message):
        SelectiveSequenceModel(**{**options, **arguments})


def test_with_selective_layers_rejects_unknown_names() -> None:
    model = SelectiveSequenceModel(2, 2, 4, 4, 1)
    with pytest.raises(ValueError, match=r"`layers` names \['blocks.3.ssm'\]"):
        model.with_selective_layers({"blocks.3.ssm": SelectiveSSM(8, 2)})


def test_training_steps_on_selective_copying_are_finite_and_lower_the_loss() -> None:
    data = load_task("selective_copying", length=24, num_samples=64, num_memorize=2)
    torch.manual_seed(0)
    model = SelectiveSequenceModel(data.d_input, data.d_output, 16, 8, 2, pooling="none")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(data.x_train[:16]), torch.from_numpy(data.y_train[:16])
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


# --- selective copying task ---------------------------------------------------------------


def decode(x: np.ndarray, num_tokens: int) -> list[list[int]]:
    """The data tokens of each one-hot input sequence, in order: argmax below the blank."""
    ids = x.argmax(axis=-1)
    return [[int(i) for i in row if i < num_tokens] for row in ids]


def test_selective_copying_is_registered_and_deterministic() -> None:
    assert "selective_copying" in TASKS
    a = load_task("selective_copying", seed=3, num_samples=100)
    b = load_task("selective_copying", seed=3, num_samples=100)
    c = load_task("selective_copying", seed=4, num_samples=100)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)


def test_selective_copying_shapes_and_splits() -> None:
    data = load_task("selective_copying", length=32, num_tokens=5, num_memorize=3, num_samples=100)
    assert (data.name, data.kind, data.num_classes) == ("selective_copying", "regression", None)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (72, 8, 20)
    assert (data.seq_len, data.d_input, data.d_output) == (32, 7, 5)
    assert data.x_train.dtype == data.y_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_train.sum(axis=-1), 1.0)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_selective_copying_answer_is_decodable_from_the_input(split: str) -> None:
    num_tokens, num_memorize, length = 6, 4, 40
    data = load_task(
        "selective_copying",
        length=length,
        num_tokens=num_tokens,
        num_memorize=num_memorize,
        num_samples=200,
    )
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    tokens = np.array(decode(x, num_tokens))
    assert tokens.shape == (len(x), num_memorize)
    np.testing.assert_array_equal(x[:, -num_memorize:].argmax(-1), num_tokens + 1)
    np.testing.assert_array_equal(y[:, -num_memorize:].argmax(-1), tokens)
    np.testing.assert_array_equal(y[:, -num_memorize:].sum(-1), 1.0)
    np.testing.assert_array_equal(y[:, :-num_memorize], 0.0)
    first_positions = x[..., :num_tokens].sum(-1).argmax(-1)
    assert len(np.unique(first_positions)) > 5  # the data really moves around


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length": 7, "num_memorize": 4}, "`length` 7 must be at least 2 \\* num_memorize = 8"),
        ({"num_tokens": 0}, "`num_tokens` 0"),
        ({"num_samples": 2.5}, "`num_samples` 2.5"),
        ({"test_fraction": 1.0}, "`test_fraction` 1.0"),
    ],
)
def test_selective_copying_bad_options_are_named(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        load_task("selective_copying", **options)

"""The baselines of ``compressm compare``: the HNN penalty and its gradient, the distillation
loss, post-training truncation, and every arm end to end on a tiny configuration."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.linalg import solve_discrete_lyapunov
from scipy.special import log_softmax, softmax

import compressm_core as cc
import compressm_torch as ct
from reference_models.cli import main
from reference_models.tasks import load_task
from reference_models.torch_models import LRU, SequenceModel
from reference_models.train.checkpoint_torch import load_model
from reference_models.train.comparison import ARMS, ArmOptions, resolve_arms
from reference_models.train.config import TrainConfig
from reference_models.train.run import compare
from reference_models.train.torch_objectives import (
    distillation_loss,
    hankel_nuclear_norm,
    training_objective,
)
from reference_models.train.torch_trainer import evaluate, loss_and_metric
from reference_models.train.torch_truncation import truncate, truncated_run

TINY = TrainConfig(task="digits", steps=30, batch_size=32, d_model=8, state_dim=12, n_layers=1, tau=0.2,
                   reduce_every=5, reduce_from=5, reduce_until=0.5, rollback_tolerance=0.5, eval_every=10,
                   warmup_steps=3, max_train=200)


def _lru(state_dim, d_model=3, seed=0):
    torch.manual_seed(seed)
    return LRU(d_model, state_dim, dtype=torch.float64)


def _scipy_hsv_sum(nu_log, theta_log, gamma_log, B_re, B_im, C_re, C_im):
    """Sum of the HSVs of the LRU's (lambda, gamma B, C) from SciPy's Lyapunov solver (A cast to
    complex, see METHOD.md; not the core's closed form), as singular values of Lq^H Lp."""
    A = np.diag(np.exp(-np.exp(nu_log) + 1j * np.exp(theta_log)))
    B = np.exp(gamma_log)[:, None] * (B_re + 1j * B_im)
    C = C_re + 1j * C_im
    P = solve_discrete_lyapunov(A, B @ B.conj().T)
    Q = solve_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    assert np.abs(A @ P @ A.conj().T - P + B @ B.conj().T).max() < 1e-9 * np.abs(P).max()
    Lp, Lq = np.linalg.cholesky((P + P.conj().T) / 2), np.linalg.cholesky((Q + Q.conj().T) / 2)
    return np.linalg.svd(Lq.conj().T @ Lp, compute_uv=False).sum()


def test_hnn_penalty_and_gradient_match_scipy_finite_differences():
    layer = _lru(5)
    names = ["nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im"]
    values = {name: getattr(layer, name).detach().numpy().copy() for name in names}
    penalty = hankel_nuclear_norm(layer)
    penalty.backward()
    assert penalty.item() == pytest.approx(_scipy_hsv_sum(**values), rel=1e-9)
    step = 1e-4  # central differences: O(step^2) error, above the solvers' round-off
    for name in names:
        flat = values[name].reshape(-1)
        for index in range(0, flat.size, max(1, flat.size // 4)):  # a few entries of each
            shifted = {k: v.copy() for k, v in values.items()}
            shifted[name].reshape(-1)[index] += step
            up = _scipy_hsv_sum(**shifted)
            shifted[name].reshape(-1)[index] -= 2 * step
            down = _scipy_hsv_sum(**shifted)
            expected = (up - down) / (2 * step)
            actual = getattr(layer, name).grad.reshape(-1)[index].item()
            assert actual == pytest.approx(expected, rel=1e-5, abs=1e-6), (name, index)


def test_hnn_gradient_of_a_one_state_layer_has_the_closed_form():
    """n = 1: sigma = gamma |b| |c| / (1 - |lambda|^2), |lambda|^2 = exp(-2 exp(nu))."""
    layer = _lru(1, d_model=4, seed=3)
    hankel_nuclear_norm(layer).backward()
    nu, gamma = layer.nu_log.item(), math.exp(layer.gamma_log.item())
    b = torch.complex(layer.B_re, layer.B_im).detach().abs().pow(2).sum().sqrt().item()
    c = torch.complex(layer.C_re, layer.C_im).detach().abs().pow(2).sum().sqrt().item()
    decay = math.exp(-2 * math.exp(nu))
    sigma = gamma * b * c / (1 - decay)
    assert layer.nu_log.grad.item() == pytest.approx(-sigma * 2 * math.exp(nu) * decay / (1 - decay), rel=1e-10)
    assert layer.gamma_log.grad.item() == pytest.approx(sigma, rel=1e-10)
    assert layer.theta_log.grad.item() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(layer.B_re.grad.numpy(), sigma * layer.B_re.detach().numpy() / b**2, rtol=1e-10)
    np.testing.assert_allclose(layer.C_im.grad.numpy(), sigma * layer.C_im.detach().numpy() / c**2, rtol=1e-10)


def test_hnn_penalty_sums_the_layers_and_the_objective_adds_it():
    torch.manual_seed(0)
    model = SequenceModel(d_input=1, d_output=4, d_model=6, state_dim=[5, 7, 5], n_layers=3)
    per_layer = sum(cc.hankel_singular_values(_double(layer.ssm_system())).sum().item() for _, layer in ct.reducible_layers(model))
    assert hankel_nuclear_norm(model).item() == pytest.approx(per_layer, rel=1e-10)
    x, y = torch.randn(3, 10, 1), torch.tensor([0, 1, 3])
    task = lambda m, xb, yb: loss_and_metric(m, xb, yb, "classification")  # noqa: E731
    loss, _ = training_objective(TINY.replace(hnn_weight=0.25), "classification", task)(model, x, y)
    plain, _ = task(model, x, y)
    assert loss.item() == pytest.approx(plain.item() + 0.25 * per_layer, rel=1e-6)


def _double(system):
    return cc.DiagonalStateSpace(*(t.to(torch.complex128) for t in (system.poles, system.B, system.C)))


def test_distillation_loss_matches_the_formula():
    rng = np.random.default_rng(0)
    student, teacher = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    weight, T = 0.3, 2.5
    hard = -log_softmax(student, axis=1)[np.arange(5), labels].mean()
    p_teacher = softmax(teacher / T, axis=1)
    kl = (p_teacher * (np.log(p_teacher) - log_softmax(student / T, axis=1))).sum(axis=1).mean()
    expected = (1 - weight) * hard + weight * T**2 * kl
    actual = distillation_loss(torch.from_numpy(student), torch.from_numpy(teacher), torch.from_numpy(labels),
                               "classification", weight=weight, temperature=T)
    assert actual.item() == pytest.approx(expected, rel=1e-12)
    target = rng.standard_normal((5, 4))
    regression = distillation_loss(torch.from_numpy(student), torch.from_numpy(teacher), torch.from_numpy(target),
                                   "regression", weight=weight, temperature=T)
    expected = (1 - weight) * ((student - target) ** 2).mean() + weight * ((student - teacher) ** 2).mean()
    assert regression.item() == pytest.approx(expected, rel=1e-12)


def test_distillation_objective_queries_the_teacher_checkpoint(tmp_path):
    from reference_models.train.checkpoint_torch import save_model

    torch.manual_seed(1)
    teacher = SequenceModel(d_input=1, d_output=4, d_model=6, state_dim=8, n_layers=1).eval()
    save_model(teacher, tmp_path / "teacher.safetensors")
    student = SequenceModel(d_input=1, d_output=4, d_model=6, state_dim=3, n_layers=1)
    x, y = torch.randn(3, 10, 1), torch.tensor([0, 1, 3])
    config = TINY.replace(distill_weight=0.4, distill_temperature=3.0, teacher=str(tmp_path / "teacher.safetensors"))
    loss, metric = training_objective(config, "classification", loss_and_metric)(student, x, y)
    output = student(x)
    expected = distillation_loss(output, teacher(x), y, "classification", weight=0.4, temperature=3.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert metric == float((output.argmax(-1) == y).float().mean())


def _markov(A, B, C, steps=12):
    """C A^k B for k < steps, complex numpy."""
    out, AkB = [], B
    for _ in range(steps):
        out.append(C @ AkB)
        AkB = A @ AkB
    return np.stack(out)


def test_truncation_matches_the_core_balanced_truncation_of_each_layer():
    torch.manual_seed(2)
    model = SequenceModel(d_input=1, d_output=4, d_model=5, state_dim=[9, 7], n_layers=2).double()
    config = TINY.to_dict()
    reduced = truncate(model, config, dims=[4, 7]).model  # the second layer stays
    (_, old0), (_, old1) = ct.reducible_layers(model)
    (_, new0), (_, new1) = ct.reducible_layers(reduced)
    assert (new0.state_dim, new1.state_dim) == (4, 7)
    system = old0.ssm_system()
    oracle = cc.balanced_truncation(cc.DiagonalStateSpace(system.poles, system.B, system.C), rank=4).system
    mine = new0.ssm_system()
    expected = _markov(*(t.detach().numpy() for t in (oracle.A, oracle.B, oracle.C)))
    actual = _markov(np.diag(mine.poles.detach().numpy()), mine.B.detach().numpy(), mine.C.detach().numpy())
    np.testing.assert_allclose(actual, expected, rtol=1e-8, atol=1e-10)
    for a, b in zip(old1.parameters(), new1.parameters(), strict=True):
        assert torch.equal(a, b)
    by_tau = truncate(model, {**config, "energy": "sum"}, tau=0.3).model
    hsvs = ct.hankel_singular_values(model)
    ranks = [int(cc.rank_for_energy(h, 0.3)) for h in hsvs.values()]
    assert [layer.state_dim for _, layer in ct.reducible_layers(by_tau)] == ranks


def test_truncation_errors_name_the_argument():
    model = SequenceModel(d_input=1, d_output=4, d_model=5, state_dim=6, n_layers=2)
    with pytest.raises(ValueError, match="exactly one of `tau` or `dims`"):
        truncate(model, TINY.to_dict())
    with pytest.raises(ValueError, match="one dim per SSM layer"):
        truncate(model, TINY.to_dict(), dims=[3])
    with pytest.raises(ValueError, match="gramians='complex'"):
        truncate(model, {**TINY.to_dict(), "gramians": "real_output"}, dims=[3, 3])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hnn_weight": -0.1}, "`hnn_weight` must be a finite number >= 0"),
        ({"distill_weight": 1.5, "teacher": "t"}, "`distill_weight` must be a finite number in [0, 1]"),
        ({"distill_temperature": 0.0}, "`distill_temperature` must be a finite number > 0"),
        ({"distill_weight": 0.5}, "needs both `distill_weight` > 0 and a `teacher`"),
        ({"teacher": "t.safetensors"}, "needs both `distill_weight` > 0 and a `teacher`"),
        ({"backend": "jax", "hnn_weight": 0.1}, "need backend 'torch'"),
    ],
)
def test_baseline_options_are_validated(changes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        TINY.replace(**changes)


def test_arms_bring_the_arms_they_need_and_unknown_arms_are_refused():
    assert resolve_arms(["small"]) == ("full", "compressm", "small")
    assert resolve_arms(["truncate_dims", "hnn"]) == ("full", "compressm", "hnn", "truncate_dims")
    with pytest.raises(ValueError, match="unknown names \\['hnm'\\]"):
        resolve_arms(["hnm"])
    with pytest.raises(ValueError, match="`hnn_weight` must be a finite number > 0"):
        ArmOptions(hnn_weight=0.0)
    with pytest.raises(ValueError, match="need mode 'tolerance'"):
        compare(TINY.replace(mode="fixed", tau=None), None, arms=["truncate"])
    with pytest.raises(ValueError, match="the arms \\['distill', 'hnn'\\] need backend 'torch'"):
        compare(TINY.replace(backend="jax"), None, arms=["hnn", "distill", "truncate"])


@pytest.fixture(scope="module")
def every_arm(tmp_path_factory):
    output = tmp_path_factory.mktemp("arms")
    comparison = compare(TINY, output, arms=ARMS, options=ArmOptions(hnn_weight=0.05), progress=False)
    return output, comparison.table


def _metrics(output, arm):
    return json.loads((output / f"{arm}_seed0" / "metrics.json").read_text())


def test_every_arm_runs_with_the_right_dims(every_arm):
    output, table = every_arm
    full, compressed = _metrics(output, "full"), _metrics(output, "compressm")
    dims = compressed["final_state_dims"]
    assert full["final_state_dims"] == [12] and dims[0] < 12
    for arm in ("small", "distill", "truncate_dims"):
        assert _metrics(output, arm)["final_state_dims"] == dims, arm
    assert _metrics(output, "distill")["config"]["teacher"] == str(output / "full_seed0" / "model.safetensors")
    for arm in ("smallest", "random"):
        ablation = _metrics(output, arm)
        assert ablation["config"]["selection"] == arm and ablation["reductions"]
    hnn = _metrics(output, "hnn")
    assert hnn["config"]["hnn_weight"] == 0.05 and hnn["final_state_dims"] == [12]
    full_model = load_model(output / "full_seed0" / "model.safetensors")
    expected = truncate(full_model, full["config"], tau=TINY.tau, horizon=full["horizon"]).model  # the run's horizon
    truncated = _metrics(output, "truncate")
    assert truncated["final_state_dims"] == [layer.state_dim for _, layer in ct.reducible_layers(expected)]
    data = load_task("digits", seed=0, max_train=200)
    assert truncated["test_accuracy"] == pytest.approx(evaluate(expected, data.x_test, data.y_test, data.kind))
    assert truncated["test_accuracy_before_truncation"] == full["test_accuracy"]
    assert truncated["wall_clock_s"] == pytest.approx(full["wall_clock_s"] + truncated["truncation_s"])
    for label in ("| full |", "| hnn, untruncated |", "| compressm |", "| small from scratch |", "| distillation |",
                  "| full + truncation |", "| hnn + truncation |", "| compressm, keep smallest |"):
        assert label in table
    assert (output / "comparison.md").read_text().strip() == table
    for name in ("sweep.png", "comparison_hsv_spectra.png", "comparison_val_metric.png"):
        assert (output / name).stat().st_size > 0


def test_hnn_penalty_shrinks_the_hsv_sum(every_arm):
    output, _ = every_arm
    final = {arm: sum(sum(h) for h in _metrics(output, arm)["hsv_history"][-1]["hsv"].values()) for arm in ("full", "hnn")}
    assert final["hnn"] < final["full"]


def test_truncated_run_on_its_own(every_arm):
    output, _ = every_arm
    full = _metrics(output, "full")
    data = load_task("digits", seed=0, max_train=200)
    infinite = {**full, "horizon": None}  # the infinite-horizon truncation, which has the H-inf bound
    model, metrics = truncated_run(str(output / "full_seed0" / "model.safetensors"), infinite, data, dims=[3])
    assert metrics["final_state_dims"] == [3] and metrics["initial_state_dims"] == [12]
    assert metrics["test_accuracy"] == evaluate(model, data.x_test, data.y_test, data.kind)
    assert metrics["error_bounds"]["blocks.0.ssm"] == pytest.approx(2 * sum(sorted(metrics["hsv"]["blocks.0.ssm"])[:-3]))


def test_compare_command_with_a_subset_of_arms_and_several_taus(tmp_path, capsys):
    argv = ["compare", "--task", "digits", "--steps", "20", "--batch-size", "32", "--d-model", "8", "--state-dim", "10",
            "--layers", "1", "--max-train", "200", "--reduce-every", "5", "--reduce-until", "0.5", "--eval-every", "10",
            "--rollback-tolerance", "0.5", "--seeds", "0", "1", "--arms", "truncate", "--taus", "0.1", "0.3",
            "--output", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "comparison.json").read_text())["rows"]
    assert [(row["arm"], row["tau"]) for row in summary] == [("full", None), ("truncate", 0.1), ("truncate", 0.3)]
    assert all(len(row["values"]) == 2 for row in summary)
    assert "| full + truncation, tau 0.3 |" in printed
    for seed in (0, 1):
        model = load_model(tmp_path / f"full_seed{seed}" / "model.safetensors")
        metrics = json.loads((tmp_path / f"truncate_tau0.3_seed{seed}" / "metrics.json").read_text())
        hsv = ct.hankel_singular_values(model, horizon=metrics["truncation"]["horizon"])["blocks.0.ssm"]  # the run's
        assert metrics["truncation"]["horizon"] == 64  # digits: sequences of 64 steps
        assert metrics["final_state_dims"] == [int(cc.rank_for_energy(hsv, 0.3))]

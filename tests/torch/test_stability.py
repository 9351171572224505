"""Rank-stability certificates: against hand-derived answers and a brute force, the core's
Weyl bound, the snapshot log, and a training run that writes the report and its plot."""

from __future__ import annotations

import doctest
import json
from dataclasses import dataclass

import numpy as np
import pytest

import compressm_core as cc
from compressm_core.schedule import ReductionSchedule
from reference_models.train import stability
from reference_models.train.config import TrainConfig
from reference_models.train.stability import StabilityLog, certify_ranking, factor_product


def test_docstring_examples():
    assert doctest.testmod(stability).failed == 0


def random_unitary(rng: np.random.Generator, n: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
    return q


# --- certificates on constructed snapshot sequences --------------------------------------------


@pytest.mark.parametrize("norm", ["frobenius", "spectral"])
def test_certified_step_of_a_constructed_sequence(norm):
    """M_k = U diag(a_k, 1, 0.5) V^H with a_k = 3 - 2^(1-k) rising: the largest change after
    step k is a_last - a_k (any unitarily invariant norm of a one-entry diagonal), the gap
    a_k - 1; step k is certified exactly when a_k - 1 > 2 (a_last - a_k)."""
    rng = np.random.default_rng(0)
    U, V = random_unitary(rng, 3), random_unitary(rng, 3)
    a = 3 - 2.0 ** (1 - np.arange(6))
    products = np.stack([U @ np.diag([ak, 1.0, 0.5]) @ V.conj().T for ak in a])
    steps = 10 * np.arange(6)
    cert = certify_ranking(steps, products, 1, norm=norm)
    expected = [a[k] - 1 > 2 * (a[-1] - a[k]) for k in range(5)] + [False]
    assert cert.certified.tolist() == expected == [False, False, True, True, True, False]
    assert cert.certified_step == 20
    np.testing.assert_allclose(cert.bound[:-1], a[-1] - a[:-1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cert.gap, a - 1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        cert.hsv, np.column_stack([a, np.ones(6), np.full(6, 0.5)]), rtol=1e-12
    )
    assert np.isnan(cert.bound[-1])


def brute_force(products: np.ndarray, rank: int, norm: str) -> list[bool]:
    """Step k certified iff sigma_r - sigma_(r+1) at k exceeds twice every later change's norm."""
    certified = []
    for k in range(len(products) - 1):
        sigma = np.linalg.svd(products[k], compute_uv=False)
        worst = 0.0
        for j in range(k + 1, len(products)):
            diff = products[j] - products[k]
            size = (
                np.sqrt(np.sum(np.abs(diff) ** 2))
                if norm == "frobenius"
                else np.linalg.svd(diff, compute_uv=False)[0]
            )
            worst = max(worst, size)
        certified.append(bool(sigma[rank - 1] - sigma[rank] > 2 * worst))
    return [*certified, False]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("norm", ["frobenius", "spectral"])
def test_certificates_match_a_brute_force_and_are_sound(seed, norm):
    """Random walks M_k = M_(k-1) + E_k with shrinking steps (training settling down)."""
    rng = np.random.default_rng(seed)
    n, K = 6, 12
    M0 = random_unitary(rng, n) @ np.diag(np.geomspace(4.0, 0.01, n)) @ random_unitary(rng, n)
    sizes = 0.5 * 0.6 ** np.arange(K)
    steps = np.sort(rng.choice(1000, size=K, replace=False))
    products = [M0]
    for size in sizes[1:]:
        E = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
        products.append(products[-1] + size * E / np.linalg.norm(E, 2))
    products = np.stack(products)
    for rank in range(1, n):
        cert = certify_ranking(steps, products, rank, norm=norm)
        assert cert.certified.tolist() == brute_force(products, rank, norm)
        first = next((int(s) for s, c in zip(steps, cert.certified, strict=True) if c), None)
        assert cert.certified_step == first
        for k in np.flatnonzero(cert.certified):  # Weyl: the top-r set stays separated later on
            later = np.linalg.svd(products[k + 1 :], compute_uv=False)
            assert np.all(later[:, rank - 1] > later[:, rank])


def test_frobenius_certifies_no_more_than_spectral():
    rng = np.random.default_rng(7)
    products = np.stack(
        [np.diag([3.0, 1.0, 0.2]) + 0.1 * rng.standard_normal((3, 3)) for _ in range(8)]
    )
    for rank in (1, 2):
        loose = certify_ranking(range(8), products, rank, norm="frobenius").certified
        tight = certify_ranking(range(8), products, rank, norm="spectral").certified
        assert not np.any(loose & ~tight)


def test_certify_ranking_checks_its_arguments():
    products = np.stack([np.eye(3)] * 2)
    with pytest.raises(ValueError, match=r"`steps` must be 2 non-decreasing steps, got \[5, 1\]"):
        certify_ranking([5, 1], products, 1)
    with pytest.raises(ValueError, match=r"`products` must be \(K, n, n\)"):
        certify_ranking([0], np.eye(3), 1)
    with pytest.raises(ValueError, match="`rank` must be an integer in"):
        certify_ranking([0, 1], products, 3)
    with pytest.raises(ValueError, match="`norm` 'nuclear' is unknown"):
        certify_ranking([0, 1], products, 1, norm="nuclear")


def test_a_single_snapshot_certifies_nothing():
    cert = certify_ranking([0], np.diag([2.0, 1.0])[None], 1)
    assert cert.certified.tolist() == [False] and cert.certified_step is None


# --- factor products: the core's Weyl bound and HSVs -----------------------------------------


@dataclass
class FakeLayer:
    """A ``ReducibleSSM`` as far as the log needs one: a diagonal system and its state dim."""

    system: cc.DiagonalStateSpace
    real_output: bool = True

    def ssm_system(self) -> cc.DiagonalStateSpace:
        return self.system

    @property
    def state_dim(self) -> int:
        return self.system.poles.shape[-1]


def random_layer(rng: np.random.Generator, n: int, m: int = 2, p: int = 3) -> FakeLayer:
    poles = rng.uniform(0.3, 0.95, n) * np.exp(1j * rng.uniform(0, np.pi, n))
    B = rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m))
    C = rng.standard_normal((p, n)) + 1j * rng.standard_normal((p, n))
    return FakeLayer(cc.DiagonalStateSpace(poles, B, C))


def nudged(layer: FakeLayer, rng: np.random.Generator, size: float) -> FakeLayer:
    s = layer.system
    B = s.B + size * rng.standard_normal(s.B.shape)
    return FakeLayer(cc.DiagonalStateSpace(s.poles * (1 - size / 10), B, s.C))


@pytest.mark.parametrize("gramians", ["complex", "real_output"])
def test_factor_products_give_the_cores_hsvs_and_weyl_bound(gramians):
    rng = np.random.default_rng(3)
    a = random_layer(rng, 5)
    b = nudged(a, rng, 0.05)
    Ma, Mb = factor_product(a, gramians), factor_product(b, gramians)
    analysed = {"complex": lambda s: s, "real_output": cc.real_output_system}[gramians]
    np.testing.assert_allclose(
        np.linalg.svd(Ma, compute_uv=False),
        cc.hankel_singular_values(analysed(a.system)),
        rtol=1e-9,
    )
    weyl = float(cc.weyl_bound(analysed(a.system), analysed(b.system)))
    assert np.linalg.norm(Mb - Ma) == pytest.approx(weyl, rel=1e-9)


# --- the log of a run -------------------------------------------------------------------------


def fake_layers(model: dict[str, FakeLayer]) -> list[tuple[str, FakeLayer]]:
    return list(model.items())


def test_log_cadence_stretches_and_report():
    """Two layers, snapshots every 4 of 10 steps; at step 6 layer "b" is cut from 5 to 3 states."""
    rng = np.random.default_rng(4)
    model = {"a": random_layer(rng, 4), "b": random_layer(rng, 5)}
    log = StabilityLog(every=4, total_steps=10, layers=fake_layers)
    log.observe(0, model)
    for step in range(1, 11):
        new = {name: nudged(layer, rng, 0.01) for name, layer in model.items()}
        reduced = None
        if step == 6:
            reduced = {"a": new["a"], "b": random_layer(rng, 3)}
        log.observe(step, new, reduced)
        model = reduced or new
    assert log.steps["a"] == [0, 4, 6, 8, 10]
    assert log.steps["b"] == [0, 4, 6, 6, 8, 10]
    assert [len(M) for M in log.products["b"]] == [5, 5, 5, 3, 3, 3]
    schedule = ReductionSchedule(total_steps=10, interval=2, tau=0.3, reduce_until=1.0)
    report = log.report(schedule)
    assert report["every"] == 4 and report["norm"] == "frobenius"
    a_stretches, b_stretches = report["layers"]["a"], report["layers"]["b"]
    assert [s["steps"] for s in b_stretches] == [[0, 4, 6], [6, 8, 10]]
    assert [s["order"] for s in b_stretches] == [5, 3]
    before_cut = np.linalg.svd(log.products["b"][2], compute_uv=False)
    planned = cc.layers.planned_ranks(schedule, {"b": before_cut})
    assert b_stretches[0]["rank"] == planned.get("b") and b_stretches[0]["rank_from"] == "reduction"
    (only,) = a_stretches
    final = np.linalg.svd(log.products["a"][-1], compute_uv=False)
    assert only["rank"] == int(cc.rank_for_energy(final, 0.3))
    cert = certify_ranking(log.steps["a"], np.stack(log.products["a"]), only["rank"])
    assert only["certified_step"] == cert.certified_step
    assert only["certified"] == cert.certified.tolist() and only["bound"][-1] is None
    json.dumps(report)  # JSON-ready
    no_tolerance = log.report(None)["layers"]["a"][0]
    assert no_tolerance["rank"] is None and no_tolerance["certified_step"] is None
    assert "no tolerance" in no_tolerance["rank_from"]


def test_log_checks_its_arguments():
    with pytest.raises(ValueError, match="`every` must be a positive integer, got 0"):
        StabilityLog(every=0, total_steps=10, layers=fake_layers)


def test_hsv_every_is_validated():
    assert TrainConfig(hsv_every=5).hsv_every == 5
    with pytest.raises(ValueError, match="`hsv_every` must be a positive integer or None, got 0"):
        TrainConfig(hsv_every=0)
    with pytest.raises(ValueError, match="`hsv_every` needs backend 'torch'"):
        TrainConfig(hsv_every=5, backend="jax")
    with pytest.raises(ValueError, match="model='selective'"):
        TrainConfig(hsv_every=5, model="selective")


# --- a training run ---------------------------------------------------------------------------


def test_a_run_writes_the_rank_stability_report_and_plot(tmp_path):
    from reference_models.train.run import run_and_save

    config = TrainConfig(
        task="digits",
        steps=40,
        batch_size=32,
        d_model=16,
        state_dim=16,
        n_layers=2,
        tau=0.2,
        energy="squared",
        reduce_every=20,
        reduce_until=0.5,
        rollback_tolerance=1.0,
        eval_every=20,
        hsv_every=10,
    )
    metrics = run_and_save(config, tmp_path, progress=False)
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["rank_stability"]
        == metrics["rank_stability"]
    )
    assert (tmp_path / "rank_stability.png").stat().st_size > 0
    report = metrics["rank_stability"]
    assert list(report["layers"]) == list(metrics["hsv_history"][0]["hsv"])
    assert metrics["reductions"], "the run should reduce at step 20"
    for name, stretches in report["layers"].items():
        steps = [step for stretch in stretches for step in stretch["steps"]]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 40
        assert {0, 10, 20, 30, 40} <= set(steps)
        assert (
            stretches[0]["order"] == 16
            and stretches[-1]["order"]
            == metrics["final_state_dims"][list(report["layers"]).index(name)]
        )
        # the log's HSVs (from its factor products) against the adapter's, recorded separately
        np.testing.assert_allclose(
            stretches[0]["hsv"][0], metrics["hsv_history"][0]["hsv"][name], rtol=1e-6
        )
        np.testing.assert_allclose(
            stretches[-1]["hsv"][-1], metrics["hsv_history"][-1]["hsv"][name], rtol=1e-6
        )
        for stretch in stretches:
            if stretch["rank"] is not None:
                flags = stretch["certified"]
                first = next((s for s, c in zip(stretch["steps"], flags, strict=True) if c), None)
                assert stretch["certified_step"] == first

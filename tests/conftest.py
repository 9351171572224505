"""Fixtures shared by the tests of both trainers and of the benchmark scripts."""

import importlib.util
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

#: Keys of metrics.json that measure time, not what was trained.
TIMINGS = ("wall_clock_s", "reduction_overhead_s", "reduction_compile_s")


@pytest.fixture
def stop_at(monkeypatch):
    """``stop_at(trainer_module, step, signum=SIGTERM)``: send ``signum`` to this process
    while the trainer prepares step ``step`` (0-based, through its ``learning_rate_factor``)."""

    def install(trainer, step: int, signum: int = signal.SIGTERM) -> None:
        original = trainer.learning_rate_factor

        def factor(index, config):
            if index == step:
                signal.raise_signal(signum)
            return original(index, config)

        monkeypatch.setattr(trainer, "learning_rate_factor", factor)

    return install


@pytest.fixture
def without_timings():
    """metrics.json without what measures time (the parts a resumed run may differ in)."""

    def strip(metrics: dict) -> dict:
        kept = {key: value for key, value in metrics.items() if key not in TIMINGS}
        kept["evaluations"] = [{k: v for k, v in e.items() if k != "wall_clock_s"} for e in metrics["evaluations"]]
        return kept

    return strip


@pytest.fixture(scope="module")
def jax_default_precision():
    """JAX's default 32-bit mode for a module's tests, as users run the trainers, whatever
    other test modules switched on (several enable ``jax_enable_x64`` when imported)."""
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark(name)``: the script benchmarks/<name>.py as a module, importing its
    folder's ``_timing`` as when it runs as a script; unloaded at the end of the session."""
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(folder))
    loaded = []

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        loaded.append(name)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
    sys.path.remove(str(folder))


class DecoupledLRU:
    """An LRU layer's parameters with decoupled states (B rows and C columns on distinct unit
    vectors, so B B^H and C^H C are diagonal): its Gramians are diagonal and its HSVs follow in
    closed form. With the LRU's normalisation gamma = sqrt(1 - r^2), state i of pole radius r
    has P_ii = gamma^2 g(r^2) and Q_ii = g(r^2), g(x) = sum_{k<L} x^k, so that

        sigma = (1 - r^2L) / sqrt(1 - r^2)  over L steps,   1 / sqrt(1 - r^2)  for L -> infinity.

    Three near-integrators (r = 0.999, 0.998, 0.997: sigma = 22.4, 15.8, 12.9 infinite; 1.7,
    2.3, 2.8 over 40 steps) and nine faster states (r = 0.3 ... 0.7: sigma = 1.05 ... 1.40 either
    way). At tau = 0.2 (HSV sum) the infinite horizon keeps the three near-integrators only
    (83% of the sum); over 40 steps they hold 39%, and faster states are kept too.
    """

    radii = np.array([0.999, 0.998, 0.997, *np.arange(0.3, 0.71, 0.05)])
    n = len(radii)
    d_model = 16

    def parameters(self) -> dict[str, np.ndarray]:
        """The LRU's parameters (float64), by name."""
        unit = np.zeros((self.n, self.d_model))
        unit[np.arange(self.n), np.arange(self.n)] = 1.0
        return {
            "nu_log": np.log(-np.log(self.radii)),
            "theta_log": np.log(0.1 * np.arange(1, self.n + 1)),
            "gamma_log": 0.5 * np.log(1 - self.radii**2),
            "B_re": unit, "B_im": np.zeros_like(unit), "C_re": unit.T.copy(), "C_im": np.zeros_like(unit.T),
        }

    def hsv(self, horizon: int | None) -> np.ndarray:
        """Per state (in state order), the closed form above."""
        root = np.sqrt(1 - self.radii**2)
        return 1 / root if horizon is None else (1 - self.radii ** (2 * horizon)) / root

    def kept_radii(self, horizon: int | None, tau: float) -> np.ndarray:
        """The radii, descending, of the fewest largest-HSV states holding 1 - tau of the HSV sum."""
        hsv = self.hsv(horizon)
        order = np.argsort(hsv)[::-1]
        rank = int(np.argmax(np.cumsum(hsv[order]) >= (1 - tau) * hsv.sum())) + 1
        return np.sort(self.radii[order[:rank]])[::-1]


@pytest.fixture
def decoupled_lru() -> DecoupledLRU:
    """See ``DecoupledLRU``: a layer whose HSVs with and without a horizon are known."""
    return DecoupledLRU()


class EscapingPoles:
    """A random stable diagonal system (8 states, 2 inputs and outputs, pole moduli 0.5 ... 0.999)
    whose balanced truncation with Gramians over ``horizon`` steps puts reduced poles outside its
    largest pole modulus ``limit``: the first seed for which some rank puts two or more there
    (brute force over seeds). Oracle ``escaped(rank)``: the moduli above ``limit`` of the
    eigenvalues (``np.linalg.eigvals``) of the truncated A, before any pole is moved in."""

    horizon = 10
    n = 8
    d_model = 2

    def __init__(self) -> None:
        for seed in range(1000):
            rng = np.random.default_rng(seed)
            self.poles = rng.uniform(0.5, 0.999, self.n) * np.exp(1j * rng.uniform(0.1, np.pi, self.n))
            self.B = rng.normal(size=(self.n, self.d_model)) + 1j * rng.normal(size=(self.n, self.d_model))
            self.C = rng.normal(size=(self.d_model, self.n)) + 1j * rng.normal(size=(self.d_model, self.n))
            self.limit = float(np.max(np.abs(self.poles)))
            ranks = [rank for rank in range(1, self.n) if len(self.escaped(rank)) >= 2]
            if ranks:
                self.seed, self.rank = seed, ranks[0]
                return
        msg = "no seed below 1000 gives two escaping poles"
        raise AssertionError(msg)

    def system(self):
        import compressm_core as cc

        return cc.DiagonalStateSpace(self.poles, self.B, self.C)

    def escaped(self, rank: int) -> np.ndarray:
        import compressm_core as cc

        A = np.asarray(cc.balanced_truncation(self.system(), rank=rank, horizon=self.horizon).system.A)
        moduli = np.abs(np.linalg.eigvals(A))
        return np.sort(moduli[moduli > self.limit])[::-1]

    def lru_parameters(self) -> dict[str, np.ndarray]:
        """An LRU layer (d_model 2, gamma 1) with these poles, B and C (float64), by name."""
        return {
            "nu_log": np.log(-np.log(np.abs(self.poles))), "theta_log": np.log(np.angle(self.poles)),
            "gamma_log": np.zeros(self.n), "B_re": self.B.real.copy(), "B_im": self.B.imag.copy(),
            "C_re": self.C.real.copy(), "C_im": self.C.imag.copy(),
        }


@pytest.fixture(scope="session")
def escaping_poles() -> EscapingPoles:
    """See ``EscapingPoles``: a layer whose time-limited truncation moves poles in."""
    return EscapingPoles()

"""Fixtures shared by the tests of both trainers and of the benchmark scripts."""

import importlib.util
import signal
import sys
from pathlib import Path

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

"""The JAX trainer end to end on a tiny configuration: same metrics keys as PyTorch, checkpoints shared."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from reference_models.train.checkpoint_torch import load_model as load_torch_model
from reference_models.train.config import TrainConfig
from reference_models.train.jax_trainer import load_model
from reference_models.train.run import run_and_save

pytestmark = pytest.mark.usefixtures("jax_default_precision")

TINY = TrainConfig(task="digits", backend="jax", steps=20, batch_size=32, d_model=8, state_dim=16, n_layers=1,
                   tau=0.2, reduce_every=2, reduce_until=0.1, eval_every=10, max_train=300)


def test_jax_run_writes_the_same_outputs_and_a_checkpoint_torch_can_read(tmp_path):
    metrics = run_and_save(TINY, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("final_state_dims", "test_accuracy", "wall_clock_s", "reductions", "config"):
        assert key in on_disk
    assert on_disk["final_state_dims"] == metrics["final_state_dims"]
    assert metrics["final_state_dims"][0] < 16 and metrics["reductions"][0]["step"] == 2
    assert metrics["reduction_compile_s"] > 0 and metrics["reduction_overhead_s"] > 0  # timed apart
    for name in ("hsv_spectra.png", "state_dims.png", "val_metric_over_time.png"):
        assert (tmp_path / name).stat().st_size > 0
    jax_model = load_model(tmp_path / "model.safetensors")
    torch_model = load_torch_model(tmp_path / "model.safetensors").double().eval()
    x = np.random.default_rng(0).standard_normal((2, 64, 1))
    y_jax = np.asarray(jax.vmap(lambda xi: jax_model(xi, inference=True))(jnp.asarray(x, dtype=jnp.float32)))
    y_torch = torch_model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y_jax, y_torch, rtol=1e-4, atol=1e-5)


def test_torch_checkpoint_loads_in_jax(tmp_path):
    from reference_models.torch_models import SequenceModel
    from reference_models.train.checkpoint_torch import save_model

    torch.manual_seed(0)
    torch_model = SequenceModel(d_input=2, d_output=3, d_model=8, state_dim=[6, 4], n_layers=2, layer="s5").eval()
    save_model(torch_model, tmp_path / "torch.safetensors")
    jax_model = load_model(tmp_path / "torch.safetensors")
    x = np.random.default_rng(1).standard_normal((2, 30, 2)).astype(np.float32)
    y_torch = torch_model(torch.from_numpy(x)).detach().numpy()
    y_jax = np.asarray(jax.vmap(lambda xi: jax_model(xi, inference=True))(jnp.asarray(x)))
    np.testing.assert_allclose(y_jax, y_torch, rtol=1e-4, atol=1e-5)


def test_jax_trains_without_compression():
    """The full arm of ``compare`` (tau=None) must run in JAX too."""
    from reference_models.train.jax_trainer import train

    _, record = train(TINY.replace(tau=None, steps=4, eval_every=2), progress=False)
    assert record.metrics()["final_state_dims"] == [16] and record.reductions == []

"""The JAX backend in ``compressm compare``: post-training truncation of a JAX-trained model."""

import json

import pytest

import compressm_core as cc
import compressm_torch as ct
from reference_models.train.checkpoint_torch import load_model
from reference_models.train.config import TrainConfig
from reference_models.train.run import compare

pytestmark = pytest.mark.usefixtures("jax_default_precision")

TINY = TrainConfig(task="digits", backend="jax", steps=20, batch_size=32, d_model=8, state_dim=12, n_layers=1,
                   tau=0.3, reduce_every=5, reduce_until=0.5, rollback_tolerance=0.5, eval_every=10, max_train=200)


@pytest.mark.slow
def test_truncate_arm_reads_the_jax_checkpoint(tmp_path):
    compare(TINY, tmp_path, arms=["truncate"], progress=False)
    full = load_model(tmp_path / "full_seed0" / "model.safetensors")
    truncated = json.loads((tmp_path / "truncate_seed0" / "metrics.json").read_text())
    hsv = ct.hankel_singular_values(full, horizon=truncated["truncation"]["horizon"])["blocks.0.ssm"]  # the run's
    assert truncated["final_state_dims"] == [int(cc.rank_for_energy(hsv, 0.3))]
    assert truncated["config"]["backend"] == "jax"

"""compressm_jax on selective (Mamba-style) layers, against the PyTorch adapter on the same
weights (whose energies tests/torch/test_selective_compress.py checks against loops over the
Gramian recursions): energies, kept indices, the Optax state, the Compressor, the trainer."""

from dataclasses import replace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import compressm_jax as cj
import compressm_torch as ct
from compressm_core.schedule import ReductionSchedule
from reference_models.jax_models import SelectiveSequenceModel, load_state_dict, state_dict
from reference_models.torch_models import SelectiveSequenceModel as TorchSelectiveModel
from reference_models.train.config import TrainConfig
from reference_models.train.jax_trainer import load_model
from reference_models.train.run import run_and_save

jax.config.update("jax_enable_x64", True)


def model_pair(state_dim: int = 8, seed: int = 0):
    """The same weights in PyTorch and JAX (float64), with states of spread importance."""
    torch.manual_seed(seed)
    reference = TorchSelectiveModel(3, 4, 6, state_dim, 2).double()
    with torch.no_grad():
        for block in reference.blocks:
            rows, rank = block.ssm.x_proj.weight, block.ssm.dt_rank
            scale = torch.logspace(0.5, -1.5, state_dim, dtype=torch.float64)
            rows[rank : rank + state_dim] *= scale[:, None]
            rows[rank + state_dim :] *= scale[torch.randperm(state_dim)][:, None]
    model = SelectiveSequenceModel(3, 4, 6, state_dim, 2, key=jax.random.key(0))
    arrays = {name: t.detach().numpy() for name, t in reference.state_dict().items()}
    return reference, load_state_dict(model, arrays)


def sequences(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 10, 3))


def test_state_energies_match_the_pytorch_adapter():
    reference, model = model_pair()
    x = sequences(3)
    expected = ct.state_energies(reference, torch.from_numpy(x))
    energies = cj.state_energies(model, x)
    assert list(energies) == [name for name, _ in cj.selective_layers(model)] == list(expected)
    for name, energy in energies.items():
        np.testing.assert_allclose(energy, expected[name].numpy(), rtol=1e-9)
    hsvs = cj.hankel_singular_values(model, calibration=x)
    for name, hsv in hsvs.items():
        np.testing.assert_allclose(hsv, np.sqrt(np.sort(energies[name])[::-1]), rtol=1e-12)


def test_compress_keeps_the_same_states_as_pytorch():
    reference, model = model_pair()
    x = sequences(4)
    expected = ct.compress(reference, tau=0.2, energy="squared", calibration=torch.from_numpy(x))
    compressed = cj.compress(model, tau=0.2, energy="squared", calibration=x)
    assert [(r.name, r.old_dim, r.new_dim, r.error_bound) for r in compressed.reductions] == [
        (r.name, r.old_dim, r.new_dim, r.error_bound) for r in expected.reductions
    ]
    for name, array in state_dict(compressed.model).items():
        np.testing.assert_allclose(array, expected.model.state_dict()[name].numpy(), rtol=1e-12, err_msg=name)
    assert model.blocks[0].ssm.state_dim == 8  # the input model is untouched


def test_optax_state_keeps_untouched_leaves_and_resets_the_reduced_layer():
    _, model = model_pair()
    x = sequences(4)
    optimizer = optax.adam(1e-3)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    parameters = eqx.filter(model, eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(parameters)
    rng = np.random.default_rng(1)  # gradients of any value: only where the state goes matters
    grads = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(rng.standard_normal(a.shape)) for a in leaves])
    _, state = optimizer.update(grads, state, parameters)
    compressed = cj.compress(model, state, optimizer, ranks={"blocks.1.ssm": 3}, calibration=x)
    old_mu, new_mu = state[0].mu, compressed.opt_state[0].mu
    np.testing.assert_array_equal(new_mu.blocks[0].ssm.A_log, old_mu.blocks[0].ssm.A_log)
    np.testing.assert_array_equal(new_mu.encoder.weight, old_mu.encoder.weight)
    assert new_mu.blocks[1].ssm.A_log.shape == (12, 3)
    assert not np.any(np.asarray(new_mu.blocks[1].ssm.A_log))


def test_compressor_reduces_and_rolls_back():
    _, model = model_pair()
    x = sequences(4)
    optimizer = optax.sgd(1e-3)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    schedule = ReductionSchedule(total_steps=100, interval=10, reduce_until=0.5, tau=0.1, energy="squared")
    new_model, _, compressor = cj.Compressor(schedule, optimizer, calibration=x).step(10, model, state, lambda m: 1.0)
    dims = [layer.state_dim for _, layer in cj.selective_layers(new_model)]
    assert dims == [r.new_dim for r in compressor.events[0].reductions] and max(dims) < 8
    metrics = iter([1.0, 0.9, 0.5])  # before, just after the cut, after recovery: beyond the tolerance
    undone = cj.Compressor(replace(schedule, safety_net=True), optimizer, calibration=x)
    reduced, reduced_state, undone = undone.step(10, model, state, lambda m: next(metrics))
    same, same_state, undone = undone.step(20, reduced, reduced_state, lambda m: next(metrics))
    assert same is model and same_state is state and undone.events[-1].rolled_back


def test_selective_layers_need_calibration_sequences():
    _, model = model_pair()
    with pytest.raises(ValueError, match=r"selective layers \['blocks.0.ssm', 'blocks.1.ssm'\].*`calibration`"):
        cj.compress(model, tau=0.1)
    with pytest.raises(ValueError, match=r"`calibration` must be a batch of sequences .* got shape \(10, 3\)"):
        cj.hankel_singular_values(model, calibration=sequences(1)[0])
    with pytest.raises(ValueError, match=r"selective layers \['model.blocks.0.ssm', 'model.blocks.1.ssm'\] could not be read"):
        cj.state_energies(_VmappedModel(model), sequences(2))


class _VmappedModel(eqx.Module):
    """Runs its model under a vmap of its own: its layers' inputs cannot leave that trace."""

    model: SelectiveSequenceModel

    def __call__(self, x):
        return jax.vmap(self.model)(x[None])[0]


def test_jax_trainer_runs_a_selective_model(tmp_path):
    config = TrainConfig(task="selective_copying", backend="jax", model="selective", steps=6,
                         batch_size=8, d_model=8, state_dim=8, n_layers=1, tau=0.3,
                         energy="squared", reduce_every=3, reduce_until=0.5, rollback_tolerance=1.0,
                         eval_every=6, warmup_steps=1, max_train=64, calibration_size=4)
    metrics = run_and_save(config, tmp_path, progress=False)
    assert metrics["initial_state_dims"] == [8] and metrics["final_state_dims"][0] < 8
    loaded = load_model(tmp_path / "model.safetensors")
    assert isinstance(loaded, SelectiveSequenceModel)
    assert loaded.config["state_dims"] == metrics["final_state_dims"]

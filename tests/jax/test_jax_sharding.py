"""Data-parallel JAX training over 2 host CPU devices, against the same run on one device.

XLA reads the device count when JAX starts, so the runs happen in a subprocess started with
``--xla_force_host_platform_device_count=2`` (and a low XLA optimisation level, which halves
compile times and applies to both runs alike); it saves what it holds and the tests compare.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).parent.parent.parent

WORKER = textwrap.dedent(
    """
    import json, sys
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np, optax
    import compressm_jax as cj
    from compressm_core.schedule import ReductionSchedule
    from compressm_jax.sharding import ShardedCompressor, data_parallel_mesh, replicate, shard_batch
    from reference_models.jax_models import SequenceModel, state_dict
    from reference_models.tasks import SequenceDataset
    from reference_models.train.config import TrainConfig
    from reference_models.train.jax_trainer import train

    output = sys.argv[1]
    assert jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)

    def split(n):  # 3 classes: the signs of the two halves' means
        x = rng.standard_normal((n, 16, 1)).astype(np.float32)
        return x, ((x[:, :8, 0].mean(1) > 0).astype(np.int64) + (x[:, 8:, 0].mean(1) > 0))

    data = SequenceDataset("toy", "classification", *split(128), *split(32), *split(32), num_classes=3)
    config = TrainConfig(backend="jax", steps=12, batch_size=16, d_model=8, state_dim=16, n_layers=1,
                         tau=0.2, reduce_every=4, reduce_until=0.4, eval_every=12)

    def placement(tree):
        leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))
        return {
            "replicated_on_2": all(
                len(leaf.sharding.device_set) == 2 and leaf.sharding.is_fully_replicated for leaf in leaves
            ),
            "replicas_equal": all(
                all(np.array_equal(shard.data, leaf.addressable_shards[0].data) for shard in leaf.addressable_shards)
                for leaf in leaves
            ),
        }

    def leaves(tree):
        return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))]

    results, arrays = {}, {}
    for name, devices in (("two", jax.devices()), ("one", jax.devices()[:1])):
        model, record = train(config, data=data, progress=False, devices=devices)
        metrics = record.metrics()
        results[f"trainer_{name}"] = {
            "dims": metrics["final_state_dims"],
            "reductions": [(r["step"], r["new_dim"]) for r in metrics["reductions"]],
            "test_accuracy": metrics["test_accuracy"],
            **placement(model),
        }
        arrays.update({f"trainer_{name}/{k}": np.asarray(v) for k, v in state_dict(model).items()})

    optimizer = optax.adam(1e-2)
    schedule = ReductionSchedule(total_steps=10, interval=1, reduce_until=0.1, tau=0.3)

    def adapter_run(mesh, metrics, schedule=schedule):
        # one check on a model with non-zero Adam moments (no jitted step: compiles are slow)
        model = SequenceModel(1, 3, 8, 16, 1, key=jax.random.key(0))  # the trainer's shapes: cached compiles
        opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
        opt_state = jax.tree_util.tree_map(lambda leaf: (np.asarray(leaf) + 1).astype(leaf.dtype), opt_state)
        compressor = cj.Compressor(schedule, optimizer)
        if mesh is not None:
            model, opt_state = replicate((model, opt_state), mesh)
            compressor = ShardedCompressor(schedule, optimizer, mesh=mesh)
        values = iter(metrics)
        new_model, new_state, compressor = compressor.step(1, model, opt_state, lambda m: next(values))
        if schedule.net:  # judged after one step of "recovery"
            new_model, new_state, compressor = compressor.step(2, new_model, new_state, lambda m: next(values))
        result = {"kept": new_model is not model, "dims": [layer.state_dim for _, layer in cj.reducible_layers(new_model)]}
        if mesh is not None:
            result.update(placement((new_model, new_state)))
        return result, (new_model, new_state), compressor

    mesh = data_parallel_mesh()
    results["adapter_two"], reduced, _ = adapter_run(mesh, [1.0, 1.0])
    arrays.update({f"adapter_two/{i}": leaf for i, leaf in enumerate(leaves(reduced))})
    results["adapter_one"], reduced, _ = adapter_run(None, [1.0, 1.0])
    arrays.update({f"adapter_one/{i}": leaf for i, leaf in enumerate(leaves(reduced))})
    netted = ReductionSchedule(total_steps=10, interval=1, reduce_until=0.1, tau=0.3, safety_net=True)
    results["rollback_two"], _, compressor = adapter_run(mesh, [1.0, 0.5, 0.5], netted)
    results["rollback_two"]["rolled_back"] = compressor.events[-1].rolled_back

    results["errors"] = []
    for attempt in (lambda: shard_batch(np.zeros((3, 2)), mesh),
                    lambda: train(config.replace(batch_size=15), data=data, progress=False)):
        try:
            attempt()
        except ValueError as error:
            results["errors"].append(str(error))

    json.dump(results, open(f"{output}/results.json", "w"))
    np.savez(f"{output}/arrays.npz", **arrays)
    """
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    output = tmp_path_factory.mktemp("sharding")
    flags = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(output)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    with np.load(output / "arrays.npz") as arrays:
        return results, dict(arrays)


def _group(arrays: dict, prefix: str) -> dict:
    return {
        key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith(prefix + "/")
    }


def test_trainer_on_two_devices_keeps_parameters_replicated_and_equal(runs):
    results, _ = runs
    two = results["trainer_two"]
    assert two["reductions"] and two["dims"][0] < 16  # at least one reduction
    assert two["replicated_on_2"] and two["replicas_equal"]


def test_trainer_on_two_devices_matches_one_device_with_the_same_global_batch(runs):
    results, arrays = runs
    two, one = results["trainer_two"], results["trainer_one"]
    assert two["dims"] == one["dims"] and two["reductions"] == one["reductions"]
    sharded, single = _group(arrays, "trainer_two"), _group(arrays, "trainer_one")
    assert sharded.keys() == single.keys()
    for name, value in single.items():
        np.testing.assert_allclose(sharded[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-6)


def test_reduction_re_replicates_model_and_optax_state(runs):
    results, arrays = runs
    two, one = results["adapter_two"], results["adapter_one"]
    assert two["kept"] and one["kept"] and two["dims"] == one["dims"] and two["dims"][0] < 16
    assert two["replicated_on_2"] and two["replicas_equal"]
    sharded, single = _group(arrays, "adapter_two"), _group(arrays, "adapter_one")
    assert sharded.keys() == single.keys()
    for index, value in single.items():
        assert sharded[index].shape == value.shape
        np.testing.assert_allclose(sharded[index], value, rtol=1e-6, atol=1e-7, err_msg=index)


def test_rollback_keeps_the_replicated_inputs(runs):
    results, _ = runs
    rollback = results["rollback_two"]
    assert not rollback["kept"] and rollback["rolled_back"]
    assert rollback["replicated_on_2"] and rollback["replicas_equal"]


def test_batches_that_do_not_split_over_the_devices_are_refused(runs):
    results, _ = runs
    batch, trainer = results["errors"]
    assert "a batch of 3 rows does not split over 2 devices" in batch
    assert "`batch_size` 15 is not a multiple of the number of devices (2)" in trainer


def test_an_empty_device_list_is_refused():
    from compressm_jax.sharding import data_parallel_mesh

    with pytest.raises(ValueError, match="`devices` is empty"):
        data_parallel_mesh([])

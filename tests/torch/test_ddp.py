"""Compression under DistributedDataParallel: 2 gloo processes on CPU against a single process.

One launch of 2 ranks runs the trainer (with reductions) and the adapter's scenarios
(rank 0 decides, rollback on every rank, a rebuilt wrapper that still averages gradients);
each rank saves what it holds, and the tests compare ranks with each other and with a
single-process run of the same global batch.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from compressm_core.schedule import ReductionSchedule
from compressm_torch import reducible_layers
from compressm_torch.distributed import DistributedCompressor
from reference_models.torch_models import SequenceModel
from reference_models.train.config import TrainConfig
from reference_models.train.distributed import DataParallel
from reference_models.train.torch_trainer import train

CONFIG = TrainConfig(
    task="digits",
    steps=30,
    batch_size=32,
    d_model=8,
    state_dim=16,
    n_layers=2,
    tau=0.2,
    reduce_every=4,
    reduce_until=0.5,
    eval_every=10,
    max_train=300,
)
REPO = Path(__file__).parent.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compressor(tau: float, **options) -> DistributedCompressor:
    return DistributedCompressor(
        ReductionSchedule(total_steps=10, interval=1, reduce_until=0.1, tau=tau, **options)
    )


def _ddp_model() -> DistributedDataParallel:
    torch.manual_seed(0)
    return DistributedDataParallel(SequenceModel(1, 3, 8, 12, 1))


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> None:
    generator = torch.Generator().manual_seed(rank)  # a different shard per rank
    x = torch.randn(4, 20, 1, generator=generator)
    optimizer.zero_grad()
    model(x).pow(2).mean().backward()
    optimizer.step()


def _adapter_scenarios(rank: int) -> dict:
    """Rollback on a rank-averaged metric drop after recovery; a kept reduction decided by rank 0."""
    model = _ddp_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train_step(model, optimizer, rank)
    metrics = iter([1.0, 0.5, 1.0 if rank == 0 else 0.9])  # before, after the cut, after recovery
    compressor = _compressor(0.3, safety_net=True)  # the cut at step 1 is judged at step 2
    reduced, reduced_optimizer = compressor.step(1, model, optimizer, lambda m: next(metrics))
    _train_step(reduced, reduced_optimizer, rank)
    kept_model, kept_optimizer = compressor.step(2, reduced, reduced_optimizer, lambda m: next(metrics))
    rollback = {  # mean drop 0.05 > 0.02: every rank rolls back to the checkpoint
        "same_objects": kept_model.module is model.module and kept_optimizer is optimizer,
        "rolled_back": compressor.events[-1].rolled_back,
        "metric_after": compressor.events[-1].metric_after,
    }

    model = _ddp_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train_step(model, optimizer, rank)
    if rank == 1:  # rank 1's layer disagrees: rank 0's plan and values must win
        with torch.no_grad():
            model.module.blocks[0].ssm.B_re.mul_(1.5)
    metrics = iter([1.0, 1.0 if rank == 0 else 0.99])  # mean drop 0.005: kept
    compressor = _compressor(0.3)
    new_model, new_optimizer = compressor.step(1, model, optimizer, lambda m: next(metrics))
    reduced = {
        name: p.detach().clone() for name, p in new_model.module.blocks[0].ssm.named_parameters()
    }
    _train_step(new_model, new_optimizer, rank)
    return {
        "rollback": rollback,
        "kept": {
            "rewrapped": isinstance(new_model, DistributedDataParallel) and new_model is not model,
            "dims": [layer.state_dim for _, layer in reducible_layers(new_model.module)],
            "reduced": reduced,
            "after_step": {
                name: p.detach().clone() for name, p in new_model.module.named_parameters()
            },
        },
    }


def _worker(rank: int, world_size: int, port: int, output: Path) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world_size),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    model, record = train(CONFIG, progress=False)
    result = {"state": model.state_dict(), "metrics": record.metrics(), **_adapter_scenarios(rank)}
    torch.save(result, output / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    output = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), output), nprocs=2, join=True)
    return [torch.load(output / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


@pytest.fixture(scope="module")
def single_process():
    model, record = train(CONFIG, progress=False)
    return model.state_dict(), record.metrics()


def test_trainer_ranks_hold_identical_reduced_models(ranks):
    first, second = ranks
    assert first["metrics"]["final_state_dims"] == second["metrics"]["final_state_dims"]
    assert max(first["metrics"]["final_state_dims"]) < CONFIG.state_dim  # at least one reduction
    assert first["state"].keys() == second["state"].keys()
    for name, tensor in first["state"].items():
        assert torch.equal(tensor, second["state"][name]), name


def test_trainer_matches_single_process_with_the_same_global_batch(ranks, single_process):
    state, metrics = single_process
    distributed = ranks[0]
    assert distributed["metrics"]["final_state_dims"] == metrics["final_state_dims"]
    assert [
        (r["step"], r["layer"], r["new_dim"]) for r in distributed["metrics"]["reductions"]
    ] == [(r["step"], r["layer"], r["new_dim"]) for r in metrics["reductions"]]
    for name, tensor in state.items():
        torch.testing.assert_close(
            distributed["state"][name], tensor, rtol=1e-4, atol=1e-5, msg=name
        )
    assert distributed["metrics"]["test_accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=0.01
    )


def test_rollback_happens_on_every_rank_from_the_averaged_metric(ranks):
    for result in ranks:
        assert result["rollback"]["same_objects"]
        assert result["rollback"]["rolled_back"]
        assert result["rollback"]["metric_after"] == pytest.approx(0.95)


def test_kept_reduction_takes_rank0_values_and_the_new_wrapper_averages_gradients(ranks):
    first, second = (result["kept"] for result in ranks)
    assert first["rewrapped"] and second["rewrapped"]
    assert first["dims"] == second["dims"] and first["dims"][0] < 12
    for name, tensor in first["reduced"].items():  # rank 1's perturbed layer was overwritten
        assert torch.equal(tensor, second["reduced"][name]), name
    for name, tensor in first["after_step"].items():  # different shards, averaged gradients
        assert torch.equal(tensor, second["after_step"][name]), name


def test_torchrun_cli_writes_once_and_matches_single_process(tmp_path, single_process):
    state, metrics = single_process
    args = (
        "train --task digits --max-train 300 --steps 30 --batch-size 32 --d-model 8 --state-dim 16"
        " --layers 2 --tau 0.2 --reduce-every 4 --reduce-until 0.5 --eval-every 10 --quiet"
    ).split()
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        f"--master-port={_free_port()}",
        "-m",
        "reference_models.cli",
        *args,
        "--output",
        str(tmp_path / "run"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("test_accuracy") == 1  # rank 0 reports, rank 1 stays silent
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["final_state_dims"] == metrics["final_state_dims"]
    checkpoint = load_file(str(tmp_path / "run" / "model.safetensors"))
    for name, tensor in state.items():
        torch.testing.assert_close(checkpoint[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_batch_size_must_split_evenly_over_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"`batch_size` 32 is not a multiple .*WORLD_SIZE=3"):
        DataParallel.from_environment(32)


def test_distributed_compressor_needs_a_process_group():
    model = SequenceModel(1, 3, 8, 12, 1)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(RuntimeError, match="init_process_group"):
        _compressor(0.3).step(1, model, optimizer, lambda m: 1.0)

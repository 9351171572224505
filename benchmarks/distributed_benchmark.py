"""Data-parallel training (issue #7): step time with 1 vs N processes under DDP, and what a
reduction costs under DDP.

For each world size W, W processes (torch.multiprocessing; gloo on CPU, NCCL with one GPU per
process when ``--device cuda``) train the same model on the same global batch, W-th of it
each; W = 1 is a plain single-process loop without DDP. Timed per process, reported for rank 0:

1. a training step (forward, backward with DDP's gradient all-reduce, AdamW), median;
2. one reduction check (``DistributedCompressor.step``, or ``Compressor.step`` for W = 1) with a
   constant metric, and its parts measured apart (medians of ``--repeats``, each from the same
   unreduced model): the plan (HSVs on rank 0 and its broadcast),
   ``compress`` (truncation and optimizer transfer, on every rank), the broadcast of the reduced
   model, and building the new DDP wrapper; then the first training step after it (DDP
   builds its buckets) and the median step of the reduced model;
3. a validation pass over ``--val-rows`` sequences, sharded over the ranks as the trainer does.

    OMP_NUM_THREADS=1 python benchmarks/distributed_benchmark.py --world-sizes 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from compressm_core.schedule import ReductionSchedule
from compressm_torch import Compressor, compress, reducible_layers
from compressm_torch.distributed import DistributedCompressor, broadcast_module
from reference_models.torch_models import SequenceModel
from reference_models.train.distributed import DataParallel
from reference_models.train.torch_trainer import evaluate


def _timed(device: torch.device, function, *args, **kwargs) -> tuple[float, object]:
    """Seconds of ``function(*args, **kwargs)`` on this rank, started together on every rank."""
    if dist.is_initialized():
        dist.barrier()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def _step_seconds(model, optimizer, x, y, device: torch.device) -> float:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return _timed(device, step)[0]


def _constant(model: torch.nn.Module) -> float:
    """A validation metric that never drops: the check always keeps its reduction."""
    return 1.0


def _worker(rank: int, world_size: int, port: int, args: argparse.Namespace, output: Path) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device("cuda", rank) if args.device == "cuda" else torch.device("cpu")
    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size
        )
    parallel = DataParallel(rank, world_size, device)
    torch.manual_seed(0)
    module = SequenceModel(1, 10, args.d_model, args.state_dim, args.layers).to(device)
    model = parallel.wrap(module)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x_all = rng.standard_normal((args.batch_size, args.seq_len, 1)).astype(np.float32)
    y_all = rng.integers(0, 10, args.batch_size)
    x, y = (torch.from_numpy(a).to(device) for a in parallel.shard(x_all, y_all))
    for _ in range(args.warmup):
        _step_seconds(model, optimizer, x, y, device)
    steps = [_step_seconds(model, optimizer, x, y, device) for _ in range(args.steps)]

    schedule = ReductionSchedule(
        total_steps=10, interval=1, reduce_until=0.1, mode="fixed", fraction=args.cut
    )
    make = DistributedCompressor if world_size > 1 else Compressor
    times: dict[str, list[float]] = {
        key: [] for key in ("plan", "compress", "broadcast", "rebuild", "check", "first")
    }
    for _ in range(args.repeats):  # each from the same unreduced model
        seconds, ranks = _timed(device, make(schedule).planned_ranks, module)
        times["plan"].append(seconds)
        seconds, compressed = _timed(device, compress, module, optimizer, ranks=ranks)
        times["compress"].append(seconds)
        if world_size > 1:
            times["broadcast"].append(_timed(device, broadcast_module, compressed.model)[0])
            times["rebuild"].append(
                _timed(device, DistributedDataParallel, compressed.model, init_sync=False)[0]
            )
        seconds, (reduced, reduced_optimizer) = _timed(
            device, make(schedule).step, 1, model, optimizer, _constant
        )
        times["check"].append(seconds)
        times["first"].append(_step_seconds(reduced, reduced_optimizer, x, y, device))
    after = [_step_seconds(reduced, reduced_optimizer, x, y, device) for _ in range(args.steps)]

    x_val = rng.standard_normal((args.val_rows, args.seq_len, 1)).astype(np.float32)
    y_val = rng.integers(0, 10, args.val_rows)
    validation_s, _ = _timed(
        device, parallel.evaluate, evaluate, reduced, x_val, y_val, "classification"
    )
    if rank == 0:
        row = {
            "processes": world_size,
            "rows_per_process": len(x),
            "step_ms": 1e3 * statistics.median(steps),
            **{
                f"{key}_ms": 1e3 * statistics.median(values) if values else 0.0
                for key, values in times.items()
            },
            "step_after_ms": 1e3 * statistics.median(after),
            "validation_ms": 1e3 * validation_s,
            "dims_after": [
                layer.state_dim for _, layer in reducible_layers(DataParallel.unwrap(reduced))
            ],
        }
        (output / f"world{world_size}.json").write_text(json.dumps(row))
    if world_size > 1:
        dist.barrier()  # nobody tears down while another rank still talks
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _table(rows: list[dict]) -> str:
    base = rows[0]["step_ms"]
    lines = [
        "| processes | rows/process | step (ms) | speed-up | reduction check (ms) | plan | compress | broadcast | DDP rebuild | 1st step after (ms) | step after (ms) | validation pass (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['processes']} | {r['rows_per_process']} | {r['step_ms']:.1f} | {base / r['step_ms']:.2f}x | {r['check_ms']:.1f} "
            f"| {r['plan_ms']:.1f} | {r['compress_ms']:.1f} | {r['broadcast_ms']:.1f} | {r['rebuild_ms']:.1f} "
            f"| {r['first_ms']:.1f} | {r['step_after_ms']:.1f} | {r['validation_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--seq-len", type=int, default=40, help="MNIST-1D's length")
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--state-dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument(
        "--cut", type=float, default=0.5, help="fraction of states cut at the check"
    )
    parser.add_argument("--val-rows", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--repeats", type=int, default=5, help="timed reduction checks")
    parser.add_argument("--output", type=Path, default=Path("runs/distributed_benchmark"))
    args = parser.parse_args(argv)
    for size in args.world_sizes:
        if size < 1 or args.batch_size % size:
            parser.error(
                f"--world-sizes {size}: must be >= 1 and divide --batch-size {args.batch_size}"
            )
        if args.device == "cuda" and size > torch.cuda.device_count():
            parser.error(f"--world-sizes {size}: only {torch.cuda.device_count()} CUDA devices")
    args.output.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for size in args.world_sizes:
        mp.spawn(_worker, args=(size, _free_port(), args, args.output), nprocs=size, join=True)
        rows.append(json.loads((args.output / f"world{size}.json").read_text()))
    print(
        f"cpu_count {os.cpu_count()}, device {args.device}, {args.threads} thread(s) per process, "
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(_table(rows))
    (args.output / "distributed_benchmark.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()

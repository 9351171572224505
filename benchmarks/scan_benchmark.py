"""Training-step time of SequenceModel(LRU) with the parallel ``diagonal_scan`` vs the loop.

One step is forward, cross-entropy loss and backward on a batch of random sequences
(mean pooling, 10 classes, d_input 1 as in sMNIST). Prints a markdown table of the
median over ``--repeats`` timed steps after one warm-up step.

    python benchmarks/scan_benchmark.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch

import reference_models.torch_models.lru as lru_module
from reference_models.torch_models import SequenceModel, sequential_scan


def step_seconds(
    model: SequenceModel, u: torch.Tensor, labels: torch.Tensor, repeats: int
) -> float:
    """Median wall-clock seconds of forward + loss + backward, after one warm-up step."""
    times = []
    for _ in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        if u.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(model(u), labels).backward()
        if u.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--state-dims", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--lengths", type=int, nargs="+", default=[784, 1024])
    parser.add_argument("--layers", type=int, default=1)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"batch {args.batch}, H {args.d_model}, {args.layers} LRU block(s), median of {args.repeats} steps\n"
    )
    print("| n | L | diagonal_scan (ms) | sequential_scan (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for state_dim in args.state_dims:
        for length in args.lengths:
            torch.manual_seed(0)
            model = SequenceModel(1, 10, args.d_model, state_dim, args.layers).to(device)
            u = torch.randn(args.batch, length, 1, device=device)
            labels = torch.randint(0, 10, (args.batch,), device=device)
            parallel = step_seconds(model, u, labels, args.repeats)
            with mock.patch.object(lru_module, "diagonal_scan", sequential_scan):
                sequential = step_seconds(model, u, labels, args.repeats)
            print(
                f"| {state_dim} | {length} | {1e3 * parallel:.1f} | {1e3 * sequential:.1f} "
                f"| {sequential / parallel:.2f}x |"
            )


if __name__ == "__main__":
    main()

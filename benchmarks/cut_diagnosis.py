"""What a cut does to a layer: the layers before and after each reduction of a PyTorch run,
beside a freshly initialised layer of the reduced size, and the loss around the cut.

Takes the options of `compressm train` (time-invariant LRU or S5 layers), trains once, and
prints per cut and layer: pole moduli (min / median / max), median |phase|, and the median
per-state norms of the input map (gamma B for the LRU: the system's B) and of the output map
C. Then the training loss and validation metric from 40 steps before the first cut to 300
after it, and the final layers with the number of states that hold 50, 70, 90 and 99% of
their squared HSV energy (with --no-compress: how spread a trained full layer is). This is how docs/results.md compares reduced layers with fresh small ones:

    OMP_NUM_THREADS=1 python benchmarks/cut_diagnosis.py --task sysid --steps 1000 --d-model 32 \
        --state-dim 64 --layers 1 --tau 0.5 --energy squared --reduce-from 300 \
        --reduce-every 300 --reduce-until 0.3 --eval-every 20 --seed 2
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Iterator

import numpy as np
import torch

import compressm_torch as ct
from reference_models import cli
from reference_models.train import torch_trainer


def layer_summary(layer: torch.nn.Module) -> dict[str, object]:
    """Pole moduli (min, median, max), median |phase| and the median per-state norms of the
    layer's system's B (rows) and C (columns)."""
    system = layer.ssm_system()
    poles = system.poles.detach().cpu().numpy()
    moduli = np.abs(poles)
    return {
        "n": poles.size,
        "|pole| min/med/max": [round(float(v), 3) for v in (moduli.min(), np.median(moduli), moduli.max())],
        "|phase| med": round(float(np.median(np.abs(np.angle(poles)))), 3),
        "|B row| med": round(float(np.median(np.linalg.norm(system.B.detach().cpu().numpy(), axis=-1))), 3),
        "|C col| med": round(float(np.median(np.linalg.norm(system.C.detach().cpu().numpy(), axis=-2))), 3),
    }


@contextlib.contextmanager
def recording_cuts(cuts: list[tuple[int, torch.nn.Module, torch.nn.Module]]) -> Iterator[None]:
    """While open, the trainers' ``Compressor`` appends (step, model before, model after) to
    ``cuts`` at every check that reduced something."""

    class RecordingCompressor(ct.Compressor):
        def step(self, step, model, optimizer, validate):  # the signature of Compressor.step
            events, before = len(self.events), copy.deepcopy(model)
            model, optimizer = super().step(step, model, optimizer, validate)
            if len(self.events) > events:
                cuts.append((step, before, copy.deepcopy(model)))
            return model, optimizer

    original, ct.Compressor = ct.Compressor, RecordingCompressor
    try:
        yield
    finally:
        ct.Compressor = original


def main(argv: list[str]) -> list[tuple[int, torch.nn.Module, torch.nn.Module]]:
    """Train as `compressm train argv` does (no output folder), print the diagnosis, return the
    recorded cuts."""
    base, options, _ = cli._defaults(["train", *argv])
    args = cli._parser(base, options, "train").parse_args(["train", *argv])
    config = cli._config(args, base)
    if config.backend != "torch" or config.model == "selective":
        raise SystemExit("cut_diagnosis.py: PyTorch LRU or S5 runs only (--backend torch, --model lru|s5)")
    cli._limit_threads(args.threads)
    cuts: list[tuple[int, torch.nn.Module, torch.nn.Module]] = []
    with recording_cuts(cuts):
        model, record = torch_trainer.train(config, progress=False)
    torch.manual_seed(config.seed)
    for step, before, after in cuts:
        print(f"cut at step {step}")
        for (name, old), (_, new) in zip(ct.compressible_layers(before), ct.compressible_layers(after), strict=True):
            fresh = type(new)(state_dim=new.state_dim, **new.hyper_parameters())
            for label, layer in (("before", old), ("after", new), ("fresh", fresh)):
                print(f"  {name:<16} {label:<7} {layer_summary(layer)}")
    metrics = record.metrics()
    if cuts:
        first = cuts[0][0]
        value = next(key for key in metrics["evaluations"][0] if key.startswith("val_"))
        print(f"step, training loss, {value} around the first cut:")
        for evaluation in metrics["evaluations"]:
            if first - 40 <= evaluation["step"] <= first + 300:
                print(f"  {evaluation['step']:>6} {evaluation['train_loss']:.4g} {evaluation[value]:.4g}")
    horizon = metrics["horizon"]
    print(f"final layers; states holding 50/70/90/99% of the squared HSV energy (horizon {horizon}):")
    spectra = ct.hankel_singular_values(model, horizon=horizon)
    for name, layer in ct.compressible_layers(model):
        hsv = np.sort(spectra[name].detach().cpu().numpy())[::-1]
        kept = np.cumsum(hsv**2) / np.sum(hsv**2)
        ranks = [int(np.searchsorted(kept, share)) + 1 for share in (0.5, 0.7, 0.9, 0.99)]
        print(f"  {name:<16} {layer_summary(layer)} {ranks}")
    test = next(key for key in metrics if key.startswith("test_") and not key.endswith("_best_val"))
    print(f"{test} {metrics[test]:.4g}, final state dims {metrics['final_state_dims']}")
    return cuts


if __name__ == "__main__":
    main(sys.argv[1:])

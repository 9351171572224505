"""Training objectives of the PyTorch baselines: Hankel nuclear norm (HNN) regularisation and
knowledge distillation.

- HNN: the task loss plus ``hnn_weight * sum over layers of sum(HSVs)``, the HSVs computed
  through ``compressm_core`` (closed-form Gramians, Cholesky factors, SVD) at every step, in
  double precision, differentiable with respect to the layers' parameters.
- Distillation: ``(1 - w) * task loss + w * soft loss`` against a trained teacher loaded from
  a checkpoint, whose forward pass runs at every step (and so counts in the wall-clock).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

import compressm_core as cc
import compressm_torch as ct
from compressm_core.layers import Gramians, analysed_system

from .checkpoint_torch import load_model
from .config import TrainConfig

#: ``(model, x, y) -> (loss, metric)``: accuracy for classification, MSE for regression.
Objective = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, float]]


def _double(system: cc.DiagonalStateSpace) -> cc.DiagonalStateSpace:
    """``(poles, B, C)`` in complex128, keeping the autograd graph (D does not enter the HSVs)."""
    return cc.DiagonalStateSpace(
        *(t.to(torch.complex128) for t in (system.poles, system.B, system.C))
    )


def hankel_nuclear_norm(model: nn.Module, *, gramians: Gramians = "complex") -> Tensor:
    """``sum over SSM layers of sum(HSVs)`` in float64, differentiable with respect to the
    layers' parameters; layers of equal shape are analysed in one batch."""
    groups: dict[tuple[int, int, int], list[cc.DiagonalStateSpace]] = {}
    for _, layer in ct.reducible_layers(model):
        system = analysed_system(
            _double(layer.ssm_system()), gramians, real_output=layer.real_output
        )
        groups.setdefault((system.n, system.m, system.p), []).append(system)
    sums = []
    for systems in groups.values():
        stacked = cc.DiagonalStateSpace(
            *(torch.stack([getattr(s, k) for s in systems]) for k in ("poles", "B", "C"))
        )
        sums.append(cc.hankel_singular_values(stacked).sum())
    return torch.stack(sums).sum()


def distillation_loss(
    student: Tensor,
    teacher: Tensor,
    target: Tensor,
    kind: str,
    *,
    weight: float,
    temperature: float,
) -> Tensor:
    """``(1 - weight) * hard + weight * soft``. Classification: hard = cross-entropy with the
    labels, soft = ``T^2 KL(softmax(teacher / T) || softmax(student / T))`` (batch mean);
    regression: hard = MSE to the targets, soft = MSE to the teacher's outputs."""
    if kind == "classification":
        hard = F.cross_entropy(student, target)
        log_student = F.log_softmax(student / temperature, dim=-1)
        log_teacher = F.log_softmax(teacher / temperature, dim=-1)
        soft = (
            F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
            * temperature**2
        )
    else:
        hard, soft = F.mse_loss(student, target), F.mse_loss(student, teacher)
    return (1 - weight) * hard + weight * soft


def _with_hnn(objective: Objective, weight: float, gramians: Gramians) -> Objective:
    def penalised(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, float]:
        loss, metric = objective(model, x, y)
        return loss + weight * hankel_nuclear_norm(model, gramians=gramians).to(loss.dtype), metric

    return penalised


def _distilled(kind: str, teacher: nn.Module, weight: float, temperature: float) -> Objective:
    def objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, float]:
        output = model(x)
        with torch.no_grad():
            soft_target = teacher.to(x.device)(x)
        if soft_target.shape != output.shape:
            msg = f"the teacher's outputs have shape {tuple(soft_target.shape)}, the student's {tuple(output.shape)}"
            raise ValueError(msg)
        loss = distillation_loss(
            output, soft_target, y, kind, weight=weight, temperature=temperature
        )
        if kind == "classification":
            return loss, float((output.argmax(-1) == y).float().mean())
        return loss, float(F.mse_loss(output, y))

    return objective


def load_teacher(path: str) -> nn.Module:
    """The trained model at ``path``, frozen, in evaluation mode."""
    teacher = load_model(path)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def training_objective(config: TrainConfig, kind: str, task: Objective) -> Objective:
    """The objective of a run: ``task`` (the plain task loss), replaced by the distillation
    loss when ``distill_weight > 0``, plus the HNN penalty when ``hnn_weight > 0``."""
    objective = task
    if config.distill_weight > 0:
        objective = _distilled(
            kind, load_teacher(config.teacher), config.distill_weight, config.distill_temperature
        )
    if config.hnn_weight > 0:
        objective = _with_hnn(objective, config.hnn_weight, config.gramians)
    return objective

"""Carry an optimizer over to a compressed model, saying what happens to each piece of state.

The rule:
- every parameter outside the reduced layers keeps its state exactly (moments, step
  counts, momentum buffers: cloned tensors);
- the parameters of a reduced layer have new shapes and a new basis (balanced truncation
  mixes states), so no entry of their old moments corresponds to a new entry: they start
  afresh, with no state, exactly like parameters at the first step (Adam: zero moments and
  step 0, so bias correction applies again; SGD: no momentum buffer yet);
- parameter groups (learning rates, weight decay, ...) are kept, matched by parameter name.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from torch import nn


def _clone_state(state: dict) -> dict:
    return {key: value.clone() if torch.is_tensor(value) else value for key, value in state.items()}


def _is_reset(name: str, reset: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in reset)


def transfer_optimizer(
    optimizer: torch.optim.Optimizer,
    old_parameters: Mapping[str, nn.Parameter],
    new_parameters: Mapping[str, nn.Parameter],
    *,
    reset: tuple[str, ...] = (),
) -> torch.optim.Optimizer:
    """A new optimizer of the same class over ``new_parameters`` (see the module docstring).

    Both mappings are ``dict(model.named_parameters())`` of the model before and after the
    reduction; parameters are matched by qualified name. ``reset`` names the modules whose
    parameters start afresh. ``optimizer`` is not modified.
    """
    old_names = {id(param): name for name, param in old_parameters.items()}
    groups = []
    carried: dict[str, dict] = {}
    for group in optimizer.param_groups:
        names = []
        for param in group["params"]:
            name = old_names.get(id(param))
            if name is None or name not in new_parameters:
                msg = f"the optimizer holds a parameter ({name or 'unnamed'}) the new model does not have"
                raise ValueError(msg)
            names.append(name)
            if param in optimizer.state and not _is_reset(name, reset):
                carried[name] = _clone_state(optimizer.state[param])
        settings = {key: value for key, value in group.items() if key != "params"}
        groups.append({**settings, "params": [new_parameters[name] for name in names]})
    accepted = inspect.signature(type(optimizer)).parameters
    defaults = {key: value for key, value in optimizer.defaults.items() if key in accepted}
    new_optimizer = type(optimizer)(groups, **defaults)
    for name, state in carried.items():
        new_optimizer.state[new_parameters[name]] = state
    return new_optimizer

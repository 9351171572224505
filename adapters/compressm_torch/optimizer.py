"""Carry an optimizer over to a compressed model, saying what happens to each piece of state.

The rule:
- every parameter outside the reduced layers keeps its state exactly (moments, step
  counts, momentum buffers: cloned tensors);
- the parameters of a reduced layer (``optimizer_state``):
  - ``"reset"`` (default): they start afresh, with no state, exactly like parameters at the
    first step (Adam: zero moments and step 0, so bias correction applies again; SGD: no
    momentum buffer yet). Balanced truncation mixes states into a new basis, so no entry of
    the old moments corresponds to a new entry;
  - ``"slice"`` (what the authors' ``truncate_optimizer_state`` does): every state tensor
    keeps the entries of the kept coordinates, and the step count is kept. A layer reduced
    by index selection (selective layers) keeps exactly the moments of the entries its
    ``with_states`` kept (``selection_indices`` finds them); a balanced truncation keeps, along
    each axis that shrank, the first ``r`` entries: the moments of the first ``r`` old diagonal
    states, which are not the new (re-diagonalised balanced) states, so only their scale
    carries over. A tensor that cannot be sliced so (an axis grew) gives fresh state;
- parameter groups (learning rates, weight decay, ...) are kept, matched by parameter name,
  and LR schedulers can be pointed at the new optimizer (``hand_over_schedulers``).
"""

from __future__ import annotations

import copy
import functools
import inspect
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn


def _clone_state(state: dict) -> dict:
    return {key: value.clone() if torch.is_tensor(value) else value for key, value in state.items()}


def _layer_of(name: str, layers: Iterable[str]) -> str | None:
    """The layer of ``layers`` that holds the parameter ``name`` (qualified), if any."""
    return next((layer for layer in layers if name == layer or name.startswith(layer + ".")), None)


def sliced_tensor(old: Tensor, shape: Sequence[int]) -> Tensor | None:
    """``old`` cut down to ``shape`` by keeping the first entries along every axis that shrank;
    None when an axis grew or the number of axes differs."""
    if old.ndim != len(shape) or any(n > o for o, n in zip(old.shape, shape, strict=True)):
        return None
    result = old
    for axis, (o, n) in enumerate(zip(old.shape, shape, strict=True)):
        if n < o:
            result = result.narrow(axis, 0, n)
    return result.clone()


@torch.no_grad()
def selection_indices(layer: nn.Module, keep: Sequence[int]) -> dict[str, Tensor]:
    """Which entries of ``layer``'s parameters ``layer.with_states(keep)`` keeps: for every
    parameter of the new layer (name within the layer), the flat index of each of its
    entries in the old parameter. Found by numbering the old entries in a copy and letting
    ``with_states`` select them; a ValueError names the layer if it does more than select."""
    if not isinstance(layer, nn.Module):
        msg = f"optimizer_state='slice' needs selective layers that are modules; {type(layer).__name__} is a view: use 'reset'"
        raise ValueError(msg)
    probe = copy.deepcopy(layer)
    for parameter in probe.parameters():
        parameter.copy_(torch.arange(parameter.numel()).reshape(parameter.shape))
    sizes = {name: p.numel() for name, p in probe.named_parameters()}
    indices = {}
    for name, parameter in probe.with_states(list(keep)).named_parameters():
        index = parameter.detach().round().long()
        if not torch.equal(index.to(parameter.dtype), parameter) or index.min() < 0 or index.max() >= sizes[name]:
            msg = f"`with_states` of {type(layer).__name__} does not select entries of `{name}`; use optimizer_state='reset'"
            raise ValueError(msg)
        indices[name] = index
    return indices


def _sliced_state(state: dict, shape: Sequence[int], index: Tensor | None) -> dict:
    """A parameter's state with every tensor of the old parameter's shape cut to ``shape``
    (the flat ``index`` of the kept entries, or the leading entries; scalars such as Adam's
    ``step`` kept); empty (fresh) if one cannot be cut."""
    result = {}
    for key, value in state.items():
        if torch.is_tensor(value) and value.ndim > 0:
            value = sliced_tensor(value, shape) if index is None else value.reshape(-1)[index.to(value.device)]
            if value is None:
                return {}
        elif torch.is_tensor(value):
            value = value.clone()
        result[key] = value
    return result


def transfer_optimizer(
    optimizer: torch.optim.Optimizer,
    old_parameters: Mapping[str, nn.Parameter],
    new_parameters: Mapping[str, nn.Parameter],
    *,
    reset: tuple[str, ...] = (),
    sliced: Mapping[str, Mapping[str, Tensor] | None] | None = None,
) -> torch.optim.Optimizer:
    """A new optimizer of the same class over ``new_parameters`` (see the module docstring).

    Both mappings are ``dict(model.named_parameters())`` of the model before and after the
    reduction; parameters are matched by qualified name. ``reset`` names the modules whose
    parameters start afresh; ``sliced`` maps the modules whose state is cut to the
    ``selection_indices`` of their parameters (index selection) or to None (balanced
    truncation: leading entries). ``optimizer`` is not modified.
    """
    sliced = dict(sliced or {})
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
            if param not in optimizer.state or _layer_of(name, reset) is not None:
                continue
            layer = _layer_of(name, sliced)
            state = optimizer.state[param]
            if layer is not None and new_parameters[name].shape != param.shape:
                index = None if sliced[layer] is None else sliced[layer][name[len(layer) + 1 :]]
                carried[name] = _sliced_state(state, new_parameters[name].shape, index)
            else:
                carried[name] = _clone_state(state)
        settings = {key: value for key, value in group.items() if key != "params"}
        groups.append({**settings, "params": [new_parameters[name] for name in names]})
    accepted = inspect.signature(type(optimizer)).parameters
    defaults = {key: value for key, value in optimizer.defaults.items() if key in accepted}
    new_optimizer = type(optimizer)(groups, **defaults)
    for name, state in carried.items():
        if state:
            new_optimizer.state[new_parameters[name]] = state
    return new_optimizer


def hand_over_schedulers(schedulers: Iterable[Any], optimizer: torch.optim.Optimizer) -> None:
    """Point every LR scheduler of ``schedulers`` (``torch.optim.lr_scheduler``) at ``optimizer``.

    A scheduler keeps its position (``last_epoch``) and base learning rates; the new
    optimizer's parameter groups carry the old ones' current and initial learning rates, so
    the next ``scheduler.step()`` continues the schedule on the new optimizer. Its ``step`` is
    marked as schedulers mark their optimizer's, which their order check reads.
    """
    schedulers = list(schedulers)
    if schedulers:
        _track_step_calls(optimizer)
    for scheduler in schedulers:
        scheduler.optimizer = optimizer


def _track_step_calls(optimizer: torch.optim.Optimizer) -> None:
    """What an LR scheduler does to its optimizer when it is built: ``optimizer.step`` notes
    that it was called (``_opt_called``), and says so (``_wrapped_by_lr_sched``)."""
    if hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        return
    owner, step = weakref.ref(optimizer), type(optimizer).step

    @functools.wraps(step)
    def tracked(*args: Any, **kwargs: Any) -> Any:
        target = owner()
        target._opt_called = True
        return step(target, *args, **kwargs)

    tracked._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
    optimizer.step = tracked  # type: ignore[method-assign]
    optimizer._opt_called = True  # steps were taken before the hand-over

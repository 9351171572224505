"""A run's configuration as a TOML file: ``config.toml`` beside metrics.json, read back by
``compressm ... --config config.toml`` (or ``read_config``) to rerun the run exactly.

The keys are the fields of ``TrainConfig``. TOML has no null: a field that is None is
written as ``"none"`` where its default is not None (``tau = "none"``: no compression)
and left out where None is its default.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import tomli_w

from .config import TrainConfig
from .outputs import write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

NONE = "none"
_FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def write_config(config: TrainConfig, path: Path, *, command: str = "train", options: dict[str, Any] | None = None) -> Path:
    """Write every field of ``config`` to ``path`` as TOML (tuples as arrays, None as above),
    then ``options`` of ``compressm command`` that are no field (``seeds``, ``arms``, ``taus``)."""
    table = {}
    for name, field in _FIELDS.items():
        value = getattr(config, name)
        if value is None:
            if field.default is not None:
                table[name] = NONE
        else:
            table[name] = list(value) if isinstance(value, tuple) else value
    table |= {name: list(value) if isinstance(value, tuple) else value for name, value in (options or {}).items()}
    header = f"# compressm run configuration; rerun with: compressm {command} --config config.toml\n"
    write_text(path, header + tomli_w.dumps(table))
    return path


def read_options(path: Path) -> dict[str, Any]:
    """The top-level table of the TOML file ``path``; a missing or malformed file is a ValueError."""
    try:
        with Path(path).open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        msg = f"`--config` {path} does not exist"
        raise ValueError(msg) from None
    except tomllib.TOMLDecodeError as error:
        msg = f"`--config` {path} is not valid TOML: {error}"
        raise ValueError(msg) from None


def apply_options(base: TrainConfig, options: dict[str, Any], source: Path | str) -> TrainConfig:
    """``base`` with the fields named in ``options`` replaced (``"none"`` -> None, arrays ->
    tuples); a key that is no field of ``TrainConfig`` is a ValueError naming it and ``source``."""
    unknown = [key for key in options if key not in _FIELDS]
    if unknown:
        msg = f"`--config` {source}: unknown key {unknown[0]!r}; keys are the fields of a run's config.toml"
        raise ValueError(msg)
    return base.replace(**{key: _field_value(key, value) for key, value in options.items()})


def read_config(path: Path, base: TrainConfig | None = None) -> TrainConfig:
    """The ``TrainConfig`` written to ``path`` by ``write_config`` (fields missing from the
    file are taken from ``base``, default ``TrainConfig()``)."""
    return apply_options(base or TrainConfig(), read_options(path), path)


def _field_value(name: str, value: Any) -> Any:
    if value == NONE and "None" in str(_FIELDS[name].type):
        return None
    return tuple(value) if isinstance(value, list) else value

"""The container every task returns: NumPy train/validation/test splits of sequences.

Inputs are float32 of shape (N, L, d_input). Targets are int64 class labels (N,) for
classification, or float32 for regression: sequences (N, L, d_output), one target per step,
or (N, d_output), one per sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("classification", "regression")


@dataclass(frozen=True, eq=False)
class TrueSystem:
    """The discrete-time LTI system that generated a synthetic task.

    x[k+1] = A x[k] + B u[k],  y[k] = C x[k] + D u[k]; A (n, n), B (n, m), C (p, n),
    D (p, m), and ``hsv`` (n,) its Hankel singular values, descending.
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    hsv: np.ndarray

    @property
    def order(self) -> int:
        """The state dimension n (the system is minimal, so this is its true order)."""
        return self.A.shape[0]


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Train/validation/test splits of one task, with what a model needs to know about it."""

    name: str
    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None = None
    truth: TrueSystem | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"`kind` {self.kind!r} is unknown; choose one of: {', '.join(KINDS)}")
        if (self.kind == "classification") != (self.num_classes is not None):
            raise ValueError(
                f"`num_classes` {self.num_classes} does not fit `kind` {self.kind!r}: "
                "classification needs it, regression must leave it None"
            )
        for split in ("train", "val", "test"):
            self._check_split(split, getattr(self, f"x_{split}"), getattr(self, f"y_{split}"))

    def _check_split(self, split: str, x: np.ndarray, y: np.ndarray) -> None:
        if x.dtype != np.float32 or x.ndim != 3:
            raise ValueError(f"`x_{split}` must be float32 (N, L, d), got {x.dtype} {x.shape}")
        if x.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(
                f"`x_{split}` has (L, d) = {x.shape[1:]}, but `x_train` has {self.x_train.shape[1:]}"
            )
        if len(y) != len(x):
            raise ValueError(f"`y_{split}` has {len(y)} targets for {len(x)} sequences")
        if self.kind == "classification":
            if y.dtype != np.int64 or y.ndim != 1:
                raise ValueError(f"`y_{split}` must be int64 labels (N,), got {y.dtype} {y.shape}")
            if y.size and not 0 <= y.min() <= y.max() < self.num_classes:
                raise ValueError(
                    f"`y_{split}` has labels in [{y.min()}, {y.max()}], "
                    f"outside [0, num_classes={self.num_classes})"
                )
        if self.kind == "regression" and (
            y.dtype != np.float32
            or y.ndim not in (2, 3)
            or (y.ndim == 3 and y.shape[1] != x.shape[1])
            or y.shape[1:] != self.y_train.shape[1:]
        ):
            raise ValueError(
                f"`y_{split}` must be float32 (N, L={x.shape[1]}, d_output) or (N, d_output) like "
                f"`y_train` {self.y_train.shape}, got {y.dtype} {y.shape}"
            )

    @property
    def seq_len(self) -> int:
        """The sequence length L."""
        return self.x_train.shape[1]

    @property
    def d_input(self) -> int:
        """Input channels per time step."""
        return self.x_train.shape[2]

    @property
    def d_output(self) -> int:
        """Model outputs: the number of classes, or output channels (per step or per sequence)."""
        return self.num_classes if self.num_classes is not None else self.y_train.shape[-1]

    @property
    def pooling(self) -> str:
        """How a model reduces its outputs over time: "none" for one target per step,
        "mean" for one per sequence (labels, or regression targets (N, d_output))."""
        return "none" if self.kind == "regression" and self.y_train.ndim == 3 else "mean"

    def describe(self) -> str:
        """A one-line summary, e.g. for logs."""
        target = (
            f"{self.num_classes} classes"
            if self.kind == "classification"
            else (f"d_output={self.d_output}")
        )
        order = f", true order {self.truth.order}" if self.truth is not None else ""
        return (
            f"{self.name}: {self.kind}, {target}, L={self.seq_len}, d_input={self.d_input}{order}; "
            f"train {len(self.x_train)} / val {len(self.x_val)} / test {len(self.x_test)}"
        )

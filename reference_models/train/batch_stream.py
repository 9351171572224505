"""The endless stream of shuffled training batches, with a state a checkpoint can hold."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tasks import batches


class BatchStream:
    """Shuffled batches of ``(x, y)``, epoch after epoch (a new permutation from a generator
    seeded with ``seed`` at each epoch, the last short batch dropped when the split holds at
    least one full batch).

    ``state()`` is the generator's state at the start of the current epoch and the number of
    batches drawn in it; ``restore(state)`` redraws that epoch's permutation and skips those
    batches, so the stream continues exactly where the checkpointed one stood.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
        self._x, self._y, self._batch_size = x, y, batch_size
        self._rng = np.random.default_rng(seed)
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch_start = self._rng.bit_generator.state
        self._position = 0
        self._epoch = batches(self._x, self._y, self._batch_size, rng=self._rng, shuffle=True,
                              drop_last=len(self._x) >= self._batch_size)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        batch = next(self._epoch, None)
        if batch is None:
            self._start_epoch()
            batch = next(self._epoch)
        self._position += 1
        return batch

    def state(self) -> dict[str, Any]:
        return {"epoch_start": self._epoch_start, "position": self._position}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state()``; ValueError naming the field when it does not fit."""
        try:
            self._rng.bit_generator.state = state["epoch_start"]
            position = int(state["position"])
        except (KeyError, TypeError, ValueError) as error:
            msg = f"checkpoint field `batches` is malformed: {error}"
            raise ValueError(msg) from None
        self._start_epoch()
        for _ in range(position):
            next(self)

"""Trainers that run the compress-during-training schedule, with metrics, checkpoints and plots."""

from .config import TrainConfig
from .record import RunRecord

__all__ = ["RunRecord", "TrainConfig"]

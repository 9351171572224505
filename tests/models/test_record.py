"""The run record's choice of the best validation step: the authors' rule (a kept cut restarts
the search, so the reported model has the final dims), checked on hand-made evaluations."""

from types import SimpleNamespace

from reference_models.train.config import TrainConfig
from reference_models.train.record import RunRecord


def _cut(step: int, old_dim: int, new_dim: int) -> SimpleNamespace:
    reduction = SimpleNamespace(name="blocks.0.ssm", hsv=[1.0] * old_dim, old_dim=old_dim, new_dim=new_dim, error_bound=0.1)
    return SimpleNamespace(step=step, reductions=(reduction,), metric_before=0.9, metric_after=0.4)


def test_best_validation_step_is_chosen_after_the_last_cut():
    record = RunRecord.start(TrainConfig(task="digits", n_layers=1, state_dim=8), "classification", [8])
    assert record.evaluation(100, 1.0, 0.90, [8])
    record.reduction_event(_cut(150, 8, 4))
    assert record.evaluation(200, 2.0, 0.60, [4])  # worse than before the cut, yet the best at 4 states
    assert not record.evaluation(300, 3.0, 0.55, [4])
    assert record.evaluation(400, 4.0, 0.70, [4])
    assert record.best_val_step == 400


def test_best_validation_step_without_cuts_is_the_maximum():
    record = RunRecord.start(TrainConfig(task="digits", n_layers=1, state_dim=8), "regression", [8])
    for step, mse in ((100, 0.5), (200, 0.2), (300, 0.3)):
        record.evaluation(step, 1.0, mse, [8])
    assert record.best_val_step == 200

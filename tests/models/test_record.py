"""The run record's choice of the best validation step: the authors' rule (a kept cut restarts
the search, so the reported model has the final dims), checked on hand-made evaluations; what
it and the printed line say of a cut."""

from compressm_core.layers import CompressionEvent, Judgement, LayerReduction
from reference_models.train.config import TrainConfig
from reference_models.train.record import RunRecord
from reference_models.train.run_log import describe_event


def _cut(step: int, old_dim: int, new_dim: int, **moved) -> CompressionEvent:
    reduction = LayerReduction("blocks.0.ssm", old_dim, new_dim, [1.0] * old_dim, 0.1, **moved)
    return CompressionEvent(step, (reduction,), 0.9, 0.4)


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


def test_a_cut_that_moved_poles_in_says_so_in_the_record_and_the_printed_line():
    moved = {"poles_moved_in": 2, "moved_from_modulus": 1.0026644, "moved_to_modulus": 0.9724660}
    record = RunRecord.start(TrainConfig(task="digits", n_layers=1, state_dim=8), "classification", [8])
    record.reduction_event(_cut(150, 8, 6, **moved))
    entry = record.reductions[0]
    assert {key: entry[key] for key in moved} == moved
    assert describe_event(_cut(150, 8, 6, **moved)) == (
        "step 150: cut blocks.0.ssm 8 -> 6 (2 poles moved in to |lambda| = 0.972466, from up to 1.00266)"
        " (val 0.9 -> 0.4 right after)"
    )
    one = {**moved, "poles_moved_in": 1}
    assert "(1 pole moved in to |lambda| = 0.972466" in describe_event(_cut(150, 8, 6, **one))
    assert describe_event(_cut(150, 8, 4)) == "step 150: cut blocks.0.ssm 8 -> 4 (val 0.9 -> 0.4 right after)"
    judged = Judgement(200, 150, _cut(150, 8, 6, **moved).reductions, 0.9, 0.85, False)
    assert describe_event(judged) == "step 200: cut of step 150 (blocks.0.ssm 8 -> 6) kept: val 0.9 -> 0.85"
    record.reduction_event(_cut(300, 6, 4))
    assert (record.reductions[1]["poles_moved_in"], record.reductions[1]["moved_from_modulus"]) == (0, None)

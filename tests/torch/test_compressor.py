"""The Compressor: the schedule inside a training loop, the safety net after recovery, the
optimizer state, LR schedulers, and its state for checkpoints."""

import json
from dataclasses import replace

import pytest
import torch

from compressm_core.layers import CompressionEvent, Judgement
from compressm_core.schedule import ReductionSchedule
from compressm_torch import Compressor
from reference_models.torch_models import SequenceModel


def _setup(state_dim=32):
    torch.manual_seed(0)
    model = SequenceModel(d_input=1, d_output=2, d_model=8, state_dim=state_dim, n_layers=2).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _train(model, optimizer)
    return model, optimizer


def _train(model, optimizer, steps=1):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 12, 1, generator=generator, dtype=torch.float64)
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()


def _dims(model):
    return [block.ssm.state_dim for block in model.blocks]


def test_reduces_only_at_check_steps_and_keeps_cuts_without_a_net():
    model, optimizer = _setup()
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=0.3))
    assert compressor.step(3, model, optimizer, lambda m: 1.0) == (model, optimizer)
    metric = iter([0.9, 0.1])  # a deep dip right after the cut: tolerance mode keeps it
    new_model, new_optimizer = compressor.step(5, model, optimizer, lambda m: next(metric))
    assert new_model is not model and new_optimizer is not optimizer
    assert all(d < 32 for d in _dims(new_model))
    assert _dims(model) == [32, 32]
    (event,) = compressor.events
    assert isinstance(event, CompressionEvent) and (event.step, event.metric_before, event.metric_after) == (5, 0.9, 0.1)
    assert [r.new_dim for r in event.reductions] == _dims(new_model)
    assert compressor.pending is None and compressor.state.pending is None
    assert compressor.step(10, new_model, new_optimizer, lambda m: 0.0)[0] is not new_model or not compressor.state.stopped


def test_the_net_judges_after_recovery_and_rolls_back_then_stops():
    model, optimizer = _setup()
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.2, tau=0.3, safety_net=True)
    compressor = Compressor(schedule)
    metric = iter([0.90, 0.50])  # before the cut, just after it: no judgement yet
    reduced, reduced_optimizer = compressor.step(5, model, optimizer, lambda m: next(metric))
    assert reduced is not model and compressor.pending.model is model and compressor.pending.optimizer is optimizer
    assert compressor.step(7, reduced, reduced_optimizer, lambda m: 0.0) == (reduced, reduced_optimizer)
    restored = compressor.step(10, reduced, reduced_optimizer, lambda m: 0.85)  # 0.05 below 0.90 > 0.02
    assert restored == (model, optimizer)
    judgement = compressor.events[-1]
    assert isinstance(judgement, Judgement)
    assert (judgement.step, judgement.cut_step, judgement.metric_before, judgement.metric_after) == (10, 5, 0.90, 0.85)
    assert judgement.rolled_back and compressor.state.stopped and compressor.pending is None
    assert compressor.step(15, model, optimizer, lambda m: 1.0) == (model, optimizer)
    assert len(compressor.events) == 2


def test_a_recovered_cut_is_kept_and_the_next_check_proceeds():
    model, optimizer = _setup()
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.2, tau=0.3, safety_net=True)
    compressor = Compressor(schedule)
    reduced, reduced_optimizer = compressor.step(5, model, optimizer, lambda m: 0.9)
    again, _ = compressor.step(10, reduced, reduced_optimizer, lambda m: 0.89)  # within 0.02: kept
    kinds = [type(e).__name__ for e in compressor.events]
    assert kinds[:2] == ["CompressionEvent", "Judgement"] and not compressor.events[1].rolled_back
    assert compressor.state.reductions >= 1 and not compressor.state.stopped
    if len(compressor.events) == 3:  # the check at step 10 cut again
        assert again is not reduced and compressor.pending.model is reduced


def test_no_check_while_a_judgement_is_pending_and_skip_tries_again():
    model, optimizer = _setup()
    schedule = ReductionSchedule(
        total_steps=100, interval=5, reduce_until=0.3, tau=0.3, safety_net=True, recovery_steps=10, after_rollback="skip"
    )
    compressor = Compressor(schedule)
    reduced, reduced_optimizer = compressor.step(5, model, optimizer, lambda m: 0.9)
    assert compressor.step(10, reduced, reduced_optimizer, lambda m: 0.9) == (reduced, reduced_optimizer)
    assert len(compressor.events) == 1  # step 10 is a check step, but the cut of step 5 awaits judgement
    assert compressor.step(15, reduced, reduced_optimizer, lambda m: 0.5) == (model, optimizer)  # rolled back
    assert not compressor.state.stopped
    again, _ = compressor.step(20, model, optimizer, lambda m: 0.9)  # skip: the next check cuts again
    assert again is not model and isinstance(compressor.events[-1], CompressionEvent)


def test_gate_skips_small_cuts():
    model, optimizer = _setup()
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=1e-9))
    assert compressor.step(5, model, optimizer, lambda m: 1.0) == (model, optimizer)
    assert compressor.events == []


def test_fixed_mode_cuts_a_fraction_and_pragmatic_mode_adds_the_net():
    model, optimizer = _setup()
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, mode="fixed", fraction=0.25))
    new_model, _ = compressor.step(5, model, optimizer, lambda m: 1.0)
    assert _dims(new_model) == [24, 24] and compressor.pending is None
    pragmatic = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, mode="pragmatic"))
    new_model, _ = pragmatic.step(5, model, optimizer, lambda m: 1.0)
    assert _dims(new_model) == [28, 28] and pragmatic.pending.model is model  # 10% cuts, judged later


def _moments(optimizer, parameter):
    return {key: value.clone() for key, value in optimizer.state[parameter].items()}


def test_reset_gives_the_reduced_layers_fresh_state_and_slice_keeps_the_leading_moments():
    model, optimizer = _setup()
    _train(model, optimizer, steps=3)
    old = dict(model.named_parameters())
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, mode="fixed", fraction=0.25)
    reset_model, reset_optimizer = Compressor(schedule).step(5, model, optimizer, lambda m: 1.0)
    new = dict(reset_model.named_parameters())
    assert new["blocks.0.ssm.nu_log"] not in reset_optimizer.state
    assert torch.equal(reset_optimizer.state[new["encoder.weight"]]["exp_avg"], optimizer.state[old["encoder.weight"]]["exp_avg"])
    sliced_model, sliced_optimizer = Compressor(replace(schedule, optimizer_state="slice")).step(5, model, optimizer, lambda m: 1.0)
    new = dict(sliced_model.named_parameters())
    for name in ("blocks.0.ssm.nu_log", "blocks.0.ssm.B_re", "blocks.1.ssm.C_im"):
        state, old_state = sliced_optimizer.state[new[name]], optimizer.state[old[name]]
        r = new[name].shape[0] if "C_" not in name else new[name].shape[1]
        expected = old_state["exp_avg"][:r] if "C_" not in name else old_state["exp_avg"][:, :r]  # the authors' rule
        assert torch.equal(state["exp_avg"], expected) and state["exp_avg"].shape == new[name].shape
        assert torch.equal(state["step"], old_state["step"])  # the step count is kept


def test_selective_layers_slice_exactly_the_moments_of_the_kept_states():
    from reference_models.torch_models.selective import SelectiveSequenceModel

    torch.manual_seed(0)
    model = SelectiveSequenceModel(d_input=1, d_output=2, d_model=6, state_dim=8, n_layers=1).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    calibration = torch.randn(3, 10, 1, dtype=torch.float64)
    for _ in range(3):
        optimizer.zero_grad()
        model(calibration).pow(2).mean().backward()
        optimizer.step()
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, mode="fixed", fraction=0.5)
    compressor = Compressor(replace(schedule, optimizer_state="slice"), calibration=calibration)
    new_model, new_optimizer = compressor.step(5, model, optimizer, lambda m: 1.0)
    (reduction,) = compressor.events[0].reductions
    keep = list(reduction.kept)
    assert len(keep) == 4 and new_model.blocks[0].ssm.state_dim == 4
    ssm = "blocks.0.ssm"
    old, new = dict(model.named_parameters()), dict(new_model.named_parameters())
    dt_rank, n, kept = model.blocks[0].ssm.dt_rank, 8, torch.tensor(keep)
    rows = torch.cat([torch.arange(dt_rank), dt_rank + kept, dt_rank + n + kept])  # delta, B, C rows of x_proj

    def moment(parameters, optimizer_, name):
        return optimizer_.state[parameters[f"{ssm}.{name}"]]["exp_avg_sq"]

    # the oracle: the old moments indexed by hand
    assert torch.equal(moment(new, new_optimizer, "A_log"), moment(old, optimizer, "A_log")[:, kept])
    assert torch.equal(moment(new, new_optimizer, "x_proj.weight"), moment(old, optimizer, "x_proj.weight")[rows])
    assert torch.equal(moment(new, new_optimizer, "D"), moment(old, optimizer, "D"))
    step = new_optimizer.state[new[f"{ssm}.A_log"]]["step"]
    assert torch.equal(step, optimizer.state[old[f"{ssm}.A_log"]]["step"])


@pytest.mark.parametrize(
    "make", [lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.9**s), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 20)]
)
def test_lr_schedulers_are_handed_over_and_continue_their_schedule(make):
    model, optimizer = _setup()
    reference = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    reference_scheduler = make(reference)
    scheduler = make(optimizer)
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=0.3))
    lrs, expected = [], []
    for step in range(1, 12):
        _train(model, optimizer)
        reference.step()
        scheduler.step()
        reference_scheduler.step()
        model, optimizer = compressor.step(step, model, optimizer, lambda m: 1.0, schedulers=[scheduler])
        lrs.append(optimizer.param_groups[0]["lr"])
        expected.append(reference.param_groups[0]["lr"])
    assert compressor.events and scheduler.optimizer is optimizer
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_a_rollback_hands_the_schedulers_back():
    model, optimizer = _setup()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5**s)
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.2, tau=0.3, safety_net=True))
    reduced, reduced_optimizer = compressor.step(5, model, optimizer, lambda m: 0.9, schedulers=[scheduler])
    assert scheduler.optimizer is reduced_optimizer
    for _ in range(5):
        scheduler.step()
    restored = compressor.step(10, reduced, reduced_optimizer, lambda m: 0.1, schedulers=[scheduler])
    assert restored == (model, optimizer) and scheduler.optimizer is optimizer
    assert optimizer.param_groups[0]["lr"] == reduced_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**5)


def _run(compressor, model, optimizer, steps, metrics):
    for step in steps:
        _train(model, optimizer)
        model, optimizer = compressor.step(step, model, optimizer, lambda m, s=step: metrics[s])
    return model, optimizer


def test_state_dict_round_trip_reproduces_the_decisions():
    schedule = ReductionSchedule(total_steps=60, interval=5, reduce_until=0.5, tau=0.2, safety_net=True, after_rollback="skip")
    metrics = {s: 0.9 if s not in (15, 25) else 0.5 for s in range(1, 61)}
    model, optimizer = _setup()
    straight = Compressor(schedule)
    model, optimizer = _run(straight, model, optimizer, range(1, 61), metrics)

    model, optimizer = _setup()
    first = Compressor(schedule)
    model, optimizer = _run(first, model, optimizer, range(1, 13), metrics)
    assert first.state.pending is not None  # a cut awaits judgement across the "restart"
    data = json.loads(json.dumps(first.state_dict()))
    resumed = Compressor(schedule)
    with pytest.raises(ValueError, match="pending"):
        resumed.load_state_dict(data)
    resumed.load_state_dict(data, pending_model=first.pending.model, pending_optimizer=first.pending.optimizer)
    model, optimizer = _run(resumed, model, optimizer, range(13, 61), metrics)

    def summary(events):
        return [(type(e).__name__, e.step, [r.new_dim for r in e.reductions], e.rolled_back) for e in events]

    assert summary(resumed.events) == summary(straight.events)
    assert any(e.rolled_back for e in straight.events) and resumed.state == straight.state


def test_certified_timing_cuts_once_the_certificate_holds_and_the_metric_left_chance():
    model, optimizer = _setup()
    schedule = ReductionSchedule(
        total_steps=100, interval=5, reduce_until=0.5, tau=0.3, timing="certified", certify_over=2, chance_margin=0.1
    )
    compressor = Compressor(schedule)
    metric = {"value": 0.5}
    evaluate = lambda m: metric["value"]  # noqa: E731
    # The model does not change between checks: every movement is 0, so the certificate
    # needs only two earlier checks; the chance level is the first metric seen (0.5).
    for step in (1, 5, 10):
        assert compressor.step(step, model, optimizer, evaluate) == (model, optimizer)
    assert compressor.state.chance_metric == 0.5 and len(compressor.products["blocks.0.ssm"]) == 2
    assert compressor.step(15, model, optimizer, evaluate) == (model, optimizer)  # certified, still at chance
    metric["value"] = 0.65
    reduced, _ = compressor.step(20, model, optimizer, evaluate)
    assert reduced is not model and "blocks.0.ssm" not in compressor.products  # new order: memory cleared


def test_certified_timing_waits_while_the_hsvs_move_more_than_half_the_gap():
    model, optimizer = _setup()
    schedule = ReductionSchedule(total_steps=100, interval=5, reduce_until=0.5, tau=0.3, timing="certified", certify_over=1)
    compressor = Compressor(schedule)
    compressor.step(5, model, optimizer, lambda m: 1.0)
    with torch.no_grad():
        for block in model.blocks:
            block.ssm.B_re.mul_(3.0)  # M triples: it moves by 2 ||M|| > any gap
            block.ssm.B_im.mul_(3.0)
    assert compressor.step(10, model, optimizer, lambda m: 1.0) == (model, optimizer)
    assert compressor.events == []


def test_the_run_budget_bounds_the_combined_error():
    model, optimizer = _setup()
    schedule = ReductionSchedule(total_steps=200, interval=5, reduce_until=0.2, tau=0.2, budget="run")
    compressor = Compressor(schedule)
    for step in range(1, 41):
        _train(model, optimizer)
        model, optimizer = compressor.step(step, model, optimizer, lambda m: 1.0)
    state = compressor.state
    for name, original in state.original_energy.items():
        assert state.discarded_energy[name] <= 0.2 * original + 1e-9
    bounds = compressor.combined_error_bounds()
    for name, bound in bounds.items():  # energy "sum": the combined bound is 2 * discarded <= 2 tau E0
        assert bound == pytest.approx(2 * state.discarded_energy[name])
        assert bound <= 2 * 0.2 * state.original_energy[name] + 1e-9


def test_compress_takes_the_optimizer_state_rule_and_refuses_unknown_ones():
    from compressm_torch import compress

    model, optimizer = _setup()
    sliced = compress(model, optimizer, ranks={"blocks.0.ssm": 20}, optimizer_state="slice")
    parameter = dict(sliced.model.named_parameters())["blocks.0.ssm.nu_log"]
    old = optimizer.state[dict(model.named_parameters())["blocks.0.ssm.nu_log"]]["exp_avg"]
    assert torch.equal(sliced.optimizer.state[parameter]["exp_avg"], old[:20])
    with pytest.raises(ValueError, match=r"`optimizer_state` must be one of \('reset', 'slice'\), got 'keep'"):
        compress(model, optimizer, ranks={"blocks.0.ssm": 20}, optimizer_state="keep")

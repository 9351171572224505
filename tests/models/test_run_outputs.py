"""Framework-free pieces of a run: atomic files, the output folder, the batch stream's
state, run configurations read back from checkpoints."""

import numpy as np
import pytest

from reference_models.train.batch_stream import BatchStream
from reference_models.train.config import TrainConfig
from reference_models.train.outputs import atomic_path, create_output, record_failure, write_json
from reference_models.train.run_state import config_from_dict, learning_rate_factor


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = write_json(tmp_path / "metrics.json", {"step": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text('{"step": 2, "half')
        raise RuntimeError("disk full")
    assert path.read_text() == '{\n  "step": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failure_record_or_no_folder(tmp_path):
    empty = create_output(tmp_path / "empty")
    record_failure(empty, ValueError("bad"), created=True)
    assert not empty.exists()
    written = create_output(tmp_path / "written")
    write_json(written / "metrics.json", {})
    record_failure(written, ValueError("bad data"), created=True)
    assert (written / "failure.json").read_text() == '{\n  "error": "ValueError",\n  "message": "bad data"\n}'


@pytest.mark.parametrize("drawn", [0, 3, 7, 13])
def test_batch_stream_continues_where_its_state_was_taken(drawn):
    x, y = np.arange(50.0)[:, None], np.arange(50)
    stream = BatchStream(x, y, 8, seed=3)  # 6 batches an epoch, the last 2 rows dropped
    for _ in range(drawn):
        next(stream)
    state = stream.state()
    expected = [next(stream)[1] for _ in range(10)]
    restored = BatchStream(x, y, 8, seed=99)
    restored.restore(state)
    assert all(np.array_equal(next(restored)[1], batch) for batch in expected)
    with pytest.raises(ValueError, match="checkpoint field `batches` is malformed"):
        restored.restore({"position": 1})


def test_run_configuration_from_a_checkpoint():
    config = TrainConfig(state_dim=(8, 4), n_layers=2, tau=0.1)
    assert config_from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"`train_config\.colour` is unknown"):
        config_from_dict({**config.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="`steps` must be a positive integer"):
        config_from_dict({**config.to_dict(), "steps": -1})


def test_learning_rate_warms_up_then_decays_as_optax():
    optax = pytest.importorskip("optax")
    config = TrainConfig(steps=100, warmup_steps=10)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, config.warmup, config.steps, 0.0)
    assert [learning_rate_factor(s, config) for s in range(100)] == pytest.approx([float(schedule(s)) for s in range(100)], abs=1e-6)

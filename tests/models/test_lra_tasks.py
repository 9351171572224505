"""LRA loaders (ListOps, IMDB bytes, AAN, Pathfinder) on tiny files written in the release layouts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from reference_models.tasks import LISTOPS_TOKENS, TASKS, OneHotTokens, batches, load_task

LRA_TASKS = ("listops", "imdb", "aan", "pathfinder")


def ids_of(x: OneHotTokens) -> np.ndarray:
    """Token ids (N, L) recovered from the dense one-hot rows (what a batch holds)."""
    dense = x[np.arange(len(x))]
    assert dense.dtype == np.float32 and dense.shape == x.shape
    assert np.all(dense.sum(axis=-1) == 1.0)
    return dense.argmax(axis=-1)


def byte_tokens(text: bytes, length: int) -> list[int]:
    """LRA's ByteTextEncoder ids (byte + 1), cut at ``length``, padded with 0."""
    ids = [b + 1 for b in text[:length]]
    return ids + [0] * (length - len(ids))


def rows_by_label(x_ids: np.ndarray, y: np.ndarray) -> list[tuple[tuple[int, ...], int]]:
    return sorted((tuple(row.tolist()), int(label)) for row, label in zip(x_ids, y, strict=True))


# --- one-hot token arrays ---------------------------------------------------------------------


def test_one_hot_tokens_index_like_the_dense_array():
    ids = np.array([[3, 0, 1], [2, 2, 0], [1, 3, 3]], dtype=np.uint8)
    x = OneHotTokens(ids, vocab_size=4)
    dense = np.zeros((3, 3, 4), dtype=np.float32)
    for i in range(3):
        for t in range(3):
            dense[i, t, ids[i, t]] = 1.0
    assert (x.shape, x.ndim, x.dtype, len(x)) == ((3, 3, 4), 3, np.float32, 3)
    np.testing.assert_array_equal(x[np.array([2, 0])], dense[[2, 0]])
    np.testing.assert_array_equal(x[np.array([True, False, True])], dense[[0, 2]])
    np.testing.assert_array_equal(x[1], dense[1])
    np.testing.assert_array_equal(np.asarray(x), dense)
    view = x[1:]
    assert isinstance(view, OneHotTokens) and np.shares_memory(view.ids, ids)
    np.testing.assert_array_equal(np.asarray(view), dense[1:])
    for xb, yb in batches(x, np.arange(3), 2, shuffle=False):
        np.testing.assert_array_equal(xb, dense[yb])


def test_one_hot_tokens_refuse_bad_ids_and_indices():
    with pytest.raises(ValueError, match=r"outside \[0, vocab_size=4\)"):
        OneHotTokens(np.array([[4]]), 4)
    with pytest.raises(ValueError, match="`ids` must be integer"):
        OneHotTokens(np.zeros((2, 3), dtype=np.float32), 4)
    with pytest.raises(ValueError, match="`vocab_size` 0"):
        OneHotTokens(np.zeros((2, 3), dtype=np.uint8), 0)
    with pytest.raises(TypeError, match="first axis only"):
        OneHotTokens(np.zeros((2, 3), dtype=np.uint8), 4)[:, 1]


def test_the_lra_tasks_are_registered():
    assert set(LRA_TASKS) <= set(TASKS)
    for task in LRA_TASKS:
        with pytest.raises(ValueError, match=f"`data_dir` is required for task '{task}'"):
            load_task(task)


# --- ListOps ----------------------------------------------------------------------------------


def write_listops(folder: Path, splits: dict[str, list[tuple[str, int]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with (folder / f"basic_{split}.tsv").open("w", newline="") as file:
            writer = csv.writer(file, delimiter="\t")
            writer.writerow(["Source", "Target"])
            writer.writerows(rows)


LISTOPS_ROWS = {
    "train": [
        ("( ( ( [MAX 2 ) 9 ) ] )", 9),
        ("( ( ( [MIN 4 ) ( ( [SM 3 ) 5 ) ] ) ] )", 4),
        ("( ( [MED 1 ) 7 ] )", 4),
        ("( ( ( [SM 8 ) 8 ) ] )", 6),
    ],
    "val": [("( ( [MAX 0 ) 1 ] )", 1)],
    "test": [("( ( [MIN 6 ) 3 ] )", 3), ("( ( [MED 5 ) 5 ] )", 5)],
}


def listops_words(source: str) -> list[str]:
    return [word for word in source.split() if word not in ("(", ")")]


@pytest.mark.parametrize("level", ["lra_release", "lra_release/lra_release", "."])
def test_listops_round_trips_tokens_and_values(tmp_path, level):
    write_listops(tmp_path / level / "listops-1000", LISTOPS_ROWS)
    data = load_task("listops", data_dir=tmp_path, max_length=12)
    assert data.num_classes == 10 and data.x_train.shape == (4, 12, len(LISTOPS_TOKENS))
    for split, rows in LISTOPS_ROWS.items():
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        expected = []
        for source, target in rows:
            words = listops_words(source)
            expected.append((tuple(words + ["<pad>"] * (12 - len(words))), target))
        decoded = [
            (tuple(LISTOPS_TOKENS[i] for i in row), int(label))
            for row, label in zip(ids_of(x), y, strict=True)
        ]
        assert sorted(decoded) == sorted(expected)


def test_listops_cuts_at_max_length_and_reads_the_task_folder_itself(tmp_path):
    write_listops(tmp_path, LISTOPS_ROWS)
    data = load_task("listops", data_dir=tmp_path, max_length=3)
    words = listops_words(LISTOPS_ROWS["val"][0][0])[:3]
    assert [LISTOPS_TOKENS[i] for i in ids_of(data.x_val)[0]] == words


def test_listops_subsets_are_seeded(tmp_path):
    write_listops(tmp_path / "listops-1000", LISTOPS_ROWS)
    a = load_task("listops", data_dir=tmp_path, seed=1, max_train=2, max_test=1)
    b = load_task("listops", data_dir=tmp_path, seed=1, max_train=2, max_test=1)
    assert (len(a.x_train), len(a.x_test)) == (2, 1)
    np.testing.assert_array_equal(a.x_train.ids, b.x_train.ids)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("( [MAX 2 ] )", 12)], "Target 12 is outside 0..9"),
        ([("( [MAX 2 ] )", "x")], "Target 'x' is not an integer"),
        ([("( [FIRST 2 ] )", 2)], r"line 2: unknown tokens \['\[FIRST'\]"),
        ([], "has no rows below its header"),
    ],
)
def test_listops_names_malformed_rows(tmp_path, rows, message):
    write_listops(tmp_path, {**LISTOPS_ROWS, "val": rows})
    with pytest.raises(ValueError, match=message) as error:
        load_task("listops", data_dir=tmp_path)
    assert "basic_val.tsv" in str(error.value)


def test_listops_names_a_bad_header_a_short_row_and_a_missing_file(tmp_path):
    write_listops(tmp_path, LISTOPS_ROWS)
    (tmp_path / "basic_test.tsv").write_text("Input\tValue\n( [MAX 2 ] )\t2\n")
    with pytest.raises(ValueError, match="expected the columns Source and Target"):
        load_task("listops", data_dir=tmp_path)
    (tmp_path / "basic_test.tsv").write_text("Source\tTarget\n( [MAX 2 ] )\n")
    with pytest.raises(ValueError, match="line 2: 1 fields, the header has 2"):
        load_task("listops", data_dir=tmp_path)
    (tmp_path / "basic_test.tsv").unlink()
    with pytest.raises(ValueError, match=f"the file {tmp_path / 'basic_test.tsv'} is missing"):
        load_task("listops", data_dir=tmp_path)


def test_listops_names_the_places_it_looked(tmp_path):
    with pytest.raises(ValueError, match=r"holds no basic_train\.tsv") as error:
        load_task("listops", data_dir=tmp_path)
    assert str(tmp_path / "lra_release" / "listops-1000" / "basic_train.tsv") in str(error.value)
    with pytest.raises(ValueError, match="does not exist"):
        load_task("listops", data_dir=tmp_path / "nowhere")


# --- IMDB -------------------------------------------------------------------------------------

REVIEWS = {
    "train": {
        "pos": [b"A great film.", "Très bien, 10/10 \u2605".encode(), b"Loved<br />it"],
        "neg": [b"Dull.", b"Two hours I will not get back"],
    },
    "test": {"pos": [b"Fine"], "neg": [b"Bad \xff bytes", b""]},
}


def write_imdb(root: Path) -> None:
    for split, labels in REVIEWS.items():
        for label, texts in labels.items():
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i, text in enumerate(texts):
                (folder / f"{i}_{7 + i}.txt").write_bytes(text)
    (root / "aclImdb" / "train" / "unsup").mkdir()
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_bytes(b"not labelled")


def expected_reviews(split: str, length: int) -> list[tuple[tuple[int, ...], int]]:
    label_of = {"neg": 0, "pos": 1}
    return sorted(
        (tuple(byte_tokens(text, length)), label_of[label])
        for label, texts in REVIEWS[split].items()
        for text in texts
    )


def test_imdb_reads_bytes_and_labels(tmp_path):
    write_imdb(tmp_path)
    data = load_task("imdb", data_dir=tmp_path, max_length=20, val_fraction=0.2)
    assert data.x_train.shape == (4, 20, 257) and data.num_classes == 2
    assert (len(data.x_val), len(data.x_test)) == (1, 3)
    train_and_val = rows_by_label(
        np.concatenate([ids_of(data.x_train), ids_of(data.x_val)]),
        np.concatenate([data.y_train, data.y_val]),
    )
    assert train_and_val == expected_reviews("train", 20)
    assert rows_by_label(ids_of(data.x_test), data.y_test) == expected_reviews("test", 20)


def test_imdb_cuts_at_max_length_and_seeds_the_validation_split(tmp_path):
    write_imdb(tmp_path)
    data = load_task("imdb", data_dir=tmp_path / "aclImdb", max_length=4, val_fraction=0.2)
    assert rows_by_label(ids_of(data.x_test), data.y_test) == expected_reviews("test", 4)
    picks = {
        tuple(load_task("imdb", data_dir=tmp_path, seed=s, val_fraction=0.2).x_val.ids[0][:5])
        for s in range(6)
    }
    assert len(picks) > 1


def test_imdb_names_a_missing_label_folder(tmp_path):
    write_imdb(tmp_path)
    for path in (tmp_path / "aclImdb" / "test" / "pos").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match=r"test/pos holds no \*.txt reviews"):
        load_task("imdb", data_dir=tmp_path)
    (tmp_path / "aclImdb" / "test" / "pos").rmdir()
    with pytest.raises(ValueError, match=r"the folder .*test/pos is missing"):
        load_task("imdb", data_dir=tmp_path)
    with pytest.raises(ValueError, match="holds no train for task 'imdb'"):
        load_task("imdb", data_dir=tmp_path / "aclImdb" / "test")


# --- AAN --------------------------------------------------------------------------------------

AAN_PAIRS = {
    "train": [
        ("1.0", b"Graph-based parsing", b"We parse graphs \xe2\x80\x94 fast"),
        ("0.0", b"Neural MT", b"Speech"),
        ("1", b"A", b"B"),
    ],
    "eval": [("0", b"Topic models", b"")],
    "test": [("1.0", b"Long document one", b"Short")],
}


def write_aan(folder: Path, pairs: dict[str, list[tuple[str, bytes, bytes]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in pairs.items():
        lines = [
            b"\t".join([label.encode(), f"id{i}".encode(), f"id{i + 100}".encode(), one, two])
            for i, (label, one, two) in enumerate(rows)
        ]
        (folder / f"new_aan_pairs.{split}.tsv").write_bytes(b"\n".join(lines) + b"\n")


def test_aan_concatenates_the_two_documents(tmp_path):
    write_aan(tmp_path / "lra_release" / "lra_release" / "tsv_data", AAN_PAIRS)
    data = load_task("aan", data_dir=tmp_path, max_length=8)
    assert data.x_train.shape == (3, 16, 257) and data.num_classes == 2
    for split, rows in (("train", "train"), ("val", "eval"), ("test", "test")):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        expected = sorted(
            (tuple(byte_tokens(one, 8) + byte_tokens(two, 8)), int(float(label)))
            for label, one, two in AAN_PAIRS[rows]
        )
        assert rows_by_label(ids_of(x), y) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"1.0\tid1\tid2\tonly one text", "line 1: 4 tab-separated fields, expected 5"),
        (b"2\tid1\tid2\ta\tb", r"line 1: label b'2' is neither 0 nor 1"),
        (b"yes\tid1\tid2\ta\tb", "label b'yes' is neither 0 nor 1"),
    ],
)
def test_aan_names_malformed_lines(tmp_path, line, message):
    write_aan(tmp_path, AAN_PAIRS)
    (tmp_path / "new_aan_pairs.eval.tsv").write_bytes(line + b"\n")
    with pytest.raises(ValueError, match=message) as error:
        load_task("aan", data_dir=tmp_path)
    assert "new_aan_pairs.eval.tsv" in str(error.value)


def test_aan_names_an_empty_or_missing_split(tmp_path):
    write_aan(tmp_path, AAN_PAIRS)
    (tmp_path / "new_aan_pairs.test.tsv").write_bytes(b"\n")
    with pytest.raises(ValueError, match="holds no pairs"):
        load_task("aan", data_dir=tmp_path)
    (tmp_path / "new_aan_pairs.test.tsv").unlink()
    with pytest.raises(ValueError, match=r"new_aan_pairs\.test\.tsv is missing"):
        load_task("aan", data_dir=tmp_path)


# --- Pathfinder -------------------------------------------------------------------------------


def write_pathfinder(
    root: Path, difficulty: str, n: int, rng: np.random.Generator, size: int = 32
) -> dict[str, tuple[np.ndarray, int]]:
    """``n`` random grayscale PNGs over two metadata files; returns {file name: (pixels, label)}."""
    from PIL import Image

    folder = root / "pathfinder32" / difficulty
    written = {}
    for meta_index in range(2):
        images = folder / "imgs" / str(meta_index)
        images.mkdir(parents=True)
        lines = []
        for i in range(meta_index, n, 2):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            label = int(rng.integers(0, 2))
            Image.fromarray(pixels, mode="L").save(images / f"sample_{i}.png")
            lines.append(f"imgs/{meta_index} sample_{i}.png 0 {label} 14 1\n")
            written[f"sample_{i}.png"] = (pixels, label)
        (folder / "metadata").mkdir(exist_ok=True)
        (folder / "metadata" / f"{meta_index}.npy").write_text("".join(lines))
    return written


def pathfinder_rows(data, split: str) -> list[tuple[tuple[int, ...], int]]:
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    pixels = np.rint((x[..., 0] + 1) * 255 / 2).astype(np.int64)
    return rows_by_label(pixels, y)


def all_pathfinder_rows(data) -> list[tuple[tuple[int, ...], int]]:
    return [row for split in ("train", "val", "test") for row in pathfinder_rows(data, split)]


def test_pathfinder_reads_images_labels_and_splits(tmp_path):
    written = write_pathfinder(tmp_path, "curv_contour_length_14", 20, np.random.default_rng(0))
    data = load_task("pathfinder", data_dir=tmp_path, val_fraction=0.1, test_fraction=0.2)
    assert data.x_train.shape[1:] == (1024, 1) and data.x_train.dtype == np.float32
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (14, 2, 4)
    assert -1.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    everything = sorted(all_pathfinder_rows(data))
    expected = sorted((tuple(p.ravel().tolist()), label) for p, label in written.values())
    assert everything == expected


def test_pathfinder_test_split_is_fixed_and_seed_moves_validation(tmp_path):
    write_pathfinder(tmp_path, "curv_contour_length_14", 30, np.random.default_rng(1))
    runs = [load_task("pathfinder", data_dir=tmp_path, seed=s) for s in range(4)]
    assert all(pathfinder_rows(r, "test") == pathfinder_rows(runs[0], "test") for r in runs)
    assert len({tuple(pathfinder_rows(r, "val")[0][0]) for r in runs}) > 1


def test_pathfinder_difficulty_subsets_and_empty_images(tmp_path):
    written = write_pathfinder(tmp_path, "curv_baseline", 12, np.random.default_rng(2))
    (tmp_path / "pathfinder32" / "curv_baseline" / "imgs" / "0" / "sample_0.png").write_bytes(b"")
    data = load_task(
        "pathfinder", data_dir=tmp_path / "pathfinder32", difficulty="easy", max_train=3, max_test=1
    )
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (3, 1, 1)
    seen = all_pathfinder_rows(data)
    allowed = {
        (tuple(p.ravel().tolist()), label)
        for name, (p, label) in written.items()
        if name != "sample_0.png"
    }
    assert set(seen) <= allowed


def test_pathfinder_names_what_is_wrong(tmp_path):
    write_pathfinder(tmp_path, "curv_contour_length_14", 10, np.random.default_rng(3))
    folder = tmp_path / "pathfinder32" / "curv_contour_length_14"
    with pytest.raises(ValueError, match="`difficulty` 'extreme' is unknown"):
        load_task("pathfinder", data_dir=tmp_path, difficulty="extreme")
    with pytest.raises(ValueError, match="`resolution` 48"):
        load_task("pathfinder", data_dir=tmp_path, resolution=48)
    with pytest.raises(ValueError, match="holds no curv_baseline"):
        load_task("pathfinder", data_dir=tmp_path, difficulty="easy")
    (folder / "imgs" / "1" / "sample_3.png").unlink()
    with pytest.raises(ValueError, match=r"1.npy, line 2: the image .*sample_3.png is missing"):
        load_task("pathfinder", data_dir=tmp_path)
    (folder / "metadata" / "1.npy").write_text("imgs/1 sample_1.png 0 7\n")
    with pytest.raises(ValueError, match=r"1\.npy, line 1: expected 'folder file _ label"):
        load_task("pathfinder", data_dir=tmp_path)
    (folder / "metadata" / "1.npy").unlink()
    (folder / "imgs" / "0" / "sample_0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"sample_0\.png cannot be read"):
        load_task("pathfinder", data_dir=tmp_path, test_fraction=0.2, val_fraction=0.2)
    (folder / "metadata" / "0.npy").unlink()
    with pytest.raises(ValueError, match=r"holds no \*.npy metadata files"):
        load_task("pathfinder", data_dir=tmp_path)


def test_pathfinder_refuses_images_of_another_size(tmp_path):
    write_pathfinder(tmp_path, "curv_contour_length_14", 6, np.random.default_rng(4), size=16)
    with pytest.raises(ValueError, match="is 16x16, expected 32x32"):
        load_task("pathfinder", data_dir=tmp_path, val_fraction=0.2, test_fraction=0.2)


# --- training on token inputs -----------------------------------------------------------------


def test_the_torch_trainer_runs_on_one_hot_tokens(tmp_path):
    from reference_models.train.config import TrainConfig
    from reference_models.train.torch_trainer import train

    write_listops(tmp_path, LISTOPS_ROWS)
    config = TrainConfig(
        task="listops",
        data_dir=str(tmp_path),
        steps=3,
        batch_size=2,
        d_model=8,
        state_dim=4,
        n_layers=1,
        tau=None,
        eval_every=3,
    )
    model, record = train(config, progress=False)
    assert model.encoder.in_features == len(LISTOPS_TOKENS)
    assert 0.0 <= record.test_metric <= 1.0

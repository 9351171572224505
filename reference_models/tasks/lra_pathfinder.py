"""LRA Pathfinder: are the two dots joined by a path? Images from a local copy of the LRA release.

Layout (read by ``lra_benchmarks/data/pathfinder.py``): ``lra_release/lra_release/
pathfinder32/`` (also 64, 128, 256) holds one folder per difficulty, ``curv_baseline`` (easy),
``curv_contour_length_9`` (intermediate) and ``curv_contour_length_14`` (hard, LRA's "Path"
task). Each has ``imgs/<k>/sample_<i>.png`` (grayscale, resolution x resolution) and
``metadata/<k>.npy``: despite the suffix, text files with one image per line,
space-separated: the image's folder (``imgs/<k>``), its file name, a field not used, the label
(1: connected), more fields not used. Metadata files are read in numeric order of their names.

LRA drops empty images (the release has a zero-byte file in ``curv_baseline``); so does this
loader. The release has no splits: LRA takes 80% / 10% / 10% of each difficulty for train /
validation / test; here the test images are a fixed random ``test_fraction`` (the same for
every ``seed``) and the validation images a ``val_fraction`` drawn by ``seed`` from the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import SequenceDataset
from .lra_files import find_task_folder
from .splits import check_fraction, check_positive

DIFFICULTIES = {
    "easy": "curv_baseline",
    "intermediate": "curv_contour_length_9",
    "hard": "curv_contour_length_14",
}
RESOLUTIONS = (32, 64, 128, 256)
SPLIT_SEED = 0  # one fixed test split, whatever the `seed`
EXPECTED = (
    "pathfinder<resolution>/<difficulty folder>/metadata/*.npy and imgs/<k>/*.png of the LRA "
    "release, difficulty folders: " + ", ".join(DIFFICULTIES.values())
)


def _numeric_first(path: Path) -> tuple[int, int | str]:
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.stem)


def read_metadata(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Image paths and int64 labels (N,) listed by ``folder/metadata/*.npy``, empty images left out."""
    metadata = sorted((folder / "metadata").glob("*.npy"), key=_numeric_first)
    if not metadata:
        raise ValueError(
            f"task 'pathfinder': {folder / 'metadata'} holds no *.npy metadata files; expected {EXPECTED}"
        )
    paths, labels = [], []
    for meta in metadata:
        for number, line in enumerate(meta.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4 or fields[3] not in ("0", "1"):
                raise ValueError(
                    f"Pathfinder metadata {meta}, line {number}: expected 'folder file _ label ...' "
                    f"with label 0 or 1, got {line!r}"
                )
            image = folder / fields[0] / fields[1]
            if not image.is_file():
                raise ValueError(
                    f"Pathfinder metadata {meta}, line {number}: the image {image} is missing"
                )
            if image.stat().st_size:
                paths.append(image)
                labels.append(int(fields[3]))
    return paths, np.asarray(labels, dtype=np.int64)


def read_grayscale(path: Path, resolution: int) -> np.ndarray:
    """One image as uint8 (resolution, resolution)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"Pathfinder image {path} cannot be read: {error}") from error
    if pixels.shape != (resolution, resolution):
        raise ValueError(
            f"Pathfinder image {path} is {pixels.shape[1]}x{pixels.shape[0]}, expected {resolution}x{resolution}"
        )
    return pixels


def _split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices into n images (see the module docstring)."""
    n_test, n_val = max(1, round(n * test_fraction)), max(1, round(n * val_fraction))
    if n_test + n_val >= n:
        raise ValueError(
            f"cannot split {n} Pathfinder images: val_fraction={val_fraction} and "
            f"test_fraction={test_fraction} leave none to train on"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    rest = np.random.default_rng(seed).permutation(order[n_test:])
    return rest[n_val:], rest[:n_val], order[:n_test]


def load_pathfinder(
    *,
    seed: int = 0,
    data_dir: str | Path | None = None,
    resolution: int = 32,
    difficulty: str = "hard",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceDataset:
    """Pathfinder images read pixel by pixel (row-major): (N, resolution^2, 1), 2 classes.

    Pixels are scaled to [-1, 1] (the S4/S5 and CompreSSM pipelines' centring). ``difficulty``
    is "easy", "intermediate" or "hard" (LRA's Path task: 32x32, hard). ``seed`` draws the
    validation split and the ``max_train``/``max_test`` subsets; only the chosen images are
    decoded.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"`resolution` {resolution!r} is not one of {RESOLUTIONS}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(
            f"`difficulty` {difficulty!r} is unknown; choose one of: {', '.join(DIFFICULTIES)}"
        )
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    check_positive("max_train", max_train, allow_none=True)
    check_positive("max_test", max_test, allow_none=True)
    root = find_task_folder(
        data_dir, "pathfinder", f"pathfinder{resolution}", DIFFICULTIES[difficulty], EXPECTED
    )
    paths, labels = read_metadata(root / DIFFICULTIES[difficulty])
    train, val, test = _split_indices(len(paths), val_fraction, test_fraction, seed)
    rng = np.random.default_rng(seed)
    if max_train is not None and max_train < len(train):
        train = np.sort(rng.choice(train, size=max_train, replace=False))
    if max_test is not None and max_test < len(test):
        test = np.sort(rng.choice(test, size=max_test, replace=False))

    def split(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels = np.stack([read_grayscale(paths[i], resolution) for i in indices])
        x = pixels.reshape(len(indices), -1, 1).astype(np.float32) * np.float32(2 / 255) - 1
        return x, labels[indices]

    return SequenceDataset(
        "pathfinder", "classification", *split(train), *split(val), *split(test), num_classes=2
    )

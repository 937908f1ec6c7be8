"""Data sets: CelebA's folder layout, any folder of images, and batching that survives bad files.

Every image goes through `model.codec.load_image_tensor`, the same function the service uses.
A damaged image inside a data set is skipped and counted (each batch reports how many of its
images were skipped), never a crash hours into a run. So is anything that is not a regular file
(a FIFO would block the loader forever, a link to /dev/zero would fill the memory) and any file
larger than an image may be.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from model.codec import DEFAULT_LIMITS, ImageError, Preprocessing, load_image_tensor
from model.files import (
    FileRefusedError,
    open_regular_file,
    read_regular_file,
    strict_json_loads,
)

log = logging.getLogger(__name__)

CELEBA_IMAGE_DIR = "img_align_celeba"
CELEBA_ATTRIBUTE_FILE = "list_attr_celeba.txt"
CELEBA_PARTITION_FILE = "list_eval_partition.txt"
# Written by `vaegan-train synth`: how the folder was generated, recorded in checkpoints.
SYNTHETIC_MANIFEST_FILE = "synthetic_faces.json"
SPLITS = {"train": (0,), "val": (1,), "test": (2,), "train+val": (0, 1), "all": (0, 1, 2)}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_MAX_LISTED_PROBLEMS = 8
# The generator writes a few hundred bytes.
_MAX_MANIFEST_BYTES = 1024 * 1024


class DatasetError(ValueError):
    """A data folder that cannot be used as given, with everything wrong with it."""


class Sample(NamedTuple):
    image: Tensor  # (C, S, S) in [-1, 1]
    labels: Tensor  # (A,) int8 in {-1, +1}; (0,) for unlabeled data
    position: int  # index in the data set


class Batch(NamedTuple):
    images: Tensor  # (B, C, S, S)
    labels: Tensor  # (B, A)
    indices: Tensor  # (B,) positions in the data set
    skipped: int  # damaged images dropped from this batch


def collate_samples(samples: Sequence[Sample | None]) -> Batch:
    """DataLoader `collate_fn`: stacks the good samples and counts the damaged ones."""
    good = [s for s in samples if s is not None]
    skipped = len(samples) - len(good)
    if not good:
        empty = torch.empty(0)
        return Batch(empty, empty, torch.empty(0, dtype=torch.long), skipped)
    return Batch(
        images=torch.stack([s.image for s in good]),
        labels=torch.stack([s.labels for s in good]),
        indices=torch.tensor([s.position for s in good], dtype=torch.long),
        skipped=skipped,
    )


class _ImageFiles(Dataset[Sample | None]):
    """Shared loading: a list of files, optional labels, the codec.

    Images come as they are on disk: flip augmentation is the training sampler's
    (`training.sampling.FlipView`), where it is reproducible.
    """

    def __init__(self, paths: Sequence[Path], labels: Tensor, preprocessing: Preprocessing) -> None:
        self.paths = list(paths)
        self.labels = labels  # (N, A) int8
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample | None:
        path = self.paths[index]
        try:
            image = read_image_file(path, self.preprocessing)
        except FileRefusedError as exc:
            log.warning("skipping %s: %s", path, exc.problem)
            return None
        except ImageError as exc:
            log.warning("skipping damaged image %s: %s", path, exc)
            return None
        return Sample(image, self.labels[index], index)

    def load(self, index: int) -> Tensor:
        """One image, preprocessed; raises on a damaged file."""
        return read_image_file(self.paths[index], self.preprocessing)


def read_image_file(path: Path, preprocessing: Preprocessing) -> Tensor:
    """An image file as a model input; FileRefusedError for anything but a regular file within
    the codec's size limit, ImageError for one that is not a usable image."""
    data = read_regular_file(path, max_bytes=DEFAULT_LIMITS.max_bytes)
    return load_image_tensor(data, preprocessing)


# --------------------------------------------------------------------------------------------
# CelebA


@dataclass(frozen=True)
class CelebAIndex:
    """The parsed, validated label files of a CelebA folder (no images read)."""

    root: Path
    image_dir: Path
    attribute_names: tuple[str, ...]
    files: tuple[str, ...]  # in the attribute file's order
    labels: Tensor  # (N, A) int8 in {-1, +1}
    partitions: Tensor  # (N,) int8: 0 train, 1 val, 2 test; -1 when the file is absent


def read_celeba_index(root: str | os.PathLike[str], *, need_partition: bool = True) -> CelebAIndex:
    """Parse and check a CelebA folder; raise one DatasetError that lists every problem found.

    Accepts the official layout (`list_attr_celeba.txt`, `list_eval_partition.txt`) and the
    Kaggle mirror's CSV files and doubly nested `img_align_celeba/img_align_celeba/`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist or is not a folder")
    image_dir = root / CELEBA_IMAGE_DIR
    if (image_dir / CELEBA_IMAGE_DIR).is_dir():
        image_dir = image_dir / CELEBA_IMAGE_DIR
    attribute_file = _first_existing(root, CELEBA_ATTRIBUTE_FILE)
    partition_file = _first_existing(root, CELEBA_PARTITION_FILE)

    missing = []
    if not image_dir.is_dir():
        missing.append(f"{CELEBA_IMAGE_DIR}/ (the folder of aligned JPEGs)")
    if attribute_file is None:
        missing.append(f"{CELEBA_ATTRIBUTE_FILE} (the attribute labels)")
    if need_partition and partition_file is None:
        missing.append(f"{CELEBA_PARTITION_FILE} (the train/val/test split)")
    if missing:
        raise DatasetError(
            f"{root} is not a complete CelebA folder; missing: " + "; ".join(missing)
        )
    assert attribute_file is not None
    problems: list[str] = []
    names, files, labels = _parse_attributes(attribute_file, problems)
    partitions = torch.full((len(files),), -1, dtype=torch.int8)
    if partition_file is not None:
        partitions = _parse_partition(partition_file, files, problems)
    if not problems:
        # Names, not Path objects: 200k of them for real CelebA.
        present = set(os.listdir(image_dir))  # noqa: PTH208
        absent = [name for name in files if name not in present]
        if absent:
            problems.append(
                f"{len(absent)} of {len(files)} images listed in {attribute_file.name} are not "
                f"in {image_dir}: {_some(absent)}"
            )
    if problems:
        listed = problems[:_MAX_LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        raise DatasetError(
            f"CelebA folder {root} has problems:\n  - "
            + "\n  - ".join(listed)
            + (f"\n  - ... and {more} more" if more else "")
        )
    return CelebAIndex(root, image_dir, names, files, labels, partitions)


def _first_existing(root: Path, text_name: str) -> Path | None:
    for candidate in (root / text_name, root / Path(text_name).with_suffix(".csv")):
        if candidate.is_file():
            return candidate
    return None


def _rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank line, whitespace- or comma-separated."""
    with (
        open_regular_file(path) as (raw, _),
        io.TextIOWrapper(raw, newline="", encoding="utf-8", errors="replace") as handle,
    ):
        if path.suffix == ".csv":
            for number, fields in enumerate(csv.reader(handle), start=1):
                if fields:
                    yield number, [f.strip() for f in fields]
        else:
            for number, line in enumerate(handle, start=1):
                fields = line.split()
                if fields:
                    yield number, fields


def _parse_attributes(
    path: Path, problems: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...], Tensor]:
    rows = iter(_rows(path))
    declared_count: int | None = None
    if path.suffix == ".csv":
        # Kaggle's CSV: a header "image_id,<names>" and no count line.
        _, header = next(rows, (0, []))
        names = tuple(header[1:])
    else:
        _, count_line = next(rows, (0, []))
        try:
            (count_text,) = count_line
            declared_count = int(count_text)
        except ValueError:
            problems.append(
                f"{path.name} line 1 should be the number of images, got {' '.join(count_line)!r}"
            )
        _, header = next(rows, (0, []))
        names = tuple(header)
    if not names:
        problems.append(f"{path.name} has no attribute names line")
        return (), (), torch.empty(0, 0, dtype=torch.int8)
    if len(set(names)) != len(names):
        problems.append(f"{path.name} repeats attribute names")
    files: list[str] = []
    values: list[bool] = []
    for number, fields in rows:
        if len(fields) != len(names) + 1:
            problems.append(
                f"{path.name} line {number}: expected a file name and {len(names)} values, "
                f"got {len(fields)} fields"
            )
            continue
        flags = fields[1:]
        if not all(flag in ("1", "-1") for flag in flags):
            problems.append(f"{path.name} line {number}: values must be 1 or -1")
            continue
        files.append(fields[0])
        values.extend(flag == "1" for flag in flags)
    if declared_count is not None and declared_count != len(files) and not problems:
        problems.append(
            f"{path.name} says it lists {declared_count} images but has {len(files)} rows "
            "(an incomplete download or an interrupted write?)"
        )
    if len(set(files)) != len(files):
        problems.append(f"{path.name} lists some images more than once")
    positive = torch.tensor(values, dtype=torch.bool).view(len(files), len(names))
    labels = torch.where(positive, 1, -1).to(torch.int8)
    return names, tuple(files), labels


def _parse_partition(path: Path, files: Sequence[str], problems: list[str]) -> Tensor:
    split_of: dict[str, int] = {}
    rows = iter(_rows(path))
    if path.suffix == ".csv":
        next(rows, None)  # header "image_id,partition"
    for number, fields in rows:
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            problems.append(f"{path.name} line {number}: expected '<file> 0|1|2'")
            continue
        split_of[fields[0]] = int(fields[1])
    unassigned = [name for name in files if name not in split_of]
    if unassigned:
        problems.append(
            f"{len(unassigned)} images have no split in {path.name}: {_some(unassigned)}"
        )
    return torch.tensor([split_of.get(name, -1) for name in files], dtype=torch.int8)


def _some(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


class CelebADataset(_ImageFiles):
    """A split of a CelebA folder; samples carry the attribute labels."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        split: str = "train",
        preprocessing: Preprocessing | None = None,
        limit: int | None = None,
        index: CelebAIndex | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        index = index or read_celeba_index(root, need_partition=split != "all")
        keep = torch.ones(len(index.files), dtype=torch.bool)
        if split != "all":
            keep = torch.isin(index.partitions, torch.tensor(SPLITS[split], dtype=torch.int8))
        rows = keep.nonzero().squeeze(1)
        if limit is not None:
            rows = rows[:limit]
        if len(rows) == 0:
            raise DatasetError(f"the {split!r} split of {index.root} is empty")
        super().__init__(
            [index.image_dir / index.files[i] for i in rows.tolist()],
            index.labels[rows],
            preprocessing or Preprocessing(),
        )
        self.index = index
        self.split = split
        self.attribute_names = index.attribute_names

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records about the data it was trained on."""
        description: dict[str, Any] = {
            "kind": "celeba",
            "root": str(self.index.root),
            "split": self.split,
            "images": len(self),
            "attributes": list(self.attribute_names),
        }
        synthetic = read_synthetic_manifest(self.index.root)
        if synthetic is not None:
            description["synthetic"] = synthetic
        return description


# --------------------------------------------------------------------------------------------
# any folder of images


def find_images(root: Path) -> list[Path]:
    """Image files under `root`, recursively, in a stable order; hidden entries are skipped."""
    found = []
    for directory, subdirectories, filenames in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(directory) / name)
    return found


class ImageFolderDataset(_ImageFiles):
    """Every image under a folder, without labels, for unconditional training."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        preprocessing: Preprocessing | None = None,
        limit: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"data folder {self.root} does not exist or is not a folder")
        paths = find_images(self.root)[:limit]
        if not paths:
            raise DatasetError(
                f"no images found under {self.root} (looked recursively for "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        super().__init__(
            paths,
            torch.empty(len(paths), 0, dtype=torch.int8),
            preprocessing or Preprocessing(),
        )
        self.attribute_names: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"kind": "image-folder", "root": str(self.root), "images": len(self)}


def read_synthetic_manifest(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The generator's seed and count when `root` holds synthetic faces; None otherwise."""
    try:
        path = Path(root) / SYNTHETIC_MANIFEST_FILE
        manifest = strict_json_loads(read_regular_file(path, max_bytes=_MAX_MANIFEST_BYTES))
    except ValueError:  # not a regular file, or not JSON a checkpoint can record
        return None
    return manifest if isinstance(manifest, dict) else None


def is_celeba_folder(root: str | os.PathLike[str]) -> bool:
    root = Path(root)
    return (
        _first_existing(root, CELEBA_ATTRIBUTE_FILE) is not None
        or (root / CELEBA_IMAGE_DIR).is_dir()
    )


def open_dataset(
    root: str | os.PathLike[str],
    *,
    split: str = "train",
    preprocessing: Preprocessing | None = None,
    limit: int | None = None,
) -> CelebADataset | ImageFolderDataset:
    """A CelebA-layout folder as CelebA (with labels), anything else as a plain image folder."""
    if is_celeba_folder(root):
        return CelebADataset(root, split=split, preprocessing=preprocessing, limit=limit)
    return ImageFolderDataset(root, preprocessing=preprocessing, limit=limit)

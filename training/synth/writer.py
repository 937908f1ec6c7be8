"""Writing a synthetic set in CelebA's folder layout: the images (in-process or by a pool of
worker processes), the partition and attribute files, and the run's summary.

Each image depends only on ``(seed, index)`` (see :func:`~training.synth.faces.face_rng`), so
the files are byte-identical whatever the number of workers.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from model.atomic import atomic_write_bytes
from training.data import (
    CELEBA_ATTRIBUTE_FILE,
    CELEBA_IMAGE_DIR,
    CELEBA_PARTITION_FILE,
    SYNTHETIC_MANIFEST_FILE,
)
from training.synth.faces import SYNTH_ATTRIBUTES, face_rng, sample_face
from training.synth.render import render_face

JPEG_QUALITY = 90

# CelebA's official split sizes (train, val, test) out of 202,599 images.
_CELEBA_SPLIT = (162_770, 19_867, 19_962)
_CELEBA_TOTAL = sum(_CELEBA_SPLIT)

_PROGRESS_MIN_COUNT = 200
_CHUNK_SIZE = 64


@dataclass(frozen=True)
class SynthReport:
    """Summary of one generation run."""

    count: int
    seconds: float
    images_per_second: float
    attribute_counts: dict[str, int] = field(default_factory=dict)  # number of +1 per attribute
    split_sizes: dict[str, int] = field(default_factory=dict)  # "train" / "val" / "test"


def image_name(index: int, count: int) -> str:
    """CelebA-style 1-based file name; wider than 6 digits only if the set needs it."""
    return f"{index:0{max(6, len(str(count)))}d}.jpg"


def split_sizes(count: int) -> tuple[int, int, int]:
    """(train, val, test) sizes with CelebA's ratios; each split non-empty once count >= 3."""
    train = round(count * _CELEBA_SPLIT[0] / _CELEBA_TOTAL)
    val = round(count * _CELEBA_SPLIT[1] / _CELEBA_TOTAL)
    if count >= 3:
        val = max(val, 1)
        train = min(max(train, 1), count - val - 1)
    val = min(val, count - train)
    return train, val, count - train - val


def write_jpeg(path: Path, image: Image.Image) -> None:
    """Encode and write one image (a module-level hook so tests can simulate failures)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    path.write_bytes(buffer.getvalue())


def _render_chunk(job: tuple[str, int, int, int, int]) -> list[tuple[bool, ...]]:
    """Render and write images ``start..stop-1``; returns their attributes in order.

    Takes plain picklable values so it works as a ``spawn`` pool task.
    """
    image_dir, seed, count, start, stop = job
    rows = []
    for index in range(start, stop):
        params = sample_face(face_rng(seed, index))
        write_jpeg(Path(image_dir) / image_name(index, count), render_face(params))
        rows.append(tuple(params.attributes[name] for name in SYNTH_ATTRIBUTES))
    return rows


def _write_text_atomically(path: Path, lines: Iterable[str]) -> None:
    atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("ascii"))


def _prepare_output(out_dir: Path, count: int, overwrite: bool) -> Path:
    image_dir = out_dir / CELEBA_IMAGE_DIR
    attr_file = out_dir / CELEBA_ATTRIBUTE_FILE
    has_images = image_dir.is_dir() and any(image_dir.iterdir())
    if (has_images or attr_file.exists()) and not overwrite:
        raise FileExistsError(
            f"{image_dir} (or {attr_file.name}) already exists and is not empty; "
            "pass overwrite=True to replace it or choose another output folder"
        )
    # Drop the list files first: an interrupted overwrite must not leave an attribute file that
    # vouches for a half-replaced image folder.
    for name in (CELEBA_ATTRIBUTE_FILE, CELEBA_PARTITION_FILE, SYNTHETIC_MANIFEST_FILE):
        (out_dir / name).unlink(missing_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    if has_images:
        # Numbered JPEGs beyond the new count would otherwise linger as unlisted strays.
        keep = {image_name(i, count) for i in range(1, count + 1)}
        for stale in image_dir.glob("*.jpg"):
            if stale.stem.isdigit() and stale.name not in keep:
                stale.unlink()
    return image_dir


def _chunk_jobs(
    image_dir: Path, seed: int, count: int, chunk_size: int
) -> list[tuple[str, int, int, int, int]]:
    return [
        (str(image_dir), seed, count, start, min(start + chunk_size, count + 1))
        for start in range(1, count + 1, chunk_size)
    ]


def _run_jobs(
    jobs: list[tuple[str, int, int, int, int]], workers: int
) -> Generator[list[tuple[bool, ...]], None, None]:
    """Chunk results in job order, rendered in-process or by a pool of ``workers``."""
    if workers == 1:
        yield from map(_render_chunk, jobs)
        return
    # "spawn" rather than the Linux default "fork": the trainer calls this after importing torch,
    # and forking a process with live OpenMP/BLAS threads can deadlock. ProcessPoolExecutor
    # rather than multiprocessing.Pool: a worker that dies (e.g. cannot import this module)
    # raises BrokenProcessPool instead of being respawned forever, which hangs Pool.imap.
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        yield from executor.map(_render_chunk, jobs)
    finally:
        # On an error or Ctrl-C, drop the queued chunks instead of rendering them all first.
        executor.shutdown(wait=True, cancel_futures=True)


def generate_synthetic_celeba(
    out_dir: Path,
    count: int,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
) -> SynthReport:
    """Write ``count`` synthetic faces to ``out_dir`` in the CelebA layout.

    Images are written first, then the partition file, then the attribute file (both text files
    atomically), so a crash leaves no attribute file and readers treat the set as incomplete.
    Output bytes depend only on ``count`` and ``seed``, never on ``workers``.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    image_dir = _prepare_output(out_dir, count, overwrite)

    # Small chunks keep all workers busy on small sets; larger ones amortise pickling overhead.
    chunk_size = max(1, min(_CHUNK_SIZE, math.ceil(count / (4 * workers))))
    jobs = _chunk_jobs(image_dir, seed, count, chunk_size)
    rows: list[tuple[bool, ...]] = []
    with tqdm(
        total=count,
        unit="img",
        desc="synthetic faces",
        file=sys.stderr,
        disable=not (progress and count > _PROGRESS_MIN_COUNT),
    ) as bar:
        results = _run_jobs(jobs, min(workers, len(jobs)))
        try:
            for chunk_rows in results:
                rows.extend(chunk_rows)
                bar.update(len(chunk_rows))
        finally:
            results.close()  # stop the workers now, not whenever the generator is collected

    train, val, test = split_sizes(count)
    names = [image_name(i, count) for i in range(1, count + 1)]
    partitions = [0] * train + [1] * val + [2] * test
    _write_text_atomically(
        out_dir / CELEBA_PARTITION_FILE,
        (f"{name} {split}" for name, split in zip(names, partitions, strict=True)),
    )
    _write_text_atomically(
        out_dir / SYNTHETIC_MANIFEST_FILE,
        [json.dumps({"generator": "vaegan synthetic faces", "count": count, "seed": seed})],
    )
    _write_text_atomically(out_dir / CELEBA_ATTRIBUTE_FILE, _attribute_lines(names, rows))

    seconds = time.perf_counter() - started
    return SynthReport(
        count=count,
        seconds=seconds,
        images_per_second=count / seconds if seconds > 0 else float("inf"),
        attribute_counts={
            name: sum(row[column] for row in rows) for column, name in enumerate(SYNTH_ATTRIBUTES)
        },
        split_sizes={"train": train, "val": val, "test": test},
    )


def _attribute_lines(names: Sequence[str], rows: Sequence[tuple[bool, ...]]) -> Iterator[str]:
    yield str(len(names))
    yield " ".join(SYNTH_ATTRIBUTES)
    for name, row in zip(names, rows, strict=True):
        # Width-2 right-aligned values, exactly as in the real list_attr_celeba.txt.
        yield name + " " + " ".join(" 1" if value else "-1" for value in row)

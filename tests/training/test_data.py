import csv
import io
import logging
import os
import shutil
import time

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from model.codec import DEFAULT_LIMITS, Preprocessing, load_image_tensor
from model.files import FileRefusedError
from training.data import (
    CelebADataset,
    DatasetError,
    ImageFolderDataset,
    collate_samples,
    open_dataset,
    read_celeba_index,
    read_synthetic_manifest,
)
from training.synth import SYNTH_ATTRIBUTES


def _attribute_rows(root):
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    return lines[1].split(), [line.split() for line in lines[2:]]


def test_reads_the_celeba_layout(synthetic_celeba):
    index = read_celeba_index(synthetic_celeba)
    names, rows = _attribute_rows(synthetic_celeba)
    assert index.attribute_names == tuple(names) == SYNTH_ATTRIBUTES
    assert index.files == tuple(row[0] for row in rows)
    assert index.labels.dtype == torch.int8
    assert index.labels.tolist() == [[int(v) for v in row[1:]] for row in rows]
    assert set(index.partitions.tolist()) == {0, 1, 2}


def test_splits_partition_the_set(synthetic_celeba):
    sizes = {
        split: len(CelebADataset(synthetic_celeba, split=split))
        for split in ("train", "val", "test")
    }
    assert sum(sizes.values()) == 60
    assert len(CelebADataset(synthetic_celeba, split="all")) == 60
    assert len(CelebADataset(synthetic_celeba, split="train+val")) == sizes["train"] + sizes["val"]
    partition = dict(
        line.split()
        for line in (synthetic_celeba / "list_eval_partition.txt").read_text().splitlines()
    )
    val = CelebADataset(synthetic_celeba, split="val")
    assert all(partition[path.name] == "1" for path in val.paths)


def test_samples_are_preprocessed_images_with_their_labels(synthetic_celeba):
    dataset = CelebADataset(synthetic_celeba, split="test")
    sample = dataset[2]
    assert sample.image.shape == (3, 64, 64)
    assert sample.image.min() >= -1 and sample.image.max() <= 1
    # The same function the service uses, on the same bytes.
    assert torch.equal(
        sample.image, load_image_tensor(dataset.paths[2].read_bytes(), Preprocessing())
    )
    _, rows = _attribute_rows(synthetic_celeba)
    row = next(r for r in rows if r[0] == dataset.paths[2].name)
    assert sample.labels.tolist() == [int(v) for v in row[1:]]
    assert sample.position == 2


def test_images_come_as_they_are_on_disk(synthetic_celeba):
    # Flip augmentation is the sampler's (tests/training/test_sampling.py), never a coin toss here.
    dataset = CelebADataset(synthetic_celeba, split="train")
    plain = dataset.load(0)
    torch.manual_seed(0)
    assert all(torch.equal(dataset[0].image, plain) for _ in range(20))


def test_other_sizes_and_channels(synthetic_celeba):
    dataset = CelebADataset(
        synthetic_celeba, preprocessing=Preprocessing(image_size=32, channels=1), limit=3
    )
    assert len(dataset) == 3
    assert dataset[0].image.shape == (1, 32, 32)


def test_batches_through_worker_processes(synthetic_celeba):
    dataset = CelebADataset(synthetic_celeba, split="all")
    loader = DataLoader(dataset, batch_size=16, num_workers=2, collate_fn=collate_samples)
    batches = list(loader)
    assert sum(len(b.images) for b in batches) == 60
    assert all(b.skipped == 0 for b in batches)
    assert batches[0].images.shape == (16, 3, 64, 64)
    assert batches[0].labels.shape == (16, len(SYNTH_ATTRIBUTES))
    assert sorted(torch.cat([b.indices for b in batches]).tolist()) == list(range(60))


def test_damaged_images_are_skipped_and_counted(celeba_copy, caplog):
    images = celeba_copy / "img_align_celeba"
    truncated = images / "000003.jpg"
    truncated.write_bytes(truncated.read_bytes()[:500])
    (images / "000010.jpg").write_bytes(b"not a jpeg at all")
    (images / "000020.jpg").write_bytes(b"")
    dataset = CelebADataset(celeba_copy, split="all")
    with caplog.at_level(logging.WARNING, logger="training.data"):
        batches = list(DataLoader(dataset, batch_size=8, collate_fn=collate_samples))
    assert sum(b.skipped for b in batches) == 3
    assert sum(len(b.images) for b in batches) == 57
    assert "000003.jpg" in caplog.text and "truncated" in caplog.text
    assert "000010.jpg" in caplog.text


def test_a_batch_of_only_damaged_images_is_empty_not_a_crash(celeba_copy):
    for name in ("000001.jpg", "000002.jpg"):
        (celeba_copy / "img_align_celeba" / name).write_bytes(b"junk")
    dataset = CelebADataset(celeba_copy, split="all")
    batch = collate_samples([dataset[0], dataset[1]])
    assert batch.skipped == 2 and len(batch.images) == 0


@pytest.mark.timeout(20)
def test_anything_but_a_regular_file_is_skipped_and_counted_without_reading_it(celeba_copy, caplog):
    images = celeba_copy / "img_align_celeba"
    # A FIFO used to block the loader forever, a link to /dev/zero to grow it to 6.9 GiB.
    (images / "000001.jpg").unlink()
    os.mkfifo(images / "000001.jpg")
    (images / "000002.jpg").unlink()
    (images / "000002.jpg").symlink_to("/dev/zero")
    (images / "000003.jpg").unlink()
    (images / "000003.jpg").mkdir()
    with (images / "000004.jpg").open("r+b") as handle:
        handle.truncate(DEFAULT_LIMITS.max_bytes + 1)  # sparse: no disk, but over the limit
    dataset = CelebADataset(celeba_copy, split="all")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="training.data"):
        batches = list(DataLoader(dataset, batch_size=8, collate_fn=collate_samples))
    assert time.monotonic() - started < 10
    assert sum(b.skipped for b in batches) == 4
    assert sum(len(b.images) for b in batches) == 56
    assert "000001.jpg: not a regular file (a FIFO)" in caplog.text
    assert "000002.jpg: not a regular file (a character device)" in caplog.text
    assert "000003.jpg: not a regular file (a folder)" in caplog.text
    assert f"the limit is {DEFAULT_LIMITS.max_bytes:,} bytes" in caplog.text
    with pytest.raises(FileRefusedError, match="a FIFO"):
        dataset.load(0)


@pytest.mark.timeout(20)
def test_a_fifo_among_the_label_files_or_the_manifest_never_blocks(celeba_copy):
    manifest = celeba_copy / "synthetic_faces.json"
    assert read_synthetic_manifest(celeba_copy) is not None
    manifest.unlink()
    os.mkfifo(manifest)
    assert read_synthetic_manifest(celeba_copy) is None
    attributes = celeba_copy / "list_attr_celeba.txt"
    attributes.unlink()
    os.mkfifo(attributes)
    with pytest.raises(DatasetError, match="missing: list_attr_celeba.txt"):
        read_celeba_index(celeba_copy)


# --- broken folders: one error that lists what is wrong --------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        CelebADataset(tmp_path / "nowhere")


def test_missing_pieces_are_all_listed(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(DatasetError) as info:
        read_celeba_index(tmp_path)
    assert "list_attr_celeba.txt" in str(info.value)
    assert "list_eval_partition.txt" in str(info.value)


def test_partition_file_is_only_needed_for_splits(celeba_copy):
    (celeba_copy / "list_eval_partition.txt").unlink()
    assert len(CelebADataset(celeba_copy, split="all")) == 60
    with pytest.raises(DatasetError, match="missing: list_eval_partition.txt"):
        CelebADataset(celeba_copy, split="train")


def test_missing_images_are_named(celeba_copy):
    (celeba_copy / "img_align_celeba" / "000007.jpg").unlink()
    (celeba_copy / "img_align_celeba" / "000008.jpg").unlink()
    with pytest.raises(DatasetError, match="2 of 60 images .* are not in .*000007.jpg, 000008.jpg"):
        read_celeba_index(celeba_copy)


def _edit_attributes(root, edit):
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def test_malformed_attribute_file_lists_every_problem(celeba_copy):
    def damage(lines):
        lines[0] = "sixty"
        lines[4] = lines[4].replace(" 1", " 2", 1).replace("-1", " 2", 1)
        lines[6] = lines[6].rsplit(" ", 3)[0]
        return lines

    _edit_attributes(celeba_copy, damage)
    with pytest.raises(DatasetError) as info:
        read_celeba_index(celeba_copy)
    message = str(info.value)
    assert "line 1 should be the number of images, got 'sixty'" in message
    assert "line 5: values must be 1 or -1" in message
    assert "line 7: expected a file name and 22 values" in message


def test_count_mismatch_means_an_incomplete_file(celeba_copy):
    _edit_attributes(celeba_copy, lambda lines: lines[:-5])
    with pytest.raises(DatasetError, match="says it lists 60 images but has 55 rows"):
        read_celeba_index(celeba_copy)


def test_bad_partition_rows(celeba_copy):
    path = celeba_copy / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].split()[0] + " 7"
    path.write_text("\n".join([*lines[:-2], lines[3]]) + "\n")
    with pytest.raises(DatasetError) as info:
        read_celeba_index(celeba_copy)
    assert "line 4: expected '<file> 0|1|2'" in str(info.value)
    assert "images have no split" in str(info.value)


def test_unknown_split(synthetic_celeba):
    with pytest.raises(DatasetError, match="unknown split 'training'.*train, val, test"):
        CelebADataset(synthetic_celeba, split="training")


def test_kaggle_csv_layout_and_nested_image_folder(celeba_copy):
    names, rows = _attribute_rows(celeba_copy)
    (celeba_copy / "list_attr_celeba.txt").unlink()
    with (celeba_copy / "list_attr_celeba.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", *names])
        writer.writerows(rows)
    partition = (celeba_copy / "list_eval_partition.txt").read_text().split()
    (celeba_copy / "list_eval_partition.txt").unlink()
    with (celeba_copy / "list_eval_partition.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "partition"])
        writer.writerows(zip(partition[::2], partition[1::2], strict=True))
    images = celeba_copy / "img_align_celeba"
    nested = images / "img_align_celeba"
    nested.mkdir()
    for path in list(images.glob("*.jpg")):
        shutil.move(path, nested / path.name)
    index = read_celeba_index(celeba_copy)
    assert index.image_dir == nested
    assert index.labels.tolist() == [[int(v) for v in row[1:]] for row in rows]
    assert len(CelebADataset(celeba_copy, split="test")) > 0


# --- image folders ----------------------------------------------------------------------------


def _save(path, colour, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), colour).save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue())


def test_image_folder_is_recursive_and_ignores_the_rest(tmp_path):
    _save(tmp_path / "a.png", (255, 0, 0), "PNG")
    _save(tmp_path / "people" / "b.JPG", (0, 255, 0), "JPEG")
    _save(tmp_path / "people" / "deeper" / "c.webp", (0, 0, 255), "WEBP")
    _save(tmp_path / ".thumbnails" / "d.png", (0, 0, 0), "PNG")
    _save(tmp_path / ".hidden.png", (0, 0, 0), "PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = ImageFolderDataset(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in dataset.paths] == [
        "a.png",
        "people/b.JPG",
        "people/deeper/c.webp",
    ]
    batch = collate_samples([dataset[i] for i in range(3)])
    assert batch.images.shape == (3, 3, 64, 64)
    assert batch.labels.shape == (3, 0)
    assert batch.images[0, 0].mean() > 0.9 and batch.images[2, 2].mean() > 0.9
    assert dataset.describe() == {"kind": "image-folder", "root": str(tmp_path), "images": 3}


def test_empty_image_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(
        DatasetError, match="no images found under .*looked recursively for .*\\.jpg"
    ):
        ImageFolderDataset(tmp_path)


def test_open_dataset_recognises_the_layout(synthetic_celeba, tmp_path):
    assert isinstance(open_dataset(synthetic_celeba), CelebADataset)
    _save(tmp_path / "x.png", (1, 2, 3), "PNG")
    assert isinstance(open_dataset(tmp_path), ImageFolderDataset)

"""Tests for the synthetic CelebA-layout generator (the training/synth/ package).

The synthetic set is the fixture every other data test builds on, so these tests pin down the
file format, determinism, label truthfulness (rules + visibility) and failure behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import synth
from training.synth import (
    HAIR_COLOUR_ATTRIBUTES,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    SYNTH_ATTRIBUTES,
    FaceParams,
    attribute_violations,
    face_rng,
    generate_synthetic_celeba,
    image_name,
    render_face,
    sample_face,
    split_sizes,
    writer,
)

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _read_attr_file(path: Path) -> tuple[int, list[str], list[str], list[list[int]]]:
    lines = path.read_text(encoding="ascii").splitlines()
    count = int(lines[0])
    names = lines[1].split()
    files: list[str] = []
    values: list[list[int]] = []
    for line in lines[2:]:
        fields = line.split()
        files.append(fields[0])
        values.append([int(v) for v in fields[1:]])
    return count, names, files, values


def _read_partition(path: Path) -> dict[str, int]:
    rows = (line.split() for line in path.read_text(encoding="ascii").splitlines())
    return {name: int(split) for name, split in rows}


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.SynthReport]:
    out = tmp_path_factory.mktemp("synth") / "celeba"
    report = generate_synthetic_celeba(out, 60, seed=3, progress=False)
    return out, report


# ----------------------------------------------------------------------------------------------
# Layout and file format
# ----------------------------------------------------------------------------------------------


def test_layout_matches_celeba(small_set: tuple[Path, synth.SynthReport]) -> None:
    out, report = small_set
    image_dir = out / "img_align_celeba"
    jpgs = sorted(p.name for p in image_dir.iterdir())
    assert jpgs == [f"{i:06d}.jpg" for i in range(1, 61)]
    for name in jpgs[:5] + jpgs[-2:]:
        with Image.open(image_dir / name) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (IMAGE_WIDTH, IMAGE_HEIGHT) == (178, 218)

    count, names, files, values = _read_attr_file(out / "list_attr_celeba.txt")
    assert count == 60
    assert tuple(names) == SYNTH_ATTRIBUTES
    assert files == jpgs
    assert all(len(row) == len(SYNTH_ATTRIBUTES) for row in values)
    assert {v for row in values for v in row} <= {-1, 1}

    partition = _read_partition(out / "list_eval_partition.txt")
    assert sorted(partition) == jpgs
    splits = [partition[name] for name in jpgs]
    assert set(splits) == {0, 1, 2}
    assert splits == sorted(splits), "splits must be contiguous like CelebA's"

    assert report.count == 60
    assert report.images_per_second > 0
    assert report.split_sizes == {
        "train": splits.count(0),
        "val": splits.count(1),
        "test": splits.count(2),
    }
    for column, name in enumerate(SYNTH_ATTRIBUTES):
        assert report.attribute_counts[name] == sum(row[column] == 1 for row in values)


def test_attribute_rows_use_celeba_spacing(small_set: tuple[Path, synth.SynthReport]) -> None:
    out, _ = small_set
    lines = (out / "list_attr_celeba.txt").read_text(encoding="ascii").splitlines()
    assert lines[1] == " ".join(SYNTH_ATTRIBUTES)
    row = lines[2]
    assert row.startswith("000001.jpg ")
    values = row[len("000001.jpg ") :]
    # Each value is right-aligned in width 2 and separated by one space: "-1  1 -1 ...".
    assert len(values) == 3 * len(SYNTH_ATTRIBUTES) - 1
    cells = [values[i : i + 2] for i in range(0, len(values), 3)]
    assert set(cells) <= {"-1", " 1"}
    assert all(values[i] == " " for i in range(2, len(values), 3))


def test_image_names_widen_beyond_six_digits() -> None:
    assert image_name(1, 10) == "000001.jpg"
    assert image_name(12, 999_999) == "000012.jpg"
    assert image_name(12, 1_000_000) == "0000012.jpg"


@pytest.mark.parametrize("count", [1, 2, 3, 4, 10, 57, 1000, 202_599])
def test_split_sizes_follow_celeba(count: int) -> None:
    train, val, test = split_sizes(count)
    assert train + val + test == count
    assert min(train, val, test) >= 0
    if count >= 3:
        assert min(train, val, test) >= 1
    if count >= 1000:
        assert abs(train / count - 162_770 / 202_599) < 0.002
        assert abs(val / count - 19_867 / 202_599) < 0.002
    if count == 202_599:
        assert (train, val, test) == (162_770, 19_867, 19_962)


# ----------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_seed_matters(tmp_path: Path) -> None:
    first = generate_synthetic_celeba(tmp_path / "a", 25, seed=11, progress=False)
    generate_synthetic_celeba(tmp_path / "b", 25, seed=11, progress=False)
    generate_synthetic_celeba(tmp_path / "c", 25, seed=12, progress=False)
    a, b, c = (_all_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    differing = [name for name in a if name.endswith(".jpg") and a[name] != c[name]]
    assert len(differing) == first.count


def test_worker_count_does_not_change_output(tmp_path: Path) -> None:
    generate_synthetic_celeba(tmp_path / "one", 40, seed=5, workers=1, progress=False)
    generate_synthetic_celeba(tmp_path / "two", 40, seed=5, workers=2, progress=False)
    assert _all_bytes(tmp_path / "one") == _all_bytes(tmp_path / "two")


def test_face_rng_depends_only_on_seed_and_index() -> None:
    assert sample_face(face_rng(0, 7)) == sample_face(face_rng(0, 7))
    assert sample_face(face_rng(0, 7)) != sample_face(face_rng(0, 8))
    assert sample_face(face_rng(0, 7)) != sample_face(face_rng(1, 7))


# ----------------------------------------------------------------------------------------------
# Label truthfulness: rules and frequencies
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampled_attributes() -> list[Mapping[str, bool]]:
    return [sample_face(face_rng(1, i)).attributes for i in range(1, 2001)]


def test_every_sample_obeys_the_rules(sampled_attributes: list[Mapping[str, bool]]) -> None:
    for attrs in sampled_attributes:
        assert attribute_violations(attrs) == []
        # Spelled out as well, so a bug in attribute_violations cannot hide one in sampling.
        assert sum(attrs[name] for name in HAIR_COLOUR_ATTRIBUTES) <= 1
        if attrs["Bald"]:
            assert not any(attrs[name] for name in HAIR_COLOUR_ATTRIBUTES)
            assert not (attrs["Bangs"] or attrs["Wavy_Hair"] or attrs["Wearing_Hat"])
        if attrs["Mustache"] or attrs["Goatee"]:
            assert attrs["Male"]
        assert attrs["No_Beard"] == (not (attrs["Mustache"] or attrs["Goatee"]))
        if attrs["Wearing_Lipstick"]:
            assert not attrs["Male"]


def test_attribute_violations_catches_broken_combinations() -> None:
    base = dict.fromkeys(SYNTH_ATTRIBUTES, False) | {"No_Beard": True}
    assert attribute_violations(base) == []
    broken = [
        {"Black_Hair": True, "Blond_Hair": True},
        {"Bald": True, "Bangs": True},
        {"Mustache": True, "No_Beard": False},
        {"Male": True, "Goatee": True},  # No_Beard still claims no beard
        {"Wearing_Lipstick": True, "Male": True},
    ]
    for change in broken:
        assert attribute_violations(base | change), change


# CelebA's positive rates (approximately), with the tolerance each gets over 2000 samples.
_TARGET_RATES = {
    "Male": (0.42, 0.04),
    "Smiling": (0.48, 0.04),
    "Mouth_Slightly_Open": (0.48, 0.04),
    "Black_Hair": (0.24, 0.04),
    "Blond_Hair": (0.15, 0.03),
    "Brown_Hair": (0.20, 0.04),
    "Gray_Hair": (0.045, 0.02),
    "Bald": (0.025, 0.015),
    "Bangs": (0.15, 0.03),
    "Eyeglasses": (0.065, 0.02),
    "Wearing_Hat": (0.05, 0.02),
    "Mustache": (0.04, 0.02),
    "Goatee": (0.06, 0.02),
    "No_Beard": (0.90, 0.04),
    "Pale_Skin": (0.04, 0.02),
    "Rosy_Cheeks": (0.065, 0.02),
    "Wearing_Lipstick": (0.47, 0.04),
    "Wearing_Earrings": (0.19, 0.03),
    "Bushy_Eyebrows": (0.14, 0.03),
    "Narrow_Eyes": (0.115, 0.03),
    "Wavy_Hair": (0.30, 0.04),
    "Blurry": (0.05, 0.02),
}


def test_frequencies_are_celeba_like(sampled_attributes: list[Mapping[str, bool]]) -> None:
    assert set(_TARGET_RATES) == set(SYNTH_ATTRIBUTES)
    n = len(sampled_attributes)
    for name, (target, tolerance) in _TARGET_RATES.items():
        rate = sum(attrs[name] for attrs in sampled_attributes) / n
        assert abs(rate - target) <= tolerance, f"{name}: {rate:.3f} vs {target}"
        # Small demo sets must still contain positives of the rare attributes.
        assert rate >= 0.015, name


def test_smiling_and_open_mouth_are_correlated(
    sampled_attributes: list[Mapping[str, bool]],
) -> None:
    smiling = [a for a in sampled_attributes if a["Smiling"]]
    serious = [a for a in sampled_attributes if not a["Smiling"]]
    open_when_smiling = sum(a["Mouth_Slightly_Open"] for a in smiling) / len(smiling)
    open_when_serious = sum(a["Mouth_Slightly_Open"] for a in serious) / len(serious)
    assert open_when_smiling > open_when_serious + 0.3


# ----------------------------------------------------------------------------------------------
# Label truthfulness: every attribute is visibly drawn
# ----------------------------------------------------------------------------------------------

_NEUTRAL = dict.fromkeys(SYNTH_ATTRIBUTES, False) | {"No_Beard": True}

# (off, on) settings on top of _NEUTRAL for attributes whose flip needs context to stay legal
# under the rules (a mustache needs a man, ...); others just flip the attribute alone. Hair
# colours therefore start from the unlabelled (red/ginger) colour.
_VISIBILITY_CASES: dict[str, tuple[dict[str, bool], dict[str, bool]]] = {
    "Bald": ({"Male": True}, {"Male": True, "Bald": True}),
    "Mustache": ({"Male": True}, {"Male": True, "Mustache": True, "No_Beard": False}),
    "Goatee": ({"Male": True}, {"Male": True, "Goatee": True, "No_Beard": False}),
    # No_Beard is drawn as the absence of a beard: off = goatee, on = clean-shaven.
    "No_Beard": ({"Male": True, "Goatee": True, "No_Beard": False}, {"Male": True}),
}

# Each flip must change at least this many pixels by more than _PIXEL_DELTA in some channel.
# The smallest features (mouth shape, earrings, brows) change ~100-300 pixels; whole-head ones
# (hair colour, hat, skin) thousands.
_MIN_CHANGED_PIXELS = 80
_PIXEL_DELTA = 30


def _visibility_pair(params: FaceParams, name: str) -> tuple[FaceParams, FaceParams]:
    off, on = _VISIBILITY_CASES.get(name, ({}, {name: True}))
    return params.with_attributes(_NEUTRAL | off), params.with_attributes(_NEUTRAL | on)


@pytest.mark.parametrize("name", SYNTH_ATTRIBUTES)
def test_each_attribute_is_visibly_drawn(name: str) -> None:
    for index in (1, 2, 3, 4):
        # Same nuisance for both renders: only the attribute under test differs.
        off_params, on_params = _visibility_pair(sample_face(face_rng(9, index)), name)
        assert attribute_violations(off_params.attributes) == []
        assert attribute_violations(on_params.attributes) == []
        off_pixels = np.asarray(render_face(off_params), dtype=np.int16)
        on_pixels = np.asarray(render_face(on_params), dtype=np.int16)
        changed = int((np.abs(on_pixels - off_pixels).max(axis=2) > _PIXEL_DELTA).sum())
        assert changed >= _MIN_CHANGED_PIXELS, f"{name} (face {index}): {changed} pixels"


def test_rendering_is_deterministic_and_sized() -> None:
    params = sample_face(face_rng(0, 1))
    first, second = render_face(params), render_face(params)
    assert first.size == (178, 218)
    assert first.mode == "RGB"
    assert first.tobytes() == second.tobytes()


def test_face_params_reject_unknown_attribute_names() -> None:
    params = sample_face(face_rng(0, 1))
    with pytest.raises(ValueError, match="Smilling"):
        params.with_attributes({"Smilling": True})


# ----------------------------------------------------------------------------------------------
# Refusals and interrupted runs
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, -3])
def test_count_must_be_positive(tmp_path: Path, count: int) -> None:
    with pytest.raises(ValueError, match="count"):
        generate_synthetic_celeba(tmp_path / "out", count, progress=False)


def test_refuses_to_overwrite_existing_images(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate_synthetic_celeba(out, 5, seed=0, progress=False)
    before = _all_bytes(out)
    with pytest.raises(FileExistsError, match="img_align_celeba"):
        generate_synthetic_celeba(out, 5, seed=1, progress=False)
    assert _all_bytes(out) == before


def test_overwrite_replaces_the_set_and_drops_stale_images(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate_synthetic_celeba(out, 8, seed=0, progress=False)
    generate_synthetic_celeba(out, 5, seed=1, progress=False, overwrite=True)
    generate_synthetic_celeba(tmp_path / "fresh", 5, seed=1, progress=False)
    assert _all_bytes(out) == _all_bytes(tmp_path / "fresh")


def test_interrupted_run_leaves_no_attribute_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[Path] = []
    real_write = writer.write_jpeg

    def failing_write(path: Path, image: Image.Image) -> None:
        if len(written) == 7:
            raise KeyboardInterrupt("simulated interruption")
        real_write(path, image)
        written.append(path)

    monkeypatch.setattr(writer, "write_jpeg", failing_write)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_celeba(out, 20, progress=False)
    assert len(list((out / "img_align_celeba").iterdir())) == 7
    assert not (out / "list_attr_celeba.txt").exists()
    assert not (out / "list_eval_partition.txt").exists()


def test_interrupted_overwrite_does_not_keep_the_old_attribute_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    generate_synthetic_celeba(out, 6, seed=0, progress=False)

    def failing_write(path: Path, image: Image.Image) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writer, "write_jpeg", failing_write)
    with pytest.raises(OSError, match="disk full"):
        generate_synthetic_celeba(out, 6, seed=1, progress=False, overwrite=True)
    assert not (out / "list_attr_celeba.txt").exists()

import json
import math
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from model import load_checkpoint, save_checkpoint
from tests.training.conftest import PREPROCESSING
from training.attributes import compute_attribute_vectors
from training.cli import main
from training.data import SYNTHETIC_MANIFEST_FILE, CelebADataset
from training.inference import InferenceOptions
from training.judge import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER_KEY,
    JudgeArchitecture,
    JudgeError,
    build_judge,
    bundled_judge_path,
    decode_split,
    load_judge,
    save_judge,
    train_judge,
)
from training.judge_eval import (
    JUDGE_METRIC_NAMES,
    evaluate_with_judge,
    frechet_distance,
    gaussian_frechet_distance,
)

# Small widths where only the plumbing is under test: the real judge's are the defaults.
TINY = JudgeArchitecture(widths=(8, 16), kernel_size=3)
FRACTIONS = [name for name in JUDGE_METRIC_NAMES if name != "frechet_distance"]


def _error(capsys) -> str:
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def splits(synthetic_celeba) -> tuple[CelebADataset, CelebADataset]:
    return (
        CelebADataset(synthetic_celeba, split="train", preprocessing=PREPROCESSING),
        CelebADataset(synthetic_celeba, split="test", preprocessing=PREPROCESSING),
    )


@pytest.fixture(scope="module")
def judge_file(splits, tmp_path_factory) -> Path:
    """A judge trained for two epochs on the 48 training faces (default architecture)."""
    train, test = splits
    report = train_judge(train, test, epochs=2, batch_size=16, seed=0)
    path = tmp_path_factory.mktemp("judges") / "judge.safetensors"
    return save_judge(path, report.judge, dataset={"kind": "test"}, training={"epochs": 2})


@pytest.fixture(scope="module")
def checkpoint_file(shared_small64, synthetic_celeba, tmp_path_factory) -> Path:
    """The briefly trained small64 model with attribute vectors for most attributes."""
    faces = CelebADataset(synthetic_celeba, split="all", preprocessing=PREPROCESSING)
    vectors = compute_attribute_vectors(
        shared_small64, faces, options=InferenceOptions(count=10_000, batch_size=60), min_examples=3
    )
    path = tmp_path_factory.mktemp("checkpoints") / "model.safetensors"
    return save_checkpoint(
        path, shared_small64, preprocessing=PREPROCESSING, attributes=vectors.vectors
    )


# --------------------------------------------------------------------------------------------
# the network and the file


def test_predict_and_features_have_one_row_per_image(splits):
    judge = build_judge(splits[0].attribute_names, seed=0)
    images = torch.rand(5, 3, 64, 64) * 2 - 1
    probabilities = judge.predict(images)
    assert probabilities.shape == (5, len(splits[0].attribute_names))
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert judge.features(images).shape == (5, 256)
    assert judge.verdicts(images).dtype == torch.bool
    with pytest.raises(ValueError, match=r"takes \(N, 3, 64, 64\) images"):
        judge.predict(torch.zeros(2, 3, 32, 32))


def test_a_judge_survives_a_round_trip(judge_file):
    judge = load_judge(judge_file)
    assert not judge.network.training
    assert judge.header.format_version == FORMAT_VERSION
    assert judge.header.architecture == JudgeArchitecture()
    assert judge.preprocessing == PREPROCESSING
    assert set(judge.header.test_accuracy) == set(judge.attribute_names)
    assert judge.header.training == {"epochs": 2}
    saved = json.loads(_metadata(judge_file)[HEADER_KEY])
    assert _metadata(judge_file)["format"] == FORMAT_NAME
    assert saved["image_size"] == 64 and saved["channels"] == 3
    assert saved["architecture"] == {"widths": [32, 64, 128, 256], "kernel_size": 5}

    again = judge_file.with_name("again.safetensors")
    save_judge(again, judge)
    reloaded = load_judge(again)
    images = torch.rand(4, 3, 64, 64) * 2 - 1
    assert torch.equal(judge.predict(images), reloaded.predict(images))
    assert reloaded.header.dataset == {"kind": "test"}  # kept unless replaced


def _metadata(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    metadata: dict[str, str] = json.loads(data[8 : 8 + length])["__metadata__"]
    return metadata


def _rewrite(path: Path, target: Path, **changes: object) -> Path:
    """The judge at `path` with its JSON header changed, written to `target`."""
    judge = load_judge(path)
    header = judge.header.to_json() | changes
    tensors = {k: v.contiguous() for k, v in judge.network.state_dict().items()}
    metadata = {"format": FORMAT_NAME, HEADER_KEY: json.dumps(header)}
    target.write_bytes(safetensors_save(tensors, metadata=metadata))
    return target


def test_loading_refuses_what_is_not_a_usable_judge(
    judge_file, checkpoint_file, synthetic_celeba, tmp_path
):
    def refused(path: Path, message: str) -> None:
        with pytest.raises(JudgeError, match=message) as info:
            load_judge(path)
        assert str(info.value).startswith(f"judge {path}: ")

    refused(tmp_path / "missing.safetensors", "no such file")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(judge_file.read_bytes()[:-100])
    refused(truncated, "truncated")
    pickled = tmp_path / "pickled.pt"
    torch.save(load_judge(judge_file).network.state_dict(), pickled)
    refused(pickled, "PyTorch pickle .* never unpickles")
    refused(checkpoint_file, "vaegan model checkpoint, not an attribute judge")
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(safetensors_save({"w": torch.zeros(2)}))
    refused(foreign, "not a vaegan judge")
    refused(_rewrite(judge_file, tmp_path / "newer.safetensors", format_version=2), "newer")
    refused(_rewrite(judge_file, tmp_path / "junk.safetensors", architecture={}), "malformed")
    # One attribute fewer than the head has outputs: the weights no longer fit.
    names = list(load_judge(judge_file).attribute_names)[1:]
    refused(
        _rewrite(judge_file, tmp_path / "shape.safetensors", attribute_names=names),
        "wrong shape",
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # A header asking for an enormous network is refused before any of it is built.
        ({"architecture": {"widths": [4096] * 4, "kernel_size": 5}}, "wrong shape"),
        ({"architecture": {"widths": [10**9] * 4, "kernel_size": 5}}, "whole numbers from 1"),
        ({"architecture": {"widths": [32, 64], "kernel_size": 10_001}}, "kernel_size must be"),
        ({"architecture": {"widths": [True, 64], "kernel_size": 5}}, "widths must be"),
        ({"attribute_names": [f"a{i}" for i in range(100_000)]}, "wrong shape: head.weight"),
    ],
)
def test_a_judge_header_describing_another_network_is_refused_at_once(
    judge_file, tmp_path, changes, message
):
    path = _rewrite(judge_file, tmp_path / "huge.safetensors", **changes)
    started = time.monotonic()
    with pytest.raises(JudgeError, match=message):
        load_judge(path)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "the judge metadata is nested more than 32 levels"),
        ("Infinity", "the judge metadata has Infinity"),
        ("9" * 5000, "the judge metadata has a 5,000-digit number"),
    ],
)
def test_judge_metadata_is_read_with_the_checkpoint_limits(judge_file, tmp_path, value, message):
    metadata = _metadata(judge_file)
    text = metadata[HEADER_KEY].replace('"dataset": {', f'"deep": {value}, "dataset": {{', 1)
    with safe_open(str(judge_file), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    path = tmp_path / "odd.safetensors"
    path.write_bytes(safetensors_save(tensors, metadata=metadata | {HEADER_KEY: text}))
    with pytest.raises(JudgeError, match=message):
        load_judge(path)


def test_save_writes_atomically(judge_file, tmp_path):
    target = tmp_path / "new" / "judge.safetensors"
    save_judge(target, load_judge(judge_file))
    assert [p.name for p in target.parent.iterdir()] == ["judge.safetensors"]


# --------------------------------------------------------------------------------------------
# training


def test_decoding_keeps_images_to_within_one_grey_level(splits):
    train, _ = splits
    decoded = decode_split(train, options=InferenceOptions(count=4))
    assert decoded.images.dtype == torch.uint8 and decoded.images.shape == (4, 3, 64, 64)
    images, targets = decoded.batch(torch.arange(4))
    exact = torch.stack([train.load(i) for i in range(4)])
    assert (images - exact).abs().max() <= 0.5 / 127.5 + 1e-6
    assert torch.equal(targets.bool(), train.labels[:4] > 0)


def test_training_runs_end_to_end_and_reports_every_attribute(splits):
    train, test = splits
    lines: list[str] = []
    report = train_judge(
        train, test, epochs=2, batch_size=16, architecture=TINY, seed=1, log=lines.append
    )
    assert list(report.accuracy) == list(train.attribute_names)
    assert all(0.0 <= value <= 1.0 for value in report.accuracy.values())
    assert (report.train_images, report.test_images, report.damaged) == (48, 6, 0)
    assert report.judge.header.test_accuracy == report.accuracy
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert not report.judge.network.training


# --------------------------------------------------------------------------------------------
# Frechet distance


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    shifted = features + 3.0
    assert frechet_distance(features, shifted) == pytest.approx(16 * 9.0, rel=1e-6)
    assert frechet_distance(features, features * 2) > 1.0


def test_frechet_distance_matches_closed_forms():
    # Diagonal covariances: |m1 - m2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
    m1, m2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    v1, v2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.0])
    expected = float((m1 - m2).pow(2).sum() + (v1.sqrt() - v2.sqrt()).pow(2).sum())
    distance = gaussian_frechet_distance(m1, torch.diag(v1), m2, torch.diag(v2))
    assert distance == pytest.approx(expected, rel=1e-10)
    assert expected == pytest.approx(5 + 11)

    # Covariances that do not commute: tr((C1 C2)^(1/2)) from the eigenvalues of C1 C2 itself.
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    b = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    c1, c2 = a @ a.T, b @ b.T
    cross = torch.linalg.eigvals(c1 @ c2).real.clamp(min=0).sqrt().sum()
    expected = float(c1.trace() + c2.trace() - 2 * cross)
    zero = torch.zeros(6)
    assert gaussian_frechet_distance(zero, c1, zero, c2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_handles_singular_covariances():
    # Fewer vectors than dimensions (a rank-deficient covariance) must not give NaN.
    generator = torch.Generator().manual_seed(2)
    few, others = torch.randn(5, 32, generator=generator), torch.randn(5, 32, generator=generator)
    assert math.isfinite(frechet_distance(few, others)) and frechet_distance(few, others) > 0
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(few, torch.randn(5, 8))


# --------------------------------------------------------------------------------------------
# evaluation with a judge


def test_evaluate_with_a_judge_gives_fractions_and_per_attribute_figures(
    checkpoint_file, judge_file, synthetic_celeba
):
    checkpoint, judge = load_checkpoint(checkpoint_file), load_judge(judge_file)
    faces = CelebADataset(synthetic_celeba, split="all", preprocessing=PREPROCESSING)
    vectors = {name: a.vector for name, a in checkpoint.attributes.items()}
    result = evaluate_with_judge(
        checkpoint.model,
        faces,
        judge,
        vectors=vectors,
        options=InferenceOptions(count=12, batch_size=8),
    )
    assert set(result.metrics) == set(JUDGE_METRIC_NAMES)
    assert all(0.0 <= result.metrics[name] <= 1.0 for name in FRACTIONS)
    assert result.metrics["frechet_distance"] > 0
    assert result.images == 12
    assert set(result.edited_attributes) == set(checkpoint.attributes)
    smiling = result.per_attribute["Smiling"]
    assert smiling["add_images"] + smiling["remove_images"] == 12
    unedited = set(judge.attribute_names) - set(checkpoint.attributes)
    for name in unedited:
        assert "edit_success_add" not in result.per_attribute[name]


def test_edit_figures_are_undefined_without_vectors(checkpoint_file, judge_file, synthetic_celeba):
    checkpoint, judge = load_checkpoint(checkpoint_file), load_judge(judge_file)
    faces = CelebADataset(synthetic_celeba, split="test", preprocessing=PREPROCESSING)
    result = evaluate_with_judge(checkpoint.model, faces, judge, options=InferenceOptions(count=6))
    assert result.edited_attributes == ()
    assert math.isnan(result.metrics["edit_success_add"])
    assert 0.0 <= result.metrics["reconstruction_agreement"] <= 1.0


# --------------------------------------------------------------------------------------------
# the commands


def test_judge_command_trains_reports_and_saves(synthetic_celeba, tmp_path, capsys):
    out = tmp_path / "judges" / "judge.safetensors"
    args = ["--data", str(synthetic_celeba), "--out", str(out), "--epochs", "1", "--quiet"]
    assert main(["judge", *args, "--batch-size", "16", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    judge = load_judge(out)
    assert [line.split()[0] for line in lines[1:-1]] == list(judge.attribute_names)
    assert "trained on 48 images for 1 epochs" in lines[-1]
    assert judge.header.training["command"].startswith("vaegan-train judge --data")
    assert judge.header.dataset["images"] == 48 and judge.header.dataset["test_images"] == 6


def test_judge_command_refuses_unusable_data_and_outputs(synthetic_celeba, tmp_path, capsys):
    folder = synthetic_celeba / "img_align_celeba"
    assert main(["judge", "--data", str(folder), "--out", str(tmp_path / "j.st")]) == 2
    assert "vaegan-train judge: error:" in _error(capsys)
    assert main(["judge", "--data", str(synthetic_celeba), "--out", str(tmp_path)]) == 2
    assert "is a folder" in _error(capsys)


def test_evaluate_json_with_a_judge(checkpoint_file, judge_file, synthetic_celeba, capsys):
    args = ["--checkpoint", str(checkpoint_file), "--data", str(synthetic_celeba), "--quiet"]
    args += ["--judge", str(judge_file), "--split", "all", "--count", "10", "--json"]
    assert main(["evaluate", *args, "--edit-strength", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(JUDGE_METRIC_NAMES) <= set(report)
    assert all(0.0 <= report[name] <= 1.0 for name in FRACTIONS)
    assert report["judge"]["edit_strength"] == 2.0
    assert set(report["per_attribute"]) == set(load_judge(judge_file).attribute_names)


def test_evaluate_judges_synthetic_faces_with_the_bundled_judge(
    checkpoint_file, celeba_copy, capsys
):
    args = ["--checkpoint", str(checkpoint_file), "--data", str(celeba_copy), "--quiet"]
    args += ["--split", "all", "--count", "8", "--json"]
    assert main(["evaluate", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["judge"]["path"] == str(bundled_judge_path())
    assert set(JUDGE_METRIC_NAMES) <= set(report)

    assert main(["evaluate", *args, "--no-judge"]) == 0
    assert "judge" not in json.loads(capsys.readouterr().out)

    # A CelebA folder that is not the built-in synthetic faces (real CelebA) gets no default.
    (celeba_copy / SYNTHETIC_MANIFEST_FILE).unlink()
    assert main(["evaluate", *args]) == 0
    assert "judge" not in json.loads(capsys.readouterr().out)


def test_evaluate_prints_the_judged_figures(checkpoint_file, judge_file, synthetic_celeba, capsys):
    args = ["--checkpoint", str(checkpoint_file), "--data", str(synthetic_celeba), "--quiet"]
    assert main(["evaluate", *args, "--judge", str(judge_file)]) == 0
    out = capsys.readouterr().out
    assert f"judged by {judge_file}; edits at strength 1.5" in out
    assert all(f"\n{name} " in out for name in JUDGE_METRIC_NAMES)
    assert "\nSmiling " in out


def test_evaluate_refuses_an_unusable_judge(
    checkpoint_file, judge_file, synthetic_celeba, tmp_path, capsys
):
    def refused(judge: Path, message: str, data: Path = synthetic_celeba) -> None:
        args = ["--checkpoint", str(checkpoint_file), "--data", str(data), "--quiet"]
        assert main(["evaluate", *args, "--judge", str(judge)]) == 2
        error = _error(capsys)
        assert error.startswith("vaegan-train evaluate: error:") and message in error, error

    refused(tmp_path / "nope.safetensors", "no such file")
    refused(checkpoint_file, "not an attribute judge")
    stranger = build_judge(("Smiling", "Freckles"), architecture=TINY)
    refused(save_judge(tmp_path / "stranger.safetensors", stranger), "does not label: Freckles")
    refused(judge_file, "needs labelled data", data=synthetic_celeba / "img_align_celeba")


@pytest.mark.parametrize("strength", ["0", "-1", "nan", "strong"])
def test_edit_strength_must_be_positive(checkpoint_file, synthetic_celeba, strength, capsys):
    args = ["--checkpoint", str(checkpoint_file), "--data", str(synthetic_celeba)]
    with pytest.raises(SystemExit) as info:
        main(["evaluate", *args, "--edit-strength", strength])
    assert info.value.code == 2
    assert "argument --edit-strength" in _error(capsys)

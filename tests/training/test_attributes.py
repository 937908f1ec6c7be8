import copy
import logging
import os
from pathlib import Path

import pytest
import torch

from model import (
    VAEGAN,
    AttributeVector,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from tests.training.conftest import PREPROCESSING
from training.attributes import (
    SOURCE_KEY,
    attribute_edits,
    compute_attribute_vectors,
    write_attributes,
)
from training.data import CelebADataset, ImageFolderDataset
from training.inference import InferenceOptions


@pytest.fixture
def model(trained_small64) -> VAEGAN:
    return trained_small64


@pytest.fixture(scope="module")
def faces(synthetic_celeba) -> CelebADataset:
    return CelebADataset(synthetic_celeba, split="all", preprocessing=PREPROCESSING)


def _posterior_means(model: VAEGAN, dataset: CelebADataset) -> torch.Tensor:
    images = torch.stack([dataset.load(i) for i in range(len(dataset))])
    with torch.no_grad():
        return model.eval().encode(images).mu.double()


def test_vectors_are_differences_of_class_means_of_mu(model, faces):
    report = compute_attribute_vectors(
        model, faces, options=InferenceOptions(count=10_000, batch_size=16), min_examples=3
    )

    mu = _posterior_means(model, faces)
    assert report.images == len(faces) == 60 and report.damaged == 0
    enough = []
    for column, name in enumerate(faces.attribute_names):
        present = faces.labels[:, column] == 1
        positives, negatives = int(present.sum()), int((~present).sum())
        if min(positives, negatives) < 3:
            assert report.skipped[name] == (positives, negatives)
            continue
        enough.append(name)
        attribute = report.vectors[name]
        expected = mu[present].mean(0) - mu[~present].mean(0)
        assert (attribute.positives, attribute.negatives) == (positives, negatives)
        assert attribute.vector.dtype == torch.float32
        torch.testing.assert_close(attribute.vector, expected.float(), rtol=1e-4, atol=1e-6)
    # In the data set's attribute order, and a real direction, not numerical noise.
    assert list(report.vectors) == enough and len(enough) >= 8
    assert report.vectors["Smiling"].norm > 1e-2


def test_controlled_vectors_hold_the_other_attributes_fixed(model, faces):
    """Twice the joint least-squares coefficient of each label: the change from y_a = -1 to +1
    with every other labelled attribute held fixed."""
    report = compute_attribute_vectors(
        model,
        faces,
        options=InferenceOptions(count=10_000, batch_size=16),
        min_examples=3,
        direction="controlled",
    )
    mu = _posterior_means(model, faces)
    labels = faces.labels.double()
    design = torch.cat([torch.ones(len(labels), 1, dtype=torch.float64), labels], 1)
    coefficients = torch.linalg.pinv(design) @ mu  # minimum-norm least squares
    plain = compute_attribute_vectors(
        model, faces, options=InferenceOptions(count=10_000, batch_size=16), min_examples=3
    )
    assert list(report.vectors) == list(plain.vectors)
    differs = 0
    for column, name in enumerate(faces.attribute_names):
        if name not in report.vectors:
            continue
        expected = 2 * coefficients[1 + column]
        torch.testing.assert_close(
            report.vectors[name].vector, expected.float(), rtol=1e-3, atol=1e-5
        )
        differs += not torch.allclose(report.vectors[name].vector, plain.vectors[name].vector)
    assert differs >= len(report.vectors) // 2, "correlated labels change the directions"


def test_with_one_labelled_attribute_controlled_is_the_mean_difference(model, faces):
    column = list(faces.attribute_names).index("Smiling")
    single = copy.copy(faces)  # the same images, labelled with Smiling alone
    single.attribute_names = ["Smiling"]
    single.labels = faces.labels[:, column : column + 1]
    controlled = compute_attribute_vectors(model, single, min_examples=3, direction="controlled")
    plain = compute_attribute_vectors(model, single, min_examples=3)
    torch.testing.assert_close(
        controlled.vectors["Smiling"].vector, plain.vectors["Smiling"].vector, rtol=1e-4, atol=1e-6
    )


def test_count_takes_the_first_images(model, faces):
    report = compute_attribute_vectors(
        model, faces, options=InferenceOptions(count=20, batch_size=16), min_examples=1
    )
    assert report.images == 20
    smiling = report.vectors.get("Smiling")
    assert smiling is not None and smiling.positives + smiling.negatives == 20
    assert smiling.positives == int(
        (faces.labels[:20, faces.attribute_names.index("Smiling")] == 1).sum()
    )


def test_rare_attributes_are_skipped_and_logged(model, faces, caplog):
    with caplog.at_level(logging.WARNING, logger="training.attributes"):
        report = compute_attribute_vectors(
            model, faces, options=InferenceOptions(count=10_000, batch_size=32), min_examples=25
        )

    positives = (faces.labels == 1).sum(0).tolist()
    expected_skipped = {
        name: (count, 60 - count)
        for name, count in zip(faces.attribute_names, positives, strict=True)
        if min(count, 60 - count) < 25
    }
    assert report.skipped == expected_skipped
    assert list(report.vectors) == [n for n in faces.attribute_names if n not in expected_skipped]
    assert report.vectors, "the fixture should have an attribute with 25 of each"
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for name, (count, _) in expected_skipped.items():
        assert f"attribute {name} skipped: {count} positive" in warned


def test_train_mode_does_not_leak_in(model, synthetic_celeba, faces):
    dataset = CelebADataset(synthetic_celeba, split="all", preprocessing=PREPROCESSING)
    model.train()
    try:
        report = compute_attribute_vectors(
            model, dataset, options=InferenceOptions(count=10_000, batch_size=16), min_examples=5
        )
        assert model.training, "the caller's train mode must be restored"
    finally:
        model.eval()
    plain = compute_attribute_vectors(
        model, faces, options=InferenceOptions(count=10_000, batch_size=60), min_examples=5
    )
    for name, attribute in plain.vectors.items():
        torch.testing.assert_close(report.vectors[name].vector, attribute.vector)


def test_damaged_images_are_skipped_and_counted(model, celeba_copy):
    (celeba_copy / "img_align_celeba" / "000003.jpg").write_bytes(b"not a jpeg at all")
    dataset = CelebADataset(celeba_copy, split="all", preprocessing=PREPROCESSING)
    report = compute_attribute_vectors(
        model, dataset, options=InferenceOptions(count=10_000, batch_size=16), min_examples=3
    )
    assert (report.images, report.damaged) == (59, 1)
    assert report.vectors["Smiling"].positives + report.vectors["Smiling"].negatives == 59


def test_unlabelled_images_are_refused(model, synthetic_celeba):
    folder = ImageFolderDataset(synthetic_celeba / "img_align_celeba", preprocessing=PREPROCESSING)
    with pytest.raises(ValueError, match="no attribute labels"):
        compute_attribute_vectors(model, folder)


def _checkpoint_with_metadata(model: VAEGAN, path: Path) -> Path:
    stale = AttributeVector(torch.ones(model.config.latent_dim), 3, 4)
    return save_checkpoint(
        path,
        model,
        preprocessing=PREPROCESSING,
        step=1234,
        dataset={"kind": "celeba", "root": "/data/celeba", "split": "train"},
        recipe={"lr": 3e-4, "batch_size": 64},
        evaluation={"reconstruction_mse": 0.05},
        attributes={"Stale": stale},
    )


def test_write_attributes_replaces_vectors_and_keeps_the_rest(model, faces, tmp_path):
    path = _checkpoint_with_metadata(model, tmp_path / "model.safetensors")
    before = load_checkpoint(path)
    report = compute_attribute_vectors(
        model, faces, options=InferenceOptions(count=10_000, batch_size=16), min_examples=5
    )
    source = {"data": "/data/synthetic", "split": "all", "images": report.images}

    assert write_attributes(path, report.vectors, source=source) == path

    after = load_checkpoint(path)
    assert list(after.attributes) == list(report.vectors)
    for name, attribute in report.vectors.items():
        torch.testing.assert_close(after.attributes[name].vector, attribute.vector)
        assert after.attributes[name].positives == attribute.positives
        assert after.attributes[name].negatives == attribute.negatives
        assert after.header.attributes[name]["norm"] == pytest.approx(attribute.norm)
    assert after.header.dataset == {**before.header.dataset, SOURCE_KEY: source}
    assert after.header.step == 1234
    assert after.header.recipe == before.header.recipe
    assert after.header.evaluation == before.header.evaluation
    assert after.header.preprocessing == before.header.preprocessing
    assert after.config == before.config
    old_weights, new_weights = before.model.state_dict(), after.model.state_dict()
    assert old_weights.keys() == new_weights.keys()
    for name, tensor in old_weights.items():
        assert torch.equal(new_weights[name], tensor), name
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_write_attributes_refuses_a_checkpoint_that_changed_meanwhile(model, tmp_path):
    path = _checkpoint_with_metadata(model, tmp_path / "model.safetensors")
    original = path.read_bytes()
    with pytest.raises(CheckpointError, match="changed while"):
        write_attributes(path, {}, source={}, expected_sha256="0" * 64)
    assert path.read_bytes() == original


def test_an_interrupted_write_leaves_the_old_checkpoint(model, faces, tmp_path, monkeypatch):
    path = _checkpoint_with_metadata(model, tmp_path / "model.safetensors")
    original = path.read_bytes()
    report = compute_attribute_vectors(
        model, faces, options=InferenceOptions(count=10_000, batch_size=16), min_examples=5
    )

    def crash(source: object, target: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)  # Path.replace goes through os.replace too
    with pytest.raises(OSError, match="simulated crash"):
        write_attributes(path, report.vectors, source={"images": report.images})
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    assert list(load_checkpoint(path).attributes) == ["Stale"]


def test_attribute_edits_decode_mu_plus_strength_times_vector(model, faces):
    image = faces.load(0)
    vectors = [torch.randn(model.config.latent_dim), torch.randn(model.config.latent_dim)]
    cells = attribute_edits(model, image, vectors, [-1.0, 0.0, 2.0])

    assert cells.shape == (2 * 4, 3, 64, 64)
    with torch.no_grad():
        mu = model.encode(image.unsqueeze(0)).mu
        for row, vector in enumerate(vectors):
            first = row * 4
            torch.testing.assert_close(cells[first], image)  # the input opens each row
            torch.testing.assert_close(cells[first + 2], model.decode(mu)[0])  # strength 0
            torch.testing.assert_close(cells[first + 3], model.decode(mu + 2.0 * vector)[0])

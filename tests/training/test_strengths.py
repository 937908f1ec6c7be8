"""`vaegan-train strengths`: per-attribute default edit strengths, chosen with the judge."""

from __future__ import annotations

import json
import math

import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from tests.training.conftest import PREPROCESSING
from training.attributes import compute_attribute_vectors
from training.cli import main
from training.data import CelebADataset
from training.inference import InferenceOptions
from training.strengths import CANDIDATES, EDIT_TARGETS, pick_strength


def _figures(add, remove=1.0, keep=1.0):
    return {"edit_success_add": add, "edit_success_remove": remove, "edit_preservation": keep}


def test_the_smallest_strength_meeting_every_target_is_chosen():
    choice = pick_strength(
        {1.0: _figures(0.5), 2.0: _figures(0.85), 3.0: _figures(0.95), 4.0: _figures(1.0, keep=0.8)}
    )
    assert (choice.strength, choice.meets_targets) == (2.0, True)


def test_preservation_and_removal_hold_a_strength_back():
    # 3 adds best but breaks the other attributes; 2 keeps them and reaches its targets.
    choice = pick_strength({2.0: _figures(0.8, keep=0.92), 3.0: _figures(0.99, keep=0.7)})
    assert choice.strength == 2.0
    choice = pick_strength({1.0: _figures(0.9, remove=0.5), 2.0: _figures(0.9, remove=0.96)})
    assert choice.strength == 2.0


def test_when_no_strength_reaches_the_targets_the_closest_is_chosen():
    choice = pick_strength(
        {1.0: _figures(0.1), 2.0: _figures(0.6, keep=0.9), 3.0: _figures(0.7, keep=0.6)}
    )
    assert (choice.strength, choice.meets_targets) == (2.0, False)
    # A figure with no eligible face (NaN) does not count against a strength.
    choice = pick_strength({1.0: _figures(math.nan), 2.0: _figures(math.nan, keep=0.5)})
    assert choice.strength == 1.0


@pytest.fixture
def float16_checkpoint(shared_small64, synthetic_celeba, tmp_path):
    faces = CelebADataset(synthetic_celeba, split="all", preprocessing=PREPROCESSING)
    report = compute_attribute_vectors(
        shared_small64, faces, options=InferenceOptions(count=10_000, batch_size=32), min_examples=5
    )
    return save_checkpoint(
        tmp_path / "model.safetensors",
        shared_small64,
        preprocessing=PREPROCESSING,
        attributes=report.vectors,
        parameter_dtype=torch.float16,
    )


def test_strengths_records_one_per_attribute_and_evaluate_uses_them(
    float16_checkpoint, synthetic_celeba, capsys
):
    before = load_checkpoint(float16_checkpoint)
    size = float16_checkpoint.stat().st_size
    args = ["--checkpoint", str(float16_checkpoint), "--data", str(synthetic_celeba)]
    assert main(["strengths", *args, "--count", "12", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "wrote" in table

    after = load_checkpoint(float16_checkpoint)
    assert after.parameter_dtype == torch.float16
    assert abs(float16_checkpoint.stat().st_size - size) < 0.05 * size, "stays float16"
    choices = after.header.evaluation["edit_strength_choice"]
    assert set(choices) == set(before.attributes)
    for name, attribute in after.attributes.items():
        assert attribute.default_strength in CANDIDATES
        assert attribute.default_strength == choices[name]["strength"]
        assert set(choices[name]["candidates"]) == {f"{s:g}" for s in CANDIDATES}
        assert set(choices[name]["candidates"]["1"]) == set(EDIT_TARGETS)
        assert torch.equal(attribute.vector, before.attributes[name].vector)
        assert f"{name:<24}{attribute.default_strength:>6g}" in table

    # `evaluate` edits each attribute at its own strength unless --edit-strength is given.
    evaluate = ["evaluate", *args, "--split", "test", "--json", "--quiet"]
    assert main(evaluate) == 0
    report = json.loads(capsys.readouterr().out)
    used = report["judge"]["edit_strengths"]
    assert used == {
        name: a.default_strength for name, a in after.attributes.items() if name in used
    }
    for name, strength in used.items():
        assert report["per_attribute"][name]["edit_strength"] == strength
    assert main([*evaluate, "--edit-strength", "2"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert set(forced["judge"]["edit_strengths"].values()) == {2.0}


def test_recomputed_vectors_drop_strengths_chosen_for_the_old_ones(
    float16_checkpoint, synthetic_celeba, capsys
):
    args = ["--checkpoint", str(float16_checkpoint), "--data", str(synthetic_celeba)]
    assert main(["strengths", *args, "--count", "12", "--quiet"]) == 0
    assert main(["attributes", *args, "--split", "all", "--min-examples", "5", "--quiet"]) == 0
    capsys.readouterr()
    assert all(
        a.default_strength is None for a in load_checkpoint(float16_checkpoint).attributes.values()
    )


def test_strengths_needs_attribute_vectors(shared_small64, synthetic_celeba, tmp_path, capsys):
    path = save_checkpoint(
        tmp_path / "plain.safetensors", shared_small64, preprocessing=PREPROCESSING
    )
    code = main(["strengths", "--checkpoint", str(path), "--data", str(synthetic_celeba)])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "vaegan-train attributes" in error and "\n" not in error

"""Per-attribute default strengths and the removal syntax, over real HTTP."""

from __future__ import annotations

import pytest
import torch

from model.checkpoint import AttributeVector, load_checkpoint, save_checkpoint
from tests.service.conftest import image_bytes, start_server

# Smiling and Eyeglasses have strengths of their own; Male falls back to the checkpoint's one.
OWN_STRENGTHS = {"Smiling": 2.5, "Eyeglasses": 4.0}
CHECKPOINT_STRENGTH = 1.5
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def served(checkpoint_path, tmp_path_factory):
    base = load_checkpoint(checkpoint_path)
    attributes = {
        name: AttributeVector(a.vector, a.positives, a.negatives, OWN_STRENGTHS.get(name))
        for name, a in base.attributes.items()
    }
    path = save_checkpoint(
        tmp_path_factory.mktemp("strengths") / "model.safetensors",
        base.model,
        preprocessing=base.preprocessing,
        evaluation={"edit_strength": CHECKPOINT_STRENGTH},
        attributes=attributes,
    )
    running = start_server(path)
    vectors = {name: a.vector for name, a in attributes.items()}
    with running.client() as client:
        yield client, vectors
    running.stop()


def _edit(client, z, **fields):
    response = client.post("/attribute-edit", json={"latent": z, **fields}, headers=JSON)
    assert response.status_code == 200, response.text
    return response.json()


def _moved(z, body, row=0):
    return torch.tensor(body["latents"][row]) - torch.tensor(z)


def test_attributes_lists_each_default_strength(served):
    client, _ = served
    listed = {
        a["name"]: a["default_strength"] for a in client.get("/attributes").json()["attributes"]
    }
    assert listed == {"Smiling": 2.5, "Eyeglasses": 4.0, "Male": CHECKPOINT_STRENGTH}


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [("Smiling", 2.5), ("+Smiling", 2.5), ("Eyeglasses", 4.0), ("Male", CHECKPOINT_STRENGTH)],
)
def test_an_edit_without_strength_uses_the_attributes_own(served, attribute, expected):
    client, vectors = served
    z = [0.1] * 128
    body = _edit(client, z, attribute=attribute)
    name = attribute.lstrip("+")
    torch.testing.assert_close(_moved(z, body), expected * vectors[name], rtol=1e-4, atol=1e-5)
    assert body["strengths"] == [expected]


def test_a_leading_minus_removes_at_the_default_strength(served):
    client, vectors = served
    z = [0.0] * 128
    body = _edit(client, z, attribute="-Eyeglasses")
    torch.testing.assert_close(_moved(z, body), -4.0 * vectors["Eyeglasses"], rtol=1e-4, atol=1e-5)
    assert body["strengths"] == [-4.0]


def test_a_leading_minus_negates_given_strengths_and_strips(served):
    client, vectors = served
    z = [0.0] * 128
    body = _edit(client, z, attribute=["-Smiling", "Male"], strength=[1.0, 2.0])
    expected = -1.0 * vectors["Smiling"] + 2.0 * vectors["Male"]
    torch.testing.assert_close(_moved(z, body), expected, rtol=1e-4, atol=1e-5)
    strip = _edit(client, z, attribute="-Smiling", strengths=[0, 1])
    assert strip["latents"][0] == z
    torch.testing.assert_close(_moved(z, strip, 1), -vectors["Smiling"], rtol=1e-4, atol=1e-5)


def test_removal_from_an_uploaded_image_in_a_form(served):
    client, _ = served
    face = image_bytes()
    kept = client.post("/attribute-edit", files={"image": face}, data={"attribute": "Smiling"})
    removed = client.post("/attribute-edit", files={"image": face}, data={"attribute": "-Smiling"})
    assert kept.status_code == removed.status_code == 200, removed.text
    assert kept.content != removed.content
    as_json = client.post(
        "/attribute-edit",
        files={"image": face},
        data={"attribute": "-Smiling,-Eyeglasses"},
        headers=JSON,
    )
    assert as_json.json()["strengths"] == [-2.5, -4.0]


def test_an_unknown_signed_attribute_is_refused_with_the_known_names(served):
    client, _ = served
    response = client.post(
        "/attribute-edit", json={"latent": [0.0] * 128, "attribute": "-Beard"}, headers=JSON
    )
    assert response.status_code == 422
    assert "'Beard'" in response.json()["detail"]
    assert "Smiling" in response.json()["detail"]

"""An ALI checkpoint, made by a short real `vaegan-train fit --objective ali` run, served over HTTP.

Every endpoint that needs only the encoder and decoder answers as for a VAE-GAN; /similarity, whose
learned metric is the VAE-GAN discriminator's Dis_l, answers 409 with the reason.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import load_checkpoint, save_checkpoint
from model.codec import Preprocessing, load_image_tensor
from model.config import get_preset
from model.networks import build_vaegan
from tests.service.conftest import png_size, start_server
from training.cli import main as train
from training.synth import generate_synthetic_celeba


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    generate_synthetic_celeba(root, 48, seed=5, progress=False)
    return root


@pytest.fixture(scope="module")
def ali_checkpoint(faces, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ali-run")
    arguments = ["fit", "--objective", "ali", "--data", str(faces), "--out", str(out)]
    arguments += ["--preset", "small64", "--batch-size", "8", "--steps", "3", "--quiet"]
    assert train(arguments) == 0
    return out / "model.safetensors"


@pytest.fixture(scope="module")
def ali(ali_checkpoint) -> Iterator[httpx.Client]:
    server = start_server(ali_checkpoint, max_batch_delay_ms=5)
    with server.client() as client:
        yield client
    server.stop()


def _face(faces: Path, index: int = 0) -> bytes:
    return sorted((faces / "img_align_celeba").iterdir())[index].read_bytes()


def test_model_says_it_is_ali(ali, ali_checkpoint):
    info = ali.get("/model").json()
    assert info["objective"] == "ali"
    assert info["recipe"]["objective"] == "ali"
    assert info["config"]["discriminator"] == "joint"
    assert info["path"] == str(ali_checkpoint)
    # What `fit` built and trained it with: its preset, and the recipe it ran (ALI's own loss).
    assert info["preset"] == "small64"
    assert info["recipe_name"] == "authors + batch_size=8, decoder_gan_loss=non-saturating"


def test_reconstruct_is_the_checkpoints_own(ali, ali_checkpoint, faces):
    face = _face(faces)
    response = ali.post("/reconstruct", files={"image": ("face.jpg", face, "image/jpeg")})
    assert response.status_code == 200, response.text
    served = torch.tensor(np.asarray(Image.open(io.BytesIO(response.content)))).reshape(-1, 3)
    checkpoint = load_checkpoint(ali_checkpoint)
    x = load_image_tensor(face, checkpoint.preprocessing).unsqueeze(0)
    with torch.no_grad():
        expected = checkpoint.model.reconstruct(x)[0]
    pixels = ((expected.permute(1, 2, 0).reshape(-1, 3) + 1) * 127.5).round().clamp(0, 255)
    assert (served.float() - pixels).abs().max() <= 1  # PNG quantisation only


def test_encode_decode_sample_interpolate(ali, faces):
    encoded = ali.post("/encode", files=[("image", _face(faces, 0)), ("image", _face(faces, 1))])
    assert encoded.status_code == 200, encoded.text
    mu = encoded.json()["mu"]
    assert len(mu) == 2 and len(mu[0]) == 128
    assert png_size(ali.post("/decode", json={"latents": mu[:1]}).content) == (64, 64)
    samples = ali.post("/sample", params={"n": 4, "seed": 1})
    assert samples.status_code == 200 and samples.headers["content-type"] == "image/png"
    strip = ali.post(
        "/interpolate",
        json={"latent_a": mu[0], "latent_b": mu[1], "steps": 3},
        headers={"Accept": "application/json"},
    ).json()
    assert strip["latents"][0] == pytest.approx(mu[0]) and len(strip["images"]) == 3


def test_attribute_edit_uses_the_ali_attribute_vectors(ali, faces):
    names = [a["name"] for a in ali.get("/attributes").json()["attributes"]]
    assert "Smiling" in names  # computed from the labelled faces at the end of the run
    response = ali.post(
        "/attribute-edit",
        files={"image": _face(faces)},
        data={"attribute": "Smiling", "strengths": "-1,0,1"},
    )
    assert response.status_code == 200, response.text
    assert png_size(response.content) == (3 * 66 + 2, 66 + 2)


def test_similarity_is_409_with_the_reason_and_the_server_keeps_serving(ali, faces):
    response = ali.post(
        "/similarity", files={"image_a": _face(faces, 0), "image_b": _face(faces, 1)}
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "needs a VAE-GAN checkpoint" in detail and "ALI" in detail
    assert ali.get("/health/ready").status_code == 200
    assert ali.post("/sample", params={"n": 1}).status_code == 200


def test_similarity_on_a_plain_vae_checkpoint_is_409_too(tmp_path):
    model = build_vaegan(get_preset("small64"), seed=0).eval()
    path = save_checkpoint(
        tmp_path / "vae.safetensors",
        model,
        preprocessing=Preprocessing(64),
        recipe={"objective": "vae"},
    )
    server = start_server(path)
    try:
        with server.client() as client:
            face = io.BytesIO()
            Image.new("RGB", (64, 64), (90, 60, 30)).save(face, format="PNG")
            response = client.post(
                "/similarity", files={"image_a": face.getvalue(), "image_b": face.getvalue()}
            )
            assert response.status_code == 409
            assert "plain VAE, whose discriminator was never trained" in response.json()["detail"]
            assert client.get("/model").json()["objective"] == "vae"
    finally:
        server.stop()

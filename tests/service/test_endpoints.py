"""Every endpoint over real HTTP against a real uvicorn."""

import base64
import io

import pytest
from PIL import Image

from model.checkpoint import load_checkpoint
from service.schemas import ModelInfo
from tests.service.conftest import ATTRIBUTES, image_bytes, png_size

FACE = image_bytes()
OTHER = image_bytes(colour=(30, 60, 200))
CELL = 64 + 2  # grid cell: image plus padding


def test_health(http):
    assert http.get("/health/live").json() == {"status": "alive"}
    assert http.get("/health/ready").json() == {"status": "ready"}


def test_reconstruct_returns_a_png_of_the_model_size(http):
    response = http.post("/reconstruct", files={"image": ("face.png", FACE, "image/png")})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert png_size(response.content) == (64, 64)


def test_reconstruct_as_json_has_base64_pngs_and_the_latent(http):
    response = http.post(
        "/reconstruct", files={"image": FACE}, headers={"Accept": "application/json"}
    )
    body = response.json()
    assert png_size(base64.b64decode(body["images"][0])) == (64, 64)
    assert len(body["latents"][0]) == 128


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_upload_format(http, fmt):
    response = http.post("/reconstruct", files={"image": image_bytes(fmt=fmt)})
    assert response.status_code == 200, response.text


def test_sample_grid_and_seed_reproducibility(http):
    first = http.post("/sample", params={"n": 6, "seed": 42})
    second = http.post("/sample", params={"n": 6, "seed": 42})
    other = http.post("/sample", params={"n": 6, "seed": 43})
    assert first.status_code == 200
    assert first.content == second.content != other.content
    assert first.headers["x-seed"] == "42"
    assert png_size(first.content) == (6 * CELL + 2, CELL + 2)


def test_sample_without_seed_reports_the_seed_it_used(http):
    response = http.post("/sample", params={"n": 2}, headers={"Accept": "application/json"})
    body = response.json()
    assert len(body["images"]) == 2 and len(body["latents"]) == 2
    again = http.post(
        "/sample", params={"n": 2, "seed": body["seed"]}, headers={"Accept": "application/json"}
    )
    assert again.json()["images"] == body["images"]


def test_encode_one_or_several_images(http):
    response = http.post("/encode", files=[("image", FACE), ("image", OTHER)])
    body = response.json()
    assert len(body["mu"]) == len(body["logvar"]) == 2
    assert len(body["mu"][0]) == 128
    assert body["mu"][0] != body["mu"][1]


def test_decode_latents(http):
    one = http.post("/decode", json={"latents": [[0.0] * 128]})
    assert png_size(one.content) == (64, 64)
    three = http.post("/decode", json={"latents": [[0.1 * i] * 128 for i in range(3)]})
    assert png_size(three.content) == (3 * CELL + 2, CELL + 2)


def test_encode_then_decode_equals_reconstruct(http):
    mu = http.post("/encode", files={"image": FACE}).json()["mu"]
    decoded = http.post("/decode", json={"latents": mu}).content
    reconstructed = http.post("/reconstruct", files={"image": FACE}).content
    a = Image.open(io.BytesIO(decoded)).tobytes()
    b = Image.open(io.BytesIO(reconstructed)).tobytes()
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1


def test_attributes_and_model(http):
    names = [a["name"] for a in http.get("/attributes").json()["attributes"]]
    assert names == list(ATTRIBUTES)
    info = http.get("/model").json()
    assert info["step"] == 7
    assert info["config"]["latent_dim"] == 128
    assert info["device"] == "cpu"
    assert len(info["sha256"]) == 64
    assert info["preset"] == "small64"
    assert info["recipe_name"] is None  # saved without a recipe
    # The documented response schema is all of it: nothing the header holds is left out.
    assert set(info) == set(ModelInfo.model_fields)
    assert set(load_checkpoint(info["path"]).header.to_json()) <= set(info)


def test_attribute_edit_single_image(http):
    response = http.post(
        "/attribute-edit", files={"image": FACE}, data={"attribute": "Smiling", "strength": "1.5"}
    )
    assert response.status_code == 200, response.text
    assert png_size(response.content) == (64, 64)


def test_attribute_edit_several_attributes_at_once(http):
    response = http.post(
        "/attribute-edit",
        files={"image": FACE},
        data={"attribute": ["Smiling", "Eyeglasses"], "strength": ["1", "-1"]},
        headers={"Accept": "application/json"},
    )
    body = response.json()
    assert len(body["images"]) == 1
    assert body["strengths"] == [1.0, -1.0]


def test_attribute_edit_strip_of_strengths(http):
    response = http.post(
        "/attribute-edit",
        files={"image": FACE},
        data={"attribute": "Smiling", "strengths": "-2,-1,0,1,2"},
    )
    assert png_size(response.content) == (5 * CELL + 2, CELL + 2)


def test_attribute_edit_from_a_latent_is_latent_arithmetic(http):
    z = [0.0] * 128
    body = http.post(
        "/attribute-edit",
        json={"latent": z, "attribute": "Smiling", "strengths": [0, 1]},
        headers={"Accept": "application/json"},
    ).json()
    smiling = next(
        a for a in http.get("/attributes").json()["attributes"] if a["name"] == "Smiling"
    )
    moved = body["latents"][1]
    assert body["latents"][0] == z
    assert sum(v * v for v in moved) ** 0.5 == pytest.approx(smiling["norm"], rel=1e-4)


def test_interpolate_images_and_latents(http):
    strip = http.post(
        "/interpolate", files={"image_a": FACE, "image_b": OTHER}, data={"steps": "5"}
    )
    assert png_size(strip.content) == (5 * CELL + 2, CELL + 2)
    body = http.post(
        "/interpolate",
        json={"latent_a": [0.0] * 128, "latent_b": [1.0] * 128, "steps": 3},
        headers={"Accept": "application/json"},
    ).json()
    assert [row[0] for row in body["latents"]] == [0.0, 0.5, 1.0]


def test_similarity(http):
    same = http.post("/similarity", files={"image_a": FACE, "image_b": FACE}).json()
    different = http.post("/similarity", files={"image_a": FACE, "image_b": OTHER}).json()
    assert same == {"learned_distance": 0.0, "pixel_mse": 0.0}
    assert different["learned_distance"] > 0 and different["pixel_mse"] > 0


def test_openapi_docs_list_every_endpoint(http):
    paths = http.get("/openapi.json").json()["paths"]
    for path in (
        "/reconstruct",
        "/sample",
        "/attribute-edit",
        "/encode",
        "/decode",
        "/interpolate",
        "/similarity",
        "/attributes",
        "/model",
        "/health/live",
        "/health/ready",
        "/metrics",
    ):
        assert path in paths
    assert http.get("/docs").status_code == 200


def test_readme_client_example_runs_against_a_real_server(server, tmp_path, monkeypatch):
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
        if b.startswith("# needs a running service")
    ]
    # Run where the README's reader runs it: beside the sample faces it names.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "examples").symlink_to(root / "docs" / "examples")
    namespace: dict = {}
    code = block.replace("http://127.0.0.1:8000", server.url)
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["reconstruction"].size == (64, 64)
    assert namespace["encoding"].mu.shape == (2, 128)
    assert set(namespace["distances"]) == {"learned_distance", "pixel_mse"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/decode", {"latents": [[True] * 128]}),
        ("/decode", {"latents": [["0.5"] * 128]}),
        ("/attribute-edit", {"latent": [0.0] * 128, "attribute": "Smiling", "strength": True}),
        ("/interpolate", {"latent_a": [0.0] * 128, "latent_b": [0.0] * 128, "steps": "4"}),
    ],
)
def test_booleans_and_strings_are_not_numbers(http, path, body):
    response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert "valid" in response.json()["detail"]

"""The Python client against a real server: every method, errors, the API key, the async client."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.client import AsyncVAEGANClient, Encoding, SampleResult, VAEGANClient, VAEGANError
from tests.service.conftest import ATTRIBUTES, free_port, image_bytes, start_server

SIZE = 64  # the small64 checkpoint's image size


def strip_size(count: int, padding: int = 2) -> tuple[int, int]:
    """Size of make_grid's one-row strip of `count` images."""
    return (count * (SIZE + padding) + padding, SIZE + 2 * padding)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture
def client(server) -> Iterator[VAEGANClient]:
    with VAEGANClient(server.url) as client:
        yield client


@pytest.fixture(scope="module")
def face() -> bytes:
    return image_bytes((210, 160, 130), size=(178, 218), fmt="JPEG")


@pytest.fixture(scope="module")
def other() -> bytes:
    return image_bytes((30, 60, 200), size=(100, 100))


# --------------------------------------------------------------------------------------------
# every method


def test_reconstruct_takes_bytes_paths_and_pil_images(client, face, tmp_path: Path) -> None:
    path = tmp_path / "face.jpg"
    path.write_bytes(face)
    from_bytes = client.reconstruct(face)
    assert from_bytes.size == (SIZE, SIZE)
    assert from_bytes.mode == "RGB"
    # A path (str or Path) sends the same file; a PIL image goes as lossless PNG of those pixels.
    assert np.array_equal(pixels(client.reconstruct(path)), pixels(from_bytes))
    assert np.array_equal(pixels(client.reconstruct(str(path))), pixels(from_bytes))
    decoded = Image.open(io.BytesIO(face))
    assert np.array_equal(pixels(client.reconstruct(decoded)), pixels(from_bytes))


def test_sample_grid_and_same_seed_same_pixels(client) -> None:
    first = client.sample(n=4, seed=5)
    assert first.size == strip_size(4)
    again = client.sample(n=4, seed=5)
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(client.sample(n=4, seed=6)), pixels(first))


def test_sample_images_returns_images_latents_and_seed(client, server) -> None:
    result = client.sample_images(n=3, seed=7)
    assert isinstance(result, SampleResult)
    assert result.seed == 7
    assert [image.size for image in result.images] == [(SIZE, SIZE)] * 3
    latent_dim = client.model()["config"]["latent_dim"]
    assert result.latents.shape == (3, latent_dim)
    assert result.latents.dtype == np.float32
    again = client.sample_images(n=3, seed=7)
    assert np.array_equal(again.latents, result.latents)
    assert client.sample_images(n=1).seed >= 0  # the server picks one and says which


def test_encode_one_or_several_images(client, face, other) -> None:
    encoding = client.encode(face, other)
    assert isinstance(encoding, Encoding)
    assert encoding.mu.shape == encoding.logvar.shape
    assert encoding.mu.shape[0] == 2
    assert encoding.mu.dtype == np.float32
    assert not np.allclose(encoding.mu[0], encoding.mu[1])
    single = client.encode(face)
    np.testing.assert_allclose(single.mu[0], encoding.mu[0], atol=1e-4)


def test_decode_lists_and_arrays(client) -> None:
    sampled = client.sample_images(n=2, seed=3)
    one = client.decode(sampled.latents[:1])  # numpy (1, z)
    assert one.size == (SIZE, SIZE)
    # Same latent, same face (up to float noise across batch sizes, one grey level at most).
    assert np.abs(pixels(one) - pixels(sampled.images[0])).max() <= 1
    as_vector = client.decode(sampled.latents[0].tolist())  # a plain (z,) list is one latent
    assert np.abs(pixels(as_vector) - pixels(one)).max() <= 1
    grid = client.decode(sampled.latents.tolist())  # list of lists
    assert grid.size == strip_size(2)


def test_attribute_edit_with_an_image(client, face) -> None:
    plain = client.reconstruct(face)
    smiling = client.attribute_edit(face, attributes="Smiling", strength=3.0)
    assert smiling.size == (SIZE, SIZE)
    assert not np.array_equal(pixels(smiling), pixels(plain))
    both = client.attribute_edit(face, attributes=["Smiling", "Eyeglasses"], strength=[1.0, -2.0])
    assert both.size == (SIZE, SIZE)
    strip = client.attribute_edit(face, attributes="Male", strengths=[-1.0, 0.0, 1.0])
    assert strip.size == strip_size(3)


def test_attribute_edit_with_a_latent(client, face) -> None:
    mu = client.encode(face).mu[0]
    edited = client.attribute_edit(latent=mu, attributes="Smiling", strength=2.0)
    from_image = client.attribute_edit(face, attributes="Smiling", strength=2.0)
    assert np.abs(pixels(edited) - pixels(from_image)).max() <= 1
    strip = client.attribute_edit(latent=mu.tolist(), attributes=["Male"], strengths=[0.5, 1.0])
    assert strip.size == strip_size(2)


def test_interpolate_images_or_latents(client, face, other) -> None:
    strip = client.interpolate(face, other, steps=4)
    assert strip.size == strip_size(4)
    mu = client.encode(face, other).mu
    from_latents = client.interpolate(latent_a=mu[0], latent_b=mu[1], steps=4)
    assert np.abs(pixels(from_latents) - pixels(strip)).max() <= 1
    assert client.interpolate(latent_a=mu[0], latent_b=mu[1]).size == strip_size(8)


def test_similarity(client, face, other) -> None:
    same = client.similarity(face, face)
    assert same == {"learned_distance": 0.0, "pixel_mse": 0.0}
    different = client.similarity(face, other)
    assert set(different) == {"learned_distance", "pixel_mse"}
    assert different["learned_distance"] > 0 and different["pixel_mse"] > 0


def test_attributes_model_health_and_metrics(client, server) -> None:
    attributes = client.attributes()
    assert [a["name"] for a in attributes] == list(ATTRIBUTES)
    model = client.model()
    assert model["device"] == "cpu"
    assert len(model["sha256"]) == 64
    assert client.live() is True
    assert client.ready() is True
    assert "vaegan_request_duration_seconds" in client.metrics()


def test_health_probes_say_no_when_nothing_listens() -> None:
    with VAEGANClient(f"http://127.0.0.1:{free_port()}", timeout=2) as nobody:
        assert nobody.live() is False
        assert nobody.ready() is False
        with pytest.raises(httpx.TransportError):
            nobody.model()  # only the probes turn "unreachable" into an answer


def test_custom_transport_is_used() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/model"
        return httpx.Response(200, json={"sha256": "x"})

    with VAEGANClient("http://testserver", transport=httpx.MockTransport(handler)) as mocked:
        assert mocked.model() == {"sha256": "x"}


# --------------------------------------------------------------------------------------------
# errors


def test_unknown_attribute_is_a_422_listing_the_known_ones(client, face) -> None:
    with pytest.raises(VAEGANError) as caught:
        client.attribute_edit(face, attributes="Bald")
    error = caught.value
    assert error.status_code == 422
    assert "'Bald'" in error.detail
    assert all(name in error.detail for name in ATTRIBUTES)
    assert error.request_id
    assert str(error).startswith("HTTP 422: unknown attribute")
    assert error.request_id in str(error)


def test_bad_input_errors_carry_the_servers_detail(client) -> None:
    with pytest.raises(VAEGANError) as caught:
        client.reconstruct(b"this is not an image")
    assert caught.value.status_code in (400, 415)
    assert isinstance(caught.value.detail, str)
    with pytest.raises(VAEGANError) as caught:
        client.decode([[0.0, 1.0]])  # the wrong latent size
    assert caught.value.status_code == 422
    assert "latent 0 has 2 values" in caught.value.detail


def test_ambiguous_arguments_fail_before_sending(client, face) -> None:
    with pytest.raises(ValueError, match="either an image or a latent"):
        client.attribute_edit(face, latent=[0.0] * 8, attributes="Smiling")
    with pytest.raises(ValueError, match="either an image or a latent"):
        client.attribute_edit(attributes="Smiling")
    with pytest.raises(ValueError, match="two images"):
        client.interpolate(face)
    with pytest.raises(ValueError, match="two images"):
        client.interpolate(face, face, latent_a=[0.0])
    with pytest.raises(ValueError, match="at least one image"):
        client.encode()


def test_api_key(checkpoint_path, face) -> None:
    running = start_server(checkpoint_path, api_key="s3cret", max_batch_size=4)
    try:
        with VAEGANClient(running.url) as anonymous:
            assert anonymous.live() is True  # the probes stay open for load balancers
            with pytest.raises(VAEGANError) as caught:
                anonymous.model()
            assert caught.value.status_code == 401
            assert "API key" in caught.value.detail
            assert caught.value.request_id
        with VAEGANClient(running.url, api_key="wrong") as wrong, pytest.raises(VAEGANError):
            wrong.sample(n=1)
        with VAEGANClient(running.url, api_key="s3cret") as keyed:
            assert keyed.model()["device"] == "cpu"
            assert keyed.reconstruct(face).size == (SIZE, SIZE)
    finally:
        running.stop()


# --------------------------------------------------------------------------------------------
# the async client


def test_async_client(server, face, other) -> None:
    async def scenario() -> None:
        async with AsyncVAEGANClient(server.url) as client:
            assert await client.ready()
            reconstructed, sampled, encoding = await asyncio.gather(
                client.reconstruct(face),
                client.sample_images(n=2, seed=5),
                client.encode(face, other),
            )
            assert reconstructed.size == (SIZE, SIZE)
            assert sampled.latents.shape == (2, encoding.mu.shape[1])
            edited = await client.attribute_edit(latent=encoding.mu[0], attributes="Smiling")
            assert edited.size == (SIZE, SIZE)
            strip = await client.interpolate(latent_a=encoding.mu[0], latent_b=encoding.mu[1])
            assert strip.size == strip_size(8)
            assert set(await client.similarity(face, other)) == {"learned_distance", "pixel_mse"}
            with pytest.raises(VAEGANError) as caught:
                await client.sample(n=0)
            assert caught.value.status_code == 422
            assert caught.value.request_id

    asyncio.run(scenario())


def test_sync_and_async_clients_send_the_same_request(server) -> None:
    with VAEGANClient(server.url) as sync_client:
        expected = sync_client.sample(n=2, seed=11)

    async def fetch() -> Image.Image:
        async with AsyncVAEGANClient(server.url) as client:
            return await client.sample(n=2, seed=11)

    assert np.array_equal(pixels(asyncio.run(fetch())), pixels(expected))

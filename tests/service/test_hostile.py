"""The hostile upload corpus (tests/service/hostile/) against a real uvicorn: each file gets the
4xx it deserves with a readable JSON detail, or a correct 64x64 image, never a 5xx, and the server
stays healthy. Valid but unusual files must be answered exactly like a plain RGB copy of the
picture they show. Refusals already covered one by one in test_protection.py (an oversized body,
a too-small image, a 144-megapixel bomb) are not repeated here.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import RunningServer, image_bytes, start_server
from tests.service.hostile.make_corpus import PALETTE_ALPHA_COLOUR, WEBP_COLOUR

HOSTILE = Path(__file__).parent / "hostile"
FACE = image_bytes()
IMAGE = 200  # answered with a 64x64 PNG

# name: (status, words the detail must contain); IMAGE means a 64x64 PNG
EXPECTED: dict[str, tuple[int, str]] = {
    "truncated.png": (400, "PNG data is truncated or damaged"),
    "truncated.jpg": (400, "JPEG data is truncated or damaged"),
    "bad-crc.png": (400, "PNG data is truncated or damaged"),
    # Pillow cannot identify a PNG whose header fails its CRC.
    "bad-header-crc.png": (415, "not an image in a supported format"),
    "zero-bytes.png": (400, "the image is empty"),
    "bad-offset.tif": (415, "not an image in a supported format"),
    "bomb-400mp.png": (413, "too many pixels"),
    "bomb-45mp.png": (413, "9000x5000 = 45,000,000 pixels; the limit is 40,000,000"),
    "idat-overflow.png": (IMAGE, ""),
    "ztxt-bomb.png": (400, "truncated or damaged"),
    "huge-header.jpg": (413, "too many pixels"),
    "huge-header.gif": (413, "too many pixels"),
    # Photoshop is not among the accepted formats (model/codec.py's ALLOWED_FORMATS).
    "huge-header.psd": (415, "not an image in a supported format"),
    "1x1.png": (422, "the image is 1x1; both sides must be at least 8 pixels"),
    "20000x1.png": (422, "the image is 20000x1; both sides must be at least 8 pixels"),
    "gray16.png": (IMAGE, ""),
    "rgb16.png": (IMAGE, ""),
    "cmyk.jpg": (IMAGE, ""),
    "palette-transparent.png": (IMAGE, ""),
    "animated.gif": (IMAGE, ""),
    "exif-rotated.jpg": (IMAGE, ""),
    "progressive.jpg": (IMAGE, ""),
    "bilevel.png": (IMAGE, ""),
    "png-zip-polyglot.png": (IMAGE, ""),
    "png-html-polyglot.png": (IMAGE, ""),
    "jpeg-zip-polyglot.jpg": (IMAGE, ""),
    # Megabytes after IEND: still the picture before them.
    "png-large-zip-polyglot.png": (IMAGE, ""),
    # The screen width bytes are "/*": 10799 pixels wide.
    "gif-js-polyglot.gif": (422, "10799x10, an aspect ratio over 10:1"),
    "html-named.png": (415, "not an image in a supported format"),
    "script.svg": (415, "not an image in a supported format"),
    # 40 megapixels in the modes that used to cost seconds and a gigabyte; what each costs now
    # is measured in test_decoding_cost.py.
    "gray16-40mp.png": (IMAGE, ""),
    "palette-alpha-40mp.png": (IMAGE, ""),
    "float32-40mp.tif": (IMAGE, ""),
    "lossless-12mp.webp": (IMAGE, ""),
    "lossless-40mp.webp": (413, "WebP images are limited to 12,582,912 pixels"),
    # Icon formats decode their largest picture while being opened: not accepted at all.
    "ico-hiding-12000.ico": (415, "not an image in a supported format"),
    "icns-hiding-12000.icns": (415, "not an image in a supported format"),
    "scan-bomb.jpg": (413, "progressive JPEG has more than 160 scans of 4,000,000 pixels"),
    "rle.bmp": (415, "run-length encoded BMP files are not accepted"),
}


@pytest.fixture(scope="module")
def hostile_server(checkpoint_path) -> Iterator[RunningServer]:
    running = start_server(checkpoint_path, max_batch_delay_ms=2, max_upload_bytes=2_000_000)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(hostile_server) -> Iterator[httpx.Client]:
    with hostile_server.client() as http:
        yield http


def corpus(name: str) -> bytes:
    return (HOSTILE / name).read_bytes()


def assert_refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and 10 < len(detail) < 400, detail
    assert words in detail
    assert "Traceback" not in detail


def assert_face_png(response: httpx.Response, size: tuple[int, int] = (64, 64)) -> None:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", size)


def test_the_corpus_is_small_and_every_file_has_an_expectation():
    files = {
        path.name: path.stat().st_size
        for path in HOSTILE.iterdir()
        if path.is_file() and path.suffix != ".py"
    }
    assert set(files) == set(EXPECTED)
    assert sum(files.values()) < 1_000_000


# Pillow warns about the TIFF's directory while it tries to identify the file; the codec then
# refuses it with a 415.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_hostile_file_gets_a_4xx_or_a_face(client, name):
    status, words = EXPECTED[name]
    response = client.post("/reconstruct", files={"image": (name, corpus(name))})
    if status == IMAGE:
        assert_face_png(response)
    else:
        assert_refused(response, status, words)


# --- valid files are answered like a plain copy of the picture they show ----------------------


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _decoded(name: str) -> Image.Image:
    return Image.open(io.BytesIO(corpus(name)))


def _exif_upright() -> Image.Image:
    # Orientation 6: the stored pixels are turned 90 degrees clockwise to be shown.
    return _decoded("exif-rotated.jpg").convert("RGB").transpose(Image.Transpose.ROTATE_270)


def _palette_over_white() -> Image.Image:
    image = _decoded("palette-transparent.png")
    index = np.asarray(image)
    palette = np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
    pixels = palette[index]
    pixels[index == image.info["transparency"]] = 255
    return Image.fromarray(pixels)


def _gray16_to_8() -> Image.Image:
    values = np.asarray(_decoded("gray16.png"), dtype=np.float64)
    grey = np.rint(values * 255 / 65535).astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1))


def _rgb16_high_bytes() -> Image.Image:
    """Read the 48-bit PNG by hand (unfiltered rows) and keep each sample's high byte."""
    data = corpus("rgb16.png")
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = b"", 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * 6)
    assert (rows[:, 0] == 0).all()  # filter type None on every row
    samples = rows[:, 1:].copy().view(">u2").reshape(height, width, 3)
    return Image.fromarray((samples >> 8).astype(np.uint8))


def _first_frame() -> Image.Image:
    image = _decoded("animated.gif")
    first = image.convert("RGB")
    image.seek(1)
    assert np.asarray(image.convert("RGB")).tolist() != np.asarray(first).tolist()
    return first


def _before_the_payload(name: str, end: bytes) -> Callable[[], Image.Image]:
    def picture() -> Image.Image:
        data = corpus(name)
        return Image.open(io.BytesIO(data[: data.index(end) + len(end)])).convert("RGB")

    return picture


PLAIN_COPIES: dict[str, Callable[[], Image.Image]] = {
    "exif-rotated.jpg": _exif_upright,
    "palette-transparent.png": _palette_over_white,
    "gray16.png": _gray16_to_8,
    "rgb16.png": _rgb16_high_bytes,
    "animated.gif": _first_frame,
    "cmyk.jpg": lambda: _decoded("cmyk.jpg").convert("RGB"),
    "progressive.jpg": lambda: _decoded("progressive.jpg").convert("RGB"),
    "bilevel.png": lambda: _decoded("bilevel.png").convert("RGB"),
    # The header's 64x64 pixels, all zero; the 40 MB beyond them are never read.
    "idat-overflow.png": lambda: Image.new("RGB", (64, 64)),
    "png-zip-polyglot.png": _before_the_payload("png-zip-polyglot.png", b"IEND\xaeB`\x82"),
    "png-html-polyglot.png": _before_the_payload("png-html-polyglot.png", b"IEND\xaeB`\x82"),
    "png-large-zip-polyglot.png": _before_the_payload(
        "png-large-zip-polyglot.png", b"IEND\xaeB`\x82"
    ),
    "jpeg-zip-polyglot.jpg": _before_the_payload("jpeg-zip-polyglot.jpg", b"\xff\xd9"),
    # One colour each: any size of that colour is the same model input.
    "gray16-40mp.png": lambda: Image.new("RGB", (64, 64), (0, 0, 0)),
    "palette-alpha-40mp.png": lambda: Image.new("RGB", (64, 64), PALETTE_ALPHA_COLOUR),
    "float32-40mp.tif": lambda: Image.new("RGB", (64, 64), (128, 128, 128)),  # 0.5 of white
    "lossless-12mp.webp": lambda: Image.new("RGB", (64, 64), WEBP_COLOUR),
}


def test_every_valid_file_has_a_plain_copy():
    assert set(PLAIN_COPIES) == {name for name, (status, _) in EXPECTED.items() if status == IMAGE}


@pytest.mark.parametrize("name", sorted(PLAIN_COPIES))
def test_a_valid_file_is_read_as_the_picture_it_shows(client, name):
    plain = _png(PLAIN_COPIES[name]())
    # pixel_mse compares the two model inputs the service made from the uploads.
    response = client.post(
        "/similarity", files={"image_a": (name, corpus(name)), "image_b": ("plain.png", plain)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["pixel_mse"] < 1e-6


def test_the_pixel_comparison_would_see_a_wrong_reading(client):
    # Ignoring EXIF, or taking the second frame, would have failed the comparison above.
    stored = _png(_decoded("exif-rotated.jpg").convert("RGB"))
    sideways = client.post(
        "/similarity", files={"image_a": corpus("exif-rotated.jpg"), "image_b": stored}
    )
    assert sideways.json()["pixel_mse"] > 1e-2
    gif = _decoded("animated.gif")
    gif.seek(1)
    second = client.post(
        "/similarity",
        files={"image_a": corpus("animated.gif"), "image_b": _png(gif.convert("RGB"))},
    )
    assert second.json()["pixel_mse"] > 1e-2


# --- the other upload routes -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bomb-400mp.png", "truncated.jpg", "zero-bytes.png"])
def test_hostile_files_on_every_upload_route(client, name):
    status, words = EXPECTED[name]
    bad = (name, corpus(name))
    assert_refused(client.post("/encode", files=[("image", FACE), ("image", bad)]), status, words)
    edit = client.post("/attribute-edit", files={"image": bad}, data={"attribute": "Smiling"})
    assert_refused(edit, status, words)
    walk = client.post("/interpolate", files={"image_a": FACE, "image_b": bad})
    assert_refused(walk, status, words)
    similar = client.post("/similarity", files={"image_a": bad, "image_b": FACE})
    assert_refused(similar, status, words)


def test_unusual_valid_files_on_the_other_routes(client):
    edit = client.post(
        "/attribute-edit", files={"image": corpus("cmyk.jpg")}, data={"attribute": "Smiling"}
    )
    assert_face_png(edit)
    walk = client.post(
        "/interpolate",
        files={"image_a": corpus("exif-rotated.jpg"), "image_b": corpus("animated.gif")},
        data={"steps": "5"},
    )
    assert_face_png(walk, size=(5 * 66 + 2, 68))  # a strip with 2-pixel borders


# --- huge multipart bodies ---------------------------------------------------------------------


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "hostile") -> bytes:
    body = io.BytesIO()
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body.write(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue()


def _post_multipart(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    headers = {"content-type": "multipart/form-data; boundary=hostile"}
    return client.post(path, content=body, headers=headers)


def test_many_file_parts(client):
    # Over the form parser's 1000-file limit: refused while parsing, nothing decoded.
    many = _multipart([("image", f"{i}.png", b"x") for i in range(3000)])
    assert_refused(_post_multipart(client, "/encode", many), 400, "Too many files")
    # Under it but over the images-per-request limit: refused before any decoding.
    some = _multipart([("image", f"{i}.png", b"x") for i in range(900)])
    assert_refused(_post_multipart(client, "/encode", some), 413, "the limit is 16 per request")


def test_many_field_parts(client):
    fields = [("attribute", None, b"Smiling") for _ in range(5000)]
    body = _multipart([("image", "face.png", FACE), *fields])
    assert_refused(_post_multipart(client, "/attribute-edit", body), 400, "Too many fields")


def test_a_part_with_an_enormous_header(client):
    name = "x" * 500_000
    body = _multipart([("image", f"{name}.png", FACE)])
    assert_refused(_post_multipart(client, "/reconstruct", body), 400, "multipart")


def test_the_server_is_healthy_after_the_corpus(client):
    assert client.get("/health/ready").json() == {"status": "ready"}
    assert_face_png(client.post("/reconstruct", files={"image": FACE}))

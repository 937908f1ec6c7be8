import io
import math
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, WebPImagePlugin

from model.codec import (
    ALLOWED_FORMATS,
    CorruptImageError,
    EmptyImageError,
    ImageDimensionsError,
    ImageHeader,
    ImageLimits,
    ImageTooLargeError,
    Preprocessing,
    UnsupportedImageError,
    crop_square,
    decode_side,
    encode_png,
    load_image_tensor,
    make_grid,
    open_image,
    preprocess,
    read_header,
    resampling_matrix,
    tensor_to_image,
    to_rgb,
)
from model.image_checks import webp_size
from tests.service.hostile.make_corpus import (
    bmp_many_runs,
    gif_many_blocks,
    icns_hiding_a_large_png,
    ico_hiding_a_large_png,
    jpeg_many_segments,
    jpeg_stray_bytes,
    png_many_chunks,
    scan_bomb_jpeg,
    tiff_many_tiles,
)

HOSTILE = Path(__file__).parents[1] / "service" / "hostile"
ORANGE = (230, 120, 30)


def _bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _expected(value: int) -> float:
    return value / 255 * 2 - 1


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_format_decodes_to_the_same_colour(fmt):
    data = _bytes(Image.new("RGB", (120, 90), ORANGE), fmt)
    x = load_image_tensor(data, Preprocessing())
    assert x.shape == (3, 64, 64)
    assert x.dtype == torch.float32
    # GIF quantises to a palette and JPEG is lossy: a few levels of slack.
    for channel, value in enumerate(ORANGE):
        assert x[channel].mean().item() == pytest.approx(_expected(value), abs=0.05)


def _mode_image(mode: str) -> Image.Image:
    return Image.new("RGB", (40, 40), ORANGE).convert(mode)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("1", "PNG"),
        ("L", "PNG"),
        ("P", "PNG"),
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("YCbCr", "TIFF"),
        ("LAB", "TIFF"),
        ("I;16", "PNG"),
        ("I", "TIFF"),
        ("F", "TIFF"),
    ],
)
def test_every_stored_mode_becomes_rgb(mode, fmt):
    data = _bytes(_mode_image(mode), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith(mode[:1])
    rgb = open_image(data)
    assert rgb.mode == "RGB"
    assert rgb.size == (40, 40)


@pytest.mark.parametrize("mode", ["HSV", "RGBa", "PA", "I;16B"])
def test_in_memory_modes_become_rgb(mode):
    source = _mode_image("RGBA") if mode in ("RGBa", "PA") else _mode_image("RGB")
    rgb = to_rgb(source.convert(mode) if mode != "I;16B" else Image.new("I;16B", (40, 40), 300))
    assert rgb.mode == "RGB"


def test_colour_modes_keep_their_colour():
    for mode in ("CMYK", "YCbCr", "LAB", "HSV"):  # P is a lossy web palette
        r, g, b = to_rgb(_mode_image(mode)).getpixel((0, 0))
        assert abs(r - ORANGE[0]) < 12, mode
        assert abs(g - ORANGE[1]) < 12, mode
        assert abs(b - ORANGE[2]) < 12, mode


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_composited_over_white(mode):
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (0, 0, 20, 40))  # left half opaque black
    rgb = open_image(_bytes(image.convert(mode), "PNG"))
    assert rgb.getpixel((5, 20)) == (0, 0, 0)
    assert rgb.getpixel((35, 20)) == (255, 255, 255)


def test_palette_transparency_is_composited():
    image = Image.new("P", (40, 40), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (20, 0, 40, 40))
    rgb = open_image(_bytes(image, "PNG", transparency=1))
    assert rgb.getpixel((5, 5)) == (255, 0, 0)
    assert rgb.getpixel((35, 5)) == (255, 255, 255)


def test_sixteen_bit_greyscale_keeps_its_range():
    image = Image.new("I;16", (40, 40), 0)
    image.paste(65535, (0, 0, 20, 40))
    image.paste(32896, (20, 0, 40, 40))  # 32896 / 65535 * 255 = 128
    rgb = open_image(_bytes(image, "PNG"))
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((35, 5)) == (128, 128, 128)


def test_32_bit_integer_and_float_images():
    integer = Image.new("I", (40, 40), 200)
    assert open_image(_bytes(integer, "TIFF")).getpixel((0, 0)) == (200, 200, 200)
    floating = Image.new("F", (40, 40), 0.5)
    assert open_image(_bytes(floating, "TIFF")).getpixel((0, 0)) == (128, 128, 128)


def test_exif_orientation_is_applied():
    # Stored landscape, left red and right blue; orientation 6 means "rotate 90 degrees clockwise
    # to display", which puts red on top.
    image = Image.new("RGB", (80, 40), (255, 0, 0))
    image.paste((0, 0, 255), (40, 0, 80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb = open_image(_bytes(image, "JPEG", exif=exif, quality=95))
    assert rgb.size == (40, 80)
    top, bottom = rgb.getpixel((20, 10)), rgb.getpixel((20, 70))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 40), colour) for colour in [(255, 0, 0), (0, 255, 0)]]
    data = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert open_image(data).getpixel((5, 5)) == (255, 0, 0)


def test_celeba_aligned_images_get_the_authors_crop():
    image = Image.new("RGB", (178, 218), (0, 0, 0))
    image.paste((255, 255, 255), (15, 40, 163, 188))  # exactly the crop box, in PIL's order
    square = crop_square(image, Preprocessing())
    assert square.size == (148, 148)
    assert square.getextrema() == ((255, 255), (255, 255), (255, 255))
    x = load_image_tensor(_bytes(image, "PNG"), Preprocessing())
    assert torch.allclose(x, torch.ones_like(x), atol=1e-5)


def test_other_images_get_a_centre_square():
    image = Image.new("RGB", (300, 200), (255, 0, 0))
    image.paste((0, 255, 0), (50, 0, 250, 200))
    square = crop_square(image, Preprocessing())
    assert square.size == (200, 200)
    assert square.getextrema() == ((0, 0), (255, 255), (0, 0))


def test_large_photos_are_shrunk_like_celeba_crops():
    image = Image.new("RGB", (3000, 2000), ORANGE)
    x = load_image_tensor(_bytes(image, "PNG"), Preprocessing())
    assert x.shape == (3, 64, 64)
    assert x[0].mean().item() == pytest.approx(_expected(ORANGE[0]), abs=0.01)


def test_blur_and_resize_are_the_authors():
    """One matrix per axis equals a Gaussian blur (sigma = sqrt(scale) / 2) then bicubic."""
    side, size = 148, 64
    sigma = math.sqrt(side / size) / 2
    assert sigma == pytest.approx(0.760, abs=1e-3)
    radius = math.ceil(4 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    x = torch.rand(1, 3, side, side, dtype=torch.float64)
    padded = F.pad(x, (radius,) * 4, mode="replicate")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    reference = F.interpolate(blurred, size=(size, size), mode="bicubic", align_corners=False)
    matrix = resampling_matrix(side, size, True).double()
    assert torch.allclose(matrix @ x[0] @ matrix.T, reference[0], atol=1e-6)
    assert torch.allclose(matrix.sum(dim=1), torch.ones(size, dtype=torch.float64), atol=1e-6)


def test_small_images_are_upsampled_without_blur():
    matrix = resampling_matrix(40, 64, True)
    assert matrix.shape == (64, 40)
    assert torch.allclose(matrix, resampling_matrix(40, 64, False))


def test_greyscale_models_get_one_channel():
    x = load_image_tensor(
        _bytes(Image.new("RGB", (64, 64), ORANGE), "PNG"), Preprocessing(channels=1)
    )
    assert x.shape == (1, 64, 64)
    luma = (ORANGE[0] * 299 + ORANGE[1] * 587 + ORANGE[2] * 114) / 1000
    assert x.mean().item() == pytest.approx(_expected(round(luma)), abs=0.01)


def test_output_range_is_minus_one_to_one():
    noise = Image.effect_noise((178, 218), 120).convert("RGB")
    x = load_image_tensor(_bytes(noise, "PNG"), Preprocessing(image_size=32))
    assert x.shape == (3, 32, 32)
    assert x.min() >= -1 and x.max() <= 1


# --- refusals ---------------------------------------------------------------------------------


def test_empty_bytes():
    with pytest.raises(EmptyImageError, match="empty"):
        open_image(b"")


@pytest.mark.parametrize("data", [b"hello, I am text", b"\x00" * 1000, b'{"image": 1}'])
def test_non_images(data):
    with pytest.raises(UnsupportedImageError, match="not an image in a supported format"):
        open_image(data)


def test_postscript_is_refused():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(UnsupportedImageError):
        open_image(eps)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files(fmt, keep):
    noise = Image.effect_noise((120, 120), 60).convert("RGB")
    data = _bytes(noise, fmt)
    with pytest.raises(CorruptImageError, match="truncated|damaged"):
        open_image(data[: int(len(data) * keep)])


def test_png_cut_inside_its_last_chunk():
    data = _bytes(Image.new("RGB", (40, 40), ORANGE), "PNG")
    with pytest.raises(CorruptImageError, match="truncated"):
        open_image(data[:-1])


def test_too_many_bytes():
    data = _bytes(Image.new("RGB", (40, 40), ORANGE), "PNG")
    with pytest.raises(ImageTooLargeError, match="limit is 100 bytes"):
        open_image(data, ImageLimits(max_bytes=100))


def test_pixel_limit_is_checked_before_decoding(monkeypatch):
    data = _bytes(Image.new("RGB", (400, 300), ORANGE), "PNG")

    def decoding(self):
        raise AssertionError("the pixel limit must be checked before decoding")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoding)
    with pytest.raises(ImageTooLargeError, match="400x300 = 120,000 pixels; the limit is 100,000"):
        open_image(data, ImageLimits(max_pixels=100_000))


def test_decompression_bomb_is_refused():
    # 1-bit 20000x20000 in 49 KB would decode to 400 megapixels (the hostile corpus's, made by
    # tests/service/hostile/make_corpus.py; Pillow takes 10 s to encode one).
    bomb = (Path(__file__).parents[1] / "service" / "hostile" / "bomb-400mp.png").read_bytes()
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError, match="limit is 40,000,000 pixels"):
        open_image(bomb)


@pytest.mark.parametrize(
    ("size", "message"), [((4, 4), "at least 8 pixels"), ((1000, 50), "aspect ratio")]
)
def test_absurd_dimensions(size, message):
    with pytest.raises(ImageDimensionsError, match=message):
        open_image(_bytes(Image.new("RGB", size, ORANGE), "PNG"))


def test_refusals_are_value_errors():
    with pytest.raises(ValueError):
        open_image(b"")


# --- output side ----------------------------------------------------------------------------


def test_png_round_trip_of_a_tensor():
    x = torch.rand(3, 20, 30) * 2 - 1
    image = Image.open(io.BytesIO(encode_png(x)))
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (30, 20)
    expected = ((x + 1) * 127.5).round().to(torch.uint8)
    assert image.getpixel((7, 3)) == tuple(expected[:, 3, 7].tolist())


def test_greyscale_tensor_becomes_an_l_png():
    image = Image.open(io.BytesIO(encode_png(torch.zeros(1, 8, 8))))
    assert image.mode == "L" and image.getpixel((0, 0)) == 128


def test_out_of_range_values_are_clipped():
    image = tensor_to_image(torch.tensor([[[-5.0, 5.0]]] * 3))
    assert image.getpixel((0, 0)) == (0, 0, 0) and image.getpixel((1, 0)) == (255, 255, 255)


def test_tensor_to_image_refuses_bad_shapes():
    with pytest.raises(ValueError, match="expected a \\(1 or 3, H, W\\) tensor"):
        tensor_to_image(torch.zeros(2, 8, 8))


def test_grid_layout():
    images = torch.stack([torch.full((3, 8, 8), i / 10) for i in range(10)])
    grid = make_grid(images, nrow=4, padding=2, pad_value=-1.0)
    assert grid.shape == (3, 3 * 10 + 2, 4 * 10 + 2)
    # Image 5 sits in row 1, column 1.
    assert torch.all(grid[:, 12:20, 12:20] == 0.5)
    assert torch.all(grid[:, 0:2, :] == -1.0)
    # The unused cells of the last row stay padding.
    assert torch.all(grid[:, 22:30, 32:40] == -1.0)


def test_grid_of_fewer_images_than_a_row():
    grid = make_grid([torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)], nrow=8, padding=0)
    assert grid.shape == (1, 4, 8)


def test_grid_refuses_empty_batches():
    with pytest.raises(ValueError, match="non-empty"):
        make_grid(torch.zeros(0, 3, 8, 8))


def test_preprocessing_round_trips_and_validates():
    prep = Preprocessing(image_size=128, channels=1, blur=False)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    with pytest.raises(ValueError, match="unknown preprocessing keys: sharpen"):
        Preprocessing.from_dict(prep.to_dict() | {"sharpen": True})
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        Preprocessing(channels=4)
    with pytest.raises(ValueError, match="does not fit"):
        Preprocessing(celeba_crop=(0, 300, 0, 10))


# --- formats: an explicit allow-list, every limit checked before a pixel is decoded --------------


def _never(*args, **kwargs):
    raise AssertionError("this must not run before the limits are checked")


def test_the_accepted_formats_are_an_explicit_list():
    assert ALLOWED_FORMATS == ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP")


@pytest.mark.parametrize("fmt", ["ICO", "ICNS", "PCX", "TGA", "PPM", "SGI", "QOI"])
def test_other_formats_are_refused(fmt):
    data = _bytes(Image.new("RGB", (64, 64), ORANGE), fmt)
    with pytest.raises(UnsupportedImageError, match="not an image in a supported format"):
        open_image(data)


@pytest.mark.parametrize("build", [ico_hiding_a_large_png, icns_hiding_a_large_png])
def test_icons_hiding_a_large_picture_are_refused_without_decoding_it(monkeypatch, build):
    # Pillow's ICO plugin decodes the 12000 x 12000 PNG inside open(); it is never asked to.
    monkeypatch.setattr(ImageFile.ImageFile, "load", _never)
    with pytest.raises(UnsupportedImageError, match="not an image in a supported format"):
        open_image(build())


def test_phone_camera_jpegs_with_a_second_picture_are_read_as_their_first():
    first, depth = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))
    data = _bytes(first, "MPO", save_all=True, append_images=[depth])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    red, green, blue = open_image(data).getpixel((5, 5))
    assert red > 240 and green < 15 and blue < 15


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_every_accepted_format_is_measured_before_decoding(monkeypatch, fmt):
    data = _bytes(Image.new("RGB", (400, 300), ORANGE), fmt)
    monkeypatch.setattr(ImageFile.ImageFile, "load", _never)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", _never)
    assert read_header(data) == ImageHeader(fmt, 400, 300, Image.open(io.BytesIO(data)).mode)
    # libwebp allocates its canvas when the file is opened: a WebP is measured before that.
    monkeypatch.setattr(WebPImagePlugin._webp, "WebPAnimDecoder", _never)
    with pytest.raises(ImageTooLargeError, match="400x300 = 120,000 pixels; the limit is 100,000"):
        open_image(data, ImageLimits(max_pixels=100_000))


@pytest.mark.parametrize("options", [{"lossless": True}, {"quality": 80}, {"exif": b"Exif\0\0"}])
def test_webp_sizes_are_read_from_every_kind_of_header(options):
    image = Image.new("RGBA" if "exif" in options else "RGB", (300, 200), (*ORANGE, 128))
    assert webp_size(_bytes(image, "WEBP", **options)) == (300, 200)


def test_webp_has_a_tighter_pixel_limit_checked_before_libwebp_sees_it(monkeypatch):
    data = _bytes(Image.new("RGB", (400, 300), ORANGE), "WEBP", lossless=True)
    monkeypatch.setattr(Image, "open", _never)
    with pytest.raises(ImageTooLargeError, match="WebP images are limited to 100,000 pixels"):
        open_image(data, ImageLimits(max_webp_pixels=100_000))


# --- structure that costs more than its pixels --------------------------------------------------


def _progressive_jpeg(side: int = 100) -> bytes:
    return _bytes(Image.effect_noise((side, side), 60).convert("RGB"), "JPEG", progressive=True)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (png_many_chunks, ImageTooLargeError, "PNG file has more than 10,000 chunks"),
        (jpeg_many_segments, ImageTooLargeError, "more than 10,000 segments or stray bytes"),
        (jpeg_stray_bytes, ImageTooLargeError, "more than 10,000 segments or stray bytes"),
        (gif_many_blocks, ImageTooLargeError, "more than 10,000 blocks before its first frame"),
        (tiff_many_tiles, ImageTooLargeError, "stored in 155,236 tiles, more than 10,000"),
        (bmp_many_runs, UnsupportedImageError, "run-length encoded BMP files are not accepted"),
        (scan_bomb_jpeg, ImageTooLargeError, "more than 160 scans of 4,000,000 pixels"),
    ],
)
def test_files_made_of_structure_are_refused_from_a_count(monkeypatch, build, error, message):
    """Each of these 10 MB files cost Pillow or libjpeg seconds to walk (see make_corpus.py)."""
    data = build()
    monkeypatch.setattr(Image, "open", _never)
    started = time.perf_counter()
    with pytest.raises(error, match=message):
        open_image(data)
    assert time.perf_counter() - started < 0.5


def test_the_counts_leave_real_files_alone():
    exif = Image.Exif()
    exif[0x010E] = "a description " * 100
    icc = bytes(range(256)) * 300  # split over several APP2 segments
    photo = Image.effect_noise((300, 200), 60).convert("RGB")
    for data in [
        _bytes(photo, "JPEG", exif=exif.tobytes(), icc_profile=icc, progressive=True),
        _bytes(photo, "PNG", exif=exif.tobytes(), icc_profile=icc),
        _bytes(photo, "TIFF", compression="tiff_lzw"),
        _bytes(photo.quantize(32), "GIF", comment=b"x" * 5000),
    ]:
        assert open_image(data).size == (300, 200)


def test_progressive_scans_are_counted_against_the_pictures_size():
    data = _progressive_jpeg()
    scans = data.count(b"\xff\xda")
    assert scans >= 6
    limits = ImageLimits(max_scan_pixels=100 * 100 * (scans - 1))
    with pytest.raises(ImageTooLargeError, match=f"more than {scans - 1} scans of 10,000 pixels"):
        open_image(data, limits)
    assert open_image(data, ImageLimits(max_scan_pixels=100 * 100 * scans)).size == (100, 100)


def test_only_the_first_jpegs_scans_count():
    # After the first picture's EOI come a phone's depth map or an appended payload, which
    # libjpeg never reads: bytes that look like scans there do not count.
    data = _progressive_jpeg() + b"\xff\xda\x00\x02" * 1000
    assert open_image(data, ImageLimits(max_scan_pixels=100 * 100 * 20)).size == (100, 100)


def test_a_huge_jpeg_header_is_refused_for_its_pixels_not_its_scans():
    with pytest.raises(ImageTooLargeError, match="the limit is 40,000,000 pixels"):
        open_image((HOSTILE / "huge-header.jpg").read_bytes())


def test_a_tiff_directory_with_too_many_entries():
    data = b"II*\x00" + struct.pack("<IH", 8, 20_000) + b"\x00" * 64
    with pytest.raises(ImageTooLargeError, match="TIFF directory has 20,000 entries"):
        open_image(data)


# --- shrinking while decoding -------------------------------------------------------------------


def _textured(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack(
        [255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 23) * np.cos(y / 31)], -1
    )
    pixels += np.random.default_rng(0).normal(0, 10, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _with_alpha(image: Image.Image) -> Image.Image:
    width, height = image.size
    y, x = np.mgrid[0:height, 0:width]
    alpha = (255 * (x > width / 2) * (y % 200 > 50)).astype(np.uint8)
    image = image.copy()
    image.putalpha(Image.fromarray(alpha))
    return image


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "PNG"),
        ("RGB", "JPEG"),
        ("CMYK", "JPEG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("P", "PNG"),
        ("P+tRNS", "PNG"),
        ("1", "PNG"),
        ("I;16", "PNG"),
        ("F", "TIFF"),
        ("LAB", "TIFF"),
    ],
)
def test_large_images_are_shrunk_while_decoding_into_the_same_model_input(mode, fmt):
    picture = _textured(1200, 900)
    if mode in ("RGBA", "LA"):
        picture = _with_alpha(picture)
    if mode == "I;16":
        picture = Image.fromarray(np.asarray(picture)[..., 0].astype(np.uint16) * 257)
    elif mode == "F":
        picture = Image.fromarray(np.asarray(picture)[..., 1].astype(np.float32) / 255)
    elif mode == "P+tRNS":
        picture = picture.convert("P")
    elif mode != "RGB":
        picture = picture.convert(mode)
    options = {"quality": 95} if fmt == "JPEG" else {"transparency": 0} if "tRNS" in mode else {}
    data = _bytes(picture, fmt, **options)
    prep = Preprocessing()
    side = decode_side(prep)
    shrunk = open_image(data, min_side=side)
    assert side <= min(shrunk.size) < 2 * side or fmt == "JPEG"  # libjpeg scales by powers of 2
    assert min(shrunk.size) <= 900 / 2
    difference = (preprocess(open_image(data), prep) - preprocess(shrunk, prep)).abs()
    # Values span 2.0; one level of 8 bits is 0.008. libjpeg's 1/4-scale decode is less exact
    # than decoding it all and resampling, by about a level on average.
    assert difference.mean() < (0.015 if fmt == "JPEG" else 0.006), mode
    assert difference.max() < (0.1 if fmt == "JPEG" else 0.03), mode


def test_exif_orientation_is_applied_to_the_shrunk_picture():
    image = Image.new("RGB", (1600, 800), (255, 0, 0))
    image.paste((0, 0, 255), (800, 0, 1600, 800))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: red ends on top
    shrunk = open_image(_bytes(image, "JPEG", exif=exif, quality=95), min_side=300)
    assert shrunk.size == (400, 800)  # libjpeg's half scale, then turned upright
    top, bottom = shrunk.getpixel((200, 50)), shrunk.getpixel((200, 750))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_a_float_picture_is_scaled_by_its_whole_range_not_its_shrunk_one():
    # One bright pixel says the samples run to 255, not to 1: averaged away by the shrink, it
    # must still set the scale.
    values = np.full((1500, 2000), 0.9, dtype=np.float32)
    values[700, 900] = 200.0
    shrunk = open_image(_bytes(Image.fromarray(values), "TIFF"), min_side=300)
    assert shrunk.getpixel((0, 0)) == (1, 1, 1)  # 0.9 of 255, not of 1


def test_celeba_images_are_never_shrunk():
    tiny = Preprocessing(image_size=16)  # its resize would start from 37 pixels
    assert decode_side(tiny) == 219
    image = Image.new("RGB", (178, 218), (0, 0, 0))
    image.paste((255, 255, 255), (15, 40, 163, 188))
    x = load_image_tensor(_bytes(image, "PNG"), tiny)
    assert torch.allclose(x, torch.ones_like(x), atol=1e-5)  # the authors' crop, exactly
    # Twice CelebA's size must not shrink into something that passes for it.
    double = open_image(_bytes(image.resize((356, 436)), "PNG"), min_side=decode_side(tiny))
    assert double.size == (356, 436)


def test_a_40_megapixel_16_bit_picture_costs_no_full_size_copy():
    data = (HOSTILE / "gray16-40mp.png").read_bytes()
    assert read_header(data) == ImageHeader("PNG", 6300, 6300, "I;16")
    tracemalloc.start()
    started = time.process_time()
    try:
        x = load_image_tensor(data, Preprocessing())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.process_time() - started < 1.5
    assert x.shape == (3, 64, 64) and float(x.max()) == -1.0
    # The float64 copies of the whole picture this used to make were 320 MB each.
    assert peak < 20 * 1024 * 1024

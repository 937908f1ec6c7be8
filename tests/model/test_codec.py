import io
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile

from model.codec import (
    CorruptImageError,
    EmptyImageError,
    ImageDimensionsError,
    ImageLimits,
    ImageTooLargeError,
    Preprocessing,
    UnsupportedImageError,
    crop_square,
    encode_png,
    load_image_tensor,
    make_grid,
    open_image,
    resampling_matrix,
    tensor_to_image,
    to_rgb,
)

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
    # 1-bit 30000x30000 compresses to a few hundred KB but would decode to 900 megapixels.
    bomb = _bytes(Image.new("1", (30000, 30000)), "PNG")
    assert len(bomb) < 1_000_000
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

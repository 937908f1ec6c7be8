"""A checkpoint's `Preprocessing.alpha_background` is what transparent pixels become."""

import io

import pytest
import torch
from PIL import Image

from model.codec import Preprocessing, load_image_tensor, open_image

TEAL = (0, 128, 255)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _half_transparent(size: int, mode: str = "RGBA") -> bytes:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    image.paste((200, 10, 10, 255), (0, 0, size // 2, size))  # left half opaque red
    return _png(image.convert(mode))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_open_image_composites_over_the_given_background(mode):
    rgb = open_image(_half_transparent(40, mode), background=TEAL)
    assert rgb.getpixel((35, 20)) == TEAL


def test_palette_transparency_is_composited_over_the_given_background():
    image = Image.new("P", (40, 40), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (20, 0, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=1)
    rgb = open_image(buffer.getvalue(), background=TEAL)
    assert rgb.getpixel((5, 5)) == (255, 0, 0)
    assert rgb.getpixel((35, 5)) == TEAL


def test_a_shrunk_image_is_composited_over_the_given_background_too():
    # 1200 px with min_side 300: decoded at a quarter, through the banded box average.
    rgb = open_image(_half_transparent(1200), min_side=300, background=TEAL)
    assert rgb.size == (300, 300)
    assert rgb.getpixel((290, 150)) == TEAL
    assert rgb.getpixel((10, 150)) == (200, 10, 10)


@pytest.mark.parametrize("background", [(0, 0, 0), (255, 255, 255), TEAL])
def test_load_image_tensor_applies_the_preprocessing_background(background):
    transparent = _png(Image.new("RGBA", (100, 100), (90, 90, 90, 0)))
    preprocessing = Preprocessing(image_size=32, alpha_background=background)
    tensor = load_image_tensor(transparent, preprocessing)
    expected = torch.tensor(background, dtype=torch.float32).div(127.5).sub(1.0)
    assert torch.allclose(tensor, expected.view(3, 1, 1).expand_as(tensor), atol=1e-2)

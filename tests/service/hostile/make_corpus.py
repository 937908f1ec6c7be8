"""Write the hostile upload corpus next to this file: `python tests/service/hostile/make_corpus.py`.

Every file is small (the whole corpus stays well under 1 MB) and made from fixed seeds, so running
this again gives the same files. tests/service/test_hostile.py posts each one to the service and
holds the answer to the outcome it expects: a 4xx with a readable detail, or a correct image.
New files need an expectation there too. `LARGE` holds attacks whose point is their size (10 MB
of structure, a 40-megapixel photo): tests/service/test_decoding_cost.py builds them when it
runs rather than keeping them here.
"""

from __future__ import annotations

import io
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def _face(size: tuple[int, int] = (96, 120), seed: int = 0) -> Image.Image:
    """A smooth colour field with noise: compresses like a photo, and rotations of it differ."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    red = 255 * x / max(1, width - 1)
    green = 255 * y / max(1, height - 1)
    blue = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 11.0)
    pixels = np.stack([red, green, blue], axis=-1) + rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, colour: int, raw: bytes, *extra: bytes) -> bytes:
    """A PNG written by hand, for what Pillow will not write (16-bit RGB) or refuses to (bombs).
    `raw` is the unfiltered scanlines, each led by its filter byte."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    compressed = zlib.compress(raw, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + b"".join(extra)
        + _chunk(b"IDAT", compressed)
        + _chunk(b"IEND", b"")
    )


# --- damaged -----------------------------------------------------------------------------------


def truncated_png() -> bytes:
    data = _save(_face(), "PNG")
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    data = _save(_face(), "JPEG", quality=90)
    return data[: len(data) // 2]


def bad_crc_png() -> bytes:
    data = bytearray(_save(_face(), "PNG"))
    data[len(data) // 2] ^= 0x01  # one bit inside the pixel data: its chunk's CRC fails
    return bytes(data)


def bad_header_crc_png() -> bytes:
    data = bytearray(_save(_face(), "PNG"))
    data[20] ^= 0x01  # the height, inside IHDR
    return bytes(data)


def zero_bytes() -> bytes:
    return b""


def tiff_bad_offset() -> bytes:
    """A TIFF header whose first directory lies far past the end of the file."""
    return b"II*\x00" + struct.pack("<I", 0x7FFF_FFF0) + b"\x00" * 32


# --- decompression bombs -----------------------------------------------------------------------


def bomb_png() -> bytes:
    """20000 x 20000 1-bit pixels (400 megapixels, 50 MB decoded) in about 50 kB."""
    side = 20_000
    row = b"\x00" + b"\x00" * (side // 8)
    return _png(side, side, 1, 0, row * side)


def bomb_under_pillow_limit_png() -> bytes:
    """45 megapixels: under Pillow's own bomb error, over the service's 40 megapixel limit."""
    width, height = 9000, 5000
    row = b"\x00" + b"\x00" * (width // 8)
    return _png(width, height, 1, 0, row * height)


def idat_overflow_png() -> bytes:
    """A 64 x 64 header over an IDAT that inflates to 40 MB: only the declared pixels are read."""
    return _png(64, 64, 8, 2, b"\x00" * 40_000_000)


def ztxt_bomb_png() -> bytes:
    """A valid image with a compressed text chunk that inflates to 20 MB."""
    text = _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 20_000_000, 9))
    row = b"\x00" + b"\x80" * (64 * 3)
    return _png(64, 64, 8, 2, row * 64, text)


def huge_jpeg_header() -> bytes:
    """A real 16 x 16 JPEG whose frame header claims 65500 x 65500 pixels."""
    data = bytearray(_save(_face((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65_500, 65_500)  # height, width
    return bytes(data)


def huge_gif_header() -> bytes:
    """A 1 x 1 GIF frame on a 65535 x 65535 logical screen."""
    return (
        b"GIF89a"
        + struct.pack("<HH", 65_535, 65_535)
        + b"\x80\x00\x00"  # a 2-entry global colour table
        + b"\x00\x00\x00\xff\xff\xff"
        + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00"  # the image descriptor: 1 x 1 at (0, 0)
        + b"\x02\x02\x44\x01\x00"  # LZW data
        + b";"
    )


def huge_psd_header() -> bytes:
    """A Photoshop header (a format Pillow opens) claiming 30000 x 30000 RGB pixels."""
    return (
        b"8BPS"
        + struct.pack(">H6xHIIHH", 1, 3, 30_000, 30_000, 8, 3)
        + struct.pack(">III", 0, 0, 0)  # empty colour mode, resources, layers
        + b"\x00\x00"  # raw image data, none of it present
    )


# --- costly to decode, under every limit ---------------------------------------------------------
# 40 megapixels (6300 x 6300) each, in the modes that used to cost seconds and a gigabyte.


SIDE_40MP = 6300


def gray16_40mp_png() -> bytes:
    """16-bit greyscale, all black: 79 MB of samples in 77 kB."""
    row = b"\x00" + b"\x00" * (2 * SIDE_40MP)
    return _png(SIDE_40MP, SIDE_40MP, 16, 0, row * SIDE_40MP)


def palette_alpha_40mp_png() -> bytes:
    """A palette with a tRNS chunk (the alpha path), every pixel the opaque colour 1."""
    row = b"\x00" + b"\x01" * SIDE_40MP
    palette = _chunk(b"PLTE", b"\xff\xff\xff" + bytes(PALETTE_ALPHA_COLOUR))
    alpha = _chunk(b"tRNS", b"\x00\xff")
    return _png(SIDE_40MP, SIDE_40MP, 8, 3, row * SIDE_40MP, palette, alpha)


PALETTE_ALPHA_COLOUR = (16, 32, 48)


def float32_40mp_tiff() -> bytes:
    """32-bit float greyscale, every sample 0.5, in deflate strips that all share one copy of
    their data (TIFF allows it, and it keeps the file at 4 kB)."""
    rows_per_strip = 64
    strip = zlib.compress(struct.pack("<f", 0.5) * (SIDE_40MP * rows_per_strip), 9)
    strips = -(-SIDE_40MP // rows_per_strip)
    data_at = 8
    offsets_at = data_at + len(strip)
    counts_at = offsets_at + 4 * strips
    directory_at = counts_at + 4 * strips
    entries = [  # (tag, type, count, value): types 3 SHORT, 4 LONG
        (256, 4, 1, SIDE_40MP),  # width
        (257, 4, 1, SIDE_40MP),  # height
        (258, 3, 1, 32),  # bits per sample
        (259, 3, 1, 8),  # deflate
        (262, 3, 1, 1),  # black is zero
        (273, 4, strips, offsets_at),
        (277, 3, 1, 1),  # samples per pixel
        (278, 4, 1, rows_per_strip),
        (279, 4, strips, counts_at),
        (339, 3, 1, 3),  # IEEE floating point samples
    ]
    directory = struct.pack("<H", len(entries))
    directory += b"".join(struct.pack("<HHII", *entry) for entry in entries) + b"\x00" * 4
    return (
        b"II*\x00"
        + struct.pack("<I", directory_at)
        + strip
        + struct.pack(f"<{strips}I", *[data_at] * strips)
        + struct.pack(f"<{strips}I", *[len(strip)] * strips)
        + directory
    )


def lossless_40mp_webp() -> bytes:
    """libwebp holds four copies of the canvas while decoding: 610 MB for this 1.6 kB file."""
    return _save(Image.new("RGB", (SIDE_40MP, SIDE_40MP), (10, 20, 30)), "WEBP", lossless=True)


WEBP_COLOUR = (10, 20, 30)


def lossless_12mp_webp() -> bytes:
    """A WebP at its own pixel limit (4096 x 3072): decoded, at a bounded cost."""
    return _save(Image.new("RGB", (4096, 3072), WEBP_COLOUR), "WEBP", lossless=True)


def _one_bit_png(side: int) -> bytes:
    return _png(side, side, 1, 0, (b"\x00" + b"\x00" * (side // 8)) * side)


def ico_hiding_a_large_png() -> bytes:
    """An icon directory that says 256 x 256 over a 12000 x 12000 PNG: Pillow's ICO plugin
    decodes the PNG inside open(), before any size check can run."""
    inner = _one_bit_png(12_000)
    directory = struct.pack("<HHH", 0, 1, 1)  # reserved, type 1 (icon), one image
    # 0 x 0 means 256 x 256; colours, reserved, planes, bits, size, offset
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(inner), 6 + 16)
    return directory + entry + inner


def icns_hiding_a_large_png() -> bytes:
    """A macOS icon whose ic10 entry (1024 x 1024 by its type) holds a 12000 x 12000 PNG."""
    inner = _one_bit_png(12_000)
    entry = b"ic10" + struct.pack(">I", 8 + len(inner)) + inner
    return b"icns" + struct.pack(">I", 8 + len(entry)) + entry


def _jpeg_scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan (SOS segment and its entropy-coded data) of a JPEG."""
    scans, position = [], 2
    while data[position + 1] != 0xD9:
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if data[position + 1] != 0xDA:
            position += 2 + length
            continue
        end = position + 2 + length
        while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
            end += 1
        scans.append((position, end))
        position = end
    return scans


def scan_bomb_jpeg(side: int = 2000, repeats: int = 300) -> bytes:
    """A progressive JPEG whose last scan is repeated: libjpeg runs each one over the whole
    picture. 300 scans of 4 megapixels in 33 kB; 1,000 of 40 megapixels (216 kB) took 52 s."""
    data = _save(Image.new("L", (side, side), 128), "JPEG", progressive=True, quality=90)
    start, end = _jpeg_scans(data)[-1]
    return data[:end] + data[start:end] * repeats + data[end:]


def rle_bmp() -> bytes:
    """A run-length encoded BMP (decoded by Pillow in Python, one step per run)."""
    width = height = 64
    runs = (b"\x01\x05" * width + b"\x00\x00") * height + b"\x00\x01"
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(runs), 2835, 2835, 256, 0)
    palette = b"\x00\x00\x00\x00" * 256
    offset = 14 + len(header) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + header + palette + runs


# --- 10 MB of structure (LARGE: built by the tests) ---------------------------------------------
# Each is refused from a count, before Pillow walks it; each used to cost seconds.

STRUCTURE_BYTES = 9_500_000


def png_many_chunks() -> bytes:
    """790,000 empty private chunks between the header and the pixels (11 s)."""
    face = _save(_face((64, 64)), "PNG")
    header_end = 8 + 25
    chunks = _chunk(b"prIv", b"") * (STRUCTURE_BYTES // 12)
    return face[:header_end] + chunks + face[header_end:]


def jpeg_many_segments() -> bytes:
    """2.4 million empty APP5 segments before the frame (6 s)."""
    face = _save(_face((64, 64)), "JPEG")
    return face[:2] + b"\xff\xe5\x00\x02" * (STRUCTURE_BYTES // 4) + face[2:]


def jpeg_stray_bytes() -> bytes:
    """9.5 MB of bytes that are not markers after the first segment, which Pillow skips one at
    a time (0.8 s of CPU)."""
    face = _save(_face((64, 64)), "JPEG")
    first_segment_end = 4 + struct.unpack(">H", face[4:6])[0]
    return face[:first_segment_end] + b"\x00" * STRUCTURE_BYTES + face[first_segment_end:]


def gif_many_blocks() -> bytes:
    """A comment made of 4.7 million one-byte sub-blocks before the first frame (2 s)."""
    gif = _save(_face((64, 64)).quantize(colors=16), "GIF")
    descriptor = gif.index(b",")
    comment = b"!\xfe" + b"\x01a" * (STRUCTURE_BYTES // 2) + b"\x00"
    return gif[:descriptor] + comment + gif[descriptor:]


def tiff_many_tiles() -> bytes:
    """40 megapixels in 16 x 16 uncompressed tiles sharing one tile of data: Pillow decodes
    each of the 155,000 tiles as a step in Python (4 s)."""
    side, tile = 6304, 16
    tiles = (side // tile) ** 2
    data_at, data = 8, b"\x00" * tile * tile
    offsets_at = data_at + len(data)
    counts_at = offsets_at + 4 * tiles
    directory_at = counts_at + 4 * tiles
    entries = [
        (256, 4, 1, side),
        (257, 4, 1, side),
        (258, 3, 1, 8),
        (259, 3, 1, 1),  # uncompressed
        (262, 3, 1, 1),
        (277, 3, 1, 1),
        (322, 4, 1, tile),  # tile width
        (323, 4, 1, tile),  # tile length
        (324, 4, tiles, offsets_at),
        (325, 4, tiles, counts_at),
    ]
    directory = struct.pack("<H", len(entries))
    directory += b"".join(struct.pack("<HHII", *entry) for entry in entries) + b"\x00" * 4
    return (
        b"II*\x00"
        + struct.pack("<I", directory_at)
        + data
        + struct.pack(f"<{tiles}I", *[data_at] * tiles)
        + struct.pack(f"<{tiles}I", *[len(data)] * tiles)
        + directory
    )


def bmp_many_runs() -> bytes:
    """A 6300 x 6300 run-length encoded BMP of one-pixel runs, as many as 9.5 MB holds (4 s)."""
    width = height = SIDE_40MP
    row = b"\x01\x05" * width + b"\x00\x00"
    runs = row * (STRUCTURE_BYTES // len(row)) + b"\x00\x01"
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(runs), 2835, 2835, 256, 0)
    palette = b"\x00\x00\x00\x00" * 256
    offset = 14 + len(header) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + header + palette + runs


def scan_bomb_40mp_jpeg() -> bytes:
    return scan_bomb_jpeg(SIDE_40MP, 1000)


def photo_40mp() -> Image.Image:
    """A legitimate 40-megapixel photo (7744 x 5163, a 40 MP camera's frame): smooth colour
    fields with fine detail, 7 MB as a JPEG."""
    width, height = 7744, 5163
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.radial_gradient("L").resize((width, height))
    blue = Image.effect_noise((width // 4, height // 4), 40).resize((width, height))
    return Image.merge("RGB", (red, green, blue))


# --- odd sizes ---------------------------------------------------------------------------------


def one_by_one_png() -> bytes:
    return _save(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG")


def wide_20000x1_png() -> bytes:
    return _save(Image.new("RGB", (20_000, 1), (200, 100, 50)), "PNG")


# --- unusual but valid -------------------------------------------------------------------------


def gray16_png() -> bytes:
    """A 16-bit greyscale gradient that uses the whole 0..65535 range."""
    y, x = np.mgrid[0:80, 0:80]
    values = ((x + y) * 65535 // 158).astype(np.uint16)
    return _save(Image.fromarray(values), "PNG")  # uint16: mode I;16


def rgb16_png() -> bytes:
    """48-bit RGB, which Pillow reads but does not write."""
    pixels = np.asarray(_face((72, 72)), dtype=np.uint16) * 257  # 8-bit values spread to 16 bits
    rows = [b"\x00" + row.astype(">u2").tobytes() for row in pixels]
    return _png(72, 72, 16, 2, b"".join(rows))


def cmyk_jpeg() -> bytes:
    return _save(_face().convert("CMYK"), "JPEG", quality=92)


def palette_transparent_png() -> bytes:
    """A palette image whose colour 0 is fully transparent (a tRNS chunk)."""
    image = _face((80, 80)).quantize(colors=16, method=Image.Quantize.MEDIANCUT)
    pixels = np.asarray(image).copy()
    pixels[20:60, 20:60] = 0
    palette_image = Image.frombytes("P", image.size, pixels.tobytes())
    palette_image.putpalette(image.getpalette() or [])
    return _save(palette_image, "PNG", transparency=0)


def animated_gif() -> bytes:
    frames = [_face((64, 80), seed=i).quantize(colors=64) for i in range(3)]
    frames[1] = frames[1].transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def exif_rotated_jpeg() -> bytes:
    """Pixels stored on their side with EXIF orientation 6: viewers turn them upright."""
    stored = _face((120, 90))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return _save(stored, "JPEG", quality=92, exif=exif.tobytes())


def progressive_jpeg() -> bytes:
    return _save(_face(), "JPEG", quality=85, progressive=True)


def bilevel_png() -> bytes:
    return _save(_face().convert("1"), "PNG")


# --- polyglots ---------------------------------------------------------------------------------


def _member(name: str, compression: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    member = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))  # the same bytes every run
    member.compress_type = compression
    return member


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_member("readme.txt"), "this PNG is also a zip archive\n" * 20)
        archive.writestr(_member("payload.sh"), "#!/bin/sh\necho owned\n")
    return buffer.getvalue()


def png_with_zip() -> bytes:
    return _save(_face(), "PNG") + _zip()


def png_with_large_zip() -> bytes:
    """More than 4 kB after IEND (the codec looks for IEND in the last 4 kB)."""
    noise = np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_member("noise.bin", zipfile.ZIP_STORED), noise)
    return _save(_face(), "PNG") + buffer.getvalue()


def png_with_html() -> bytes:
    html = b"<html><body><script>alert(document.domain)</script></body></html>\n"
    return _save(_face(), "PNG") + html


def jpeg_with_zip() -> bytes:
    return _save(_face(), "JPEG", quality=90) + _zip()


def gif_js_polyglot() -> bytes:
    """Valid JavaScript and a GIF at once: the screen width bytes are `/*`, opening a comment."""
    return (
        b"GIF89a/*\x0a\x00\x80\x00\x00"
        + b"\x00\x00\x00\xff\xff\xff"
        + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00"
        + b";*/=1;alert(document.domain);//"
    )


def html_named_png() -> bytes:
    return b"<!DOCTYPE html><html><script>alert(1)</script></html>\n"


def svg_with_script() -> bytes:
    return (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        b"<script>alert(1)</script><rect width='64' height='64'/></svg>\n"
    )


CORPUS: dict[str, Callable[[], bytes]] = {
    "truncated.png": truncated_png,
    "truncated.jpg": truncated_jpeg,
    "bad-crc.png": bad_crc_png,
    "bad-header-crc.png": bad_header_crc_png,
    "zero-bytes.png": zero_bytes,
    "bad-offset.tif": tiff_bad_offset,
    "bomb-400mp.png": bomb_png,
    "bomb-45mp.png": bomb_under_pillow_limit_png,
    "idat-overflow.png": idat_overflow_png,
    "ztxt-bomb.png": ztxt_bomb_png,
    "huge-header.jpg": huge_jpeg_header,
    "huge-header.gif": huge_gif_header,
    "huge-header.psd": huge_psd_header,
    "1x1.png": one_by_one_png,
    "20000x1.png": wide_20000x1_png,
    "gray16.png": gray16_png,
    "rgb16.png": rgb16_png,
    "cmyk.jpg": cmyk_jpeg,
    "palette-transparent.png": palette_transparent_png,
    "animated.gif": animated_gif,
    "exif-rotated.jpg": exif_rotated_jpeg,
    "progressive.jpg": progressive_jpeg,
    "bilevel.png": bilevel_png,
    "png-zip-polyglot.png": png_with_zip,
    "png-large-zip-polyglot.png": png_with_large_zip,
    "png-html-polyglot.png": png_with_html,
    "jpeg-zip-polyglot.jpg": jpeg_with_zip,
    "gif-js-polyglot.gif": gif_js_polyglot,
    "html-named.png": html_named_png,
    "script.svg": svg_with_script,
    "gray16-40mp.png": gray16_40mp_png,
    "palette-alpha-40mp.png": palette_alpha_40mp_png,
    "float32-40mp.tif": float32_40mp_tiff,
    "lossless-40mp.webp": lossless_40mp_webp,
    "lossless-12mp.webp": lossless_12mp_webp,
    "ico-hiding-12000.ico": ico_hiding_a_large_png,
    "icns-hiding-12000.icns": icns_hiding_a_large_png,
    "scan-bomb.jpg": scan_bomb_jpeg,
    "rle.bmp": rle_bmp,
}

# Built by the tests that use them (too large to keep here).
LARGE: dict[str, Callable[[], bytes]] = {
    "png-many-chunks.png": png_many_chunks,
    "jpeg-many-segments.jpg": jpeg_many_segments,
    "jpeg-stray-bytes.jpg": jpeg_stray_bytes,
    "gif-many-blocks.gif": gif_many_blocks,
    "tiff-many-tiles.tif": tiff_many_tiles,
    "bmp-many-runs.bmp": bmp_many_runs,
    "scan-bomb-40mp.jpg": scan_bomb_40mp_jpeg,
    "photo-40mp.jpg": lambda: _save(photo_40mp(), "JPEG", quality=90),
    "photo-40mp-progressive.jpg": lambda: _save(photo_40mp(), "JPEG", quality=90, progressive=True),
}


def main() -> int:
    total = 0
    for name, build in CORPUS.items():
        data = build()
        (HERE / name).write_bytes(data)
        total += len(data)
        print(f"{name:28} {len(data):>9,} bytes")
    print(f"{'total':28} {total:>9,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

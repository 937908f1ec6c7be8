"""Cheap checks of an image file's structure, made before Pillow parses it.

The pixel limit bounds what a picture costs to hold, not what its file costs to read. Pillow's
plugins walk some structures in Python, one step per PNG chunk, JPEG segment (or stray byte),
GIF block or TIFF strip, and libjpeg runs every scan of a progressive JPEG over the whole
picture: a 10 MB upload of nothing but such steps costs seconds to minutes of CPU while staying
far under the pixel limit (a 216 KB JPEG of 1,000 repeated scans took 52 s). These walks count
the steps with C-speed searches and stop at the limit, so a refusal costs milliseconds, and they
read the sizes a decoder allocates for before it is created (libwebp's canvas).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass


class StructureError(ValueError):
    """A file with more structure than any picture needs (a client would get 413)."""


class UnsupportedVariantError(ValueError):
    """A variant of an accepted format that is refused (a client would get 415)."""


@dataclass(frozen=True)
class StructureLimits:
    # PNG chunks, JPEG segments and stray bytes before the first scan, GIF blocks before the
    # first frame, TIFF directory entries and strips or tiles. Real files have tens to a few
    # thousand (a 10 MB PNG in libpng's 8 kB IDAT chunks has 1,300).
    max_steps: int = 10_000
    # Scans x pixels of a progressive JPEG: libjpeg's cost. 16 scans at 40 megapixels (a
    # progressive photo has 3 to 12), proportionally more for smaller pictures.
    max_scan_pixels: int = 640_000_000
    # Pictures over the pixel limit are refused for that, with a clearer message, once opened.
    max_pixels: int = 40_000_000


def check_structure(data: bytes, limits: StructureLimits) -> None:
    """Raise StructureError or UnsupportedVariantError; formats not checked here pass."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        _png(data, limits)
    elif data.startswith(b"\xff\xd8\xff"):
        _jpeg(data, limits)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        _gif(data, limits)
    elif data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        _tiff(data, limits)
    elif data.startswith(b"BM"):
        _bmp(data)


def _too_many(what: str, limit: int) -> StructureError:
    return StructureError(f"the {what} (the limit is {limit:,}); no picture needs that many")


def _png(data: bytes, limits: StructureLimits) -> None:
    position, chunks = 8, 0
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        chunks += 1
        if chunks > limits.max_steps:
            raise _too_many(f"PNG file has more than {limits.max_steps:,} chunks", limits.max_steps)
        if kind == b"IEND":
            return
        position += 12 + length


# A marker in entropy-coded data: 0xFF followed by neither a stuffed zero, a restart marker nor
# another 0xFF (fill bytes before a marker).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn, not DHT/JPG/DAC


def _jpeg(data: bytes, limits: StructureLimits) -> None:
    """Walk the primary image's segments to its EOI, counting the steps Pillow takes in Python
    before the first scan and the scans libjpeg runs."""
    position, steps, scans, pixels = 2, 0, 0, 0
    in_scan = False
    size = len(data)
    while position + 1 < size:
        if data[position] != 0xFF:
            if in_scan:  # entropy-coded data: libjpeg skips it, not Python
                match = _JPEG_MARKER.search(data, position)
                if match is None:
                    return
                position = match.start()
                continue
            # Pillow skips stray bytes between segments one at a time.
            found = data.find(b"\xff", position)
            steps += (found if found >= 0 else size) - position
            if found < 0 or steps > limits.max_steps:
                break
            position = found
            continue
        marker = data[position + 1]
        if not in_scan:
            steps += 1
            if steps > limits.max_steps:
                break
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x00 or 0xD0 <= marker <= 0xD8 or marker == 0x01:  # no length field
            position += 2
            continue
        if marker == 0xD9:  # EOI: the rest is another image (MPO) or an appended payload
            return
        if position + 4 > size:
            return
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker in _JPEG_FRAMES and position + 9 <= size:
            height, width = struct.unpack_from(">HH", data, position + 5)
            pixels = width * height
        if marker == 0xDA:
            scans += 1
            in_scan = True
            if scans * pixels > limits.max_scan_pixels and pixels <= limits.max_pixels:
                allowed = max(1, limits.max_scan_pixels // max(1, pixels))
                raise StructureError(
                    f"the progressive JPEG has more than {allowed:,} scans of {pixels:,} pixels "
                    f"(the limit is {limits.max_scan_pixels:,} scan-pixels); re-save it as a "
                    "baseline JPEG"
                )
        position += 2 + length
    if steps > limits.max_steps:
        raise _too_many(
            f"JPEG file has more than {limits.max_steps:,} segments or stray bytes before its "
            "picture",
            limits.max_steps,
        )


_GIF_BLOCK = re.compile(rb"[!,;]")


def _gif(data: bytes, limits: StructureLimits) -> None:
    """Count what Pillow reads in Python before the first frame's pixels: extension blocks,
    their sub-blocks and stray bytes."""
    if len(data) < 13:
        return
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    steps = 0
    size = len(data)
    while position < size and steps <= limits.max_steps:
        introducer = data[position]
        if introducer in b",;":  # the first frame (decoded in C) or the end
            return
        if introducer != 0x21:
            match = _GIF_BLOCK.search(data, position)
            found = match.start() if match else size
            steps += found - position
            position = found
            continue
        position += 2  # "!" and the label
        while position < size and steps <= limits.max_steps:
            steps += 1
            block = data[position]
            position += 1 + block
            if block == 0:
                break
    if steps > limits.max_steps:
        raise _too_many(
            f"GIF file has more than {limits.max_steps:,} blocks before its first frame",
            limits.max_steps,
        )


_TIFF_PIECES = {273: "strips", 279: "strips", 324: "tiles", 325: "tiles"}


def _tiff(data: bytes, limits: StructureLimits) -> None:
    """Pillow reads the first directory's entries one by one in Python and, for uncompressed
    data, decodes each strip or tile as a separate step."""
    order = "<" if data.startswith(b"II") else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        if big:
            (offset,) = struct.unpack_from(order + "Q", data, 8)
            (entries,) = struct.unpack_from(order + "Q", data, offset)
            entry, first, counted = 20, offset + 8, order + "HHQ"
        else:
            (offset,) = struct.unpack_from(order + "I", data, 4)
            (entries,) = struct.unpack_from(order + "H", data, offset)
            entry, first, counted = 12, offset + 2, order + "HHI"
    except struct.error:
        return  # Pillow refuses what it cannot read
    if entries > limits.max_steps:
        raise _too_many(
            f"TIFF directory has {entries:,} entries, more than {limits.max_steps:,}",
            limits.max_steps,
        )
    for index in range(entries):
        try:
            tag, _, count = struct.unpack_from(counted, data, first + index * entry)
        except struct.error:
            return
        if tag in _TIFF_PIECES and count > limits.max_steps:
            raise _too_many(
                f"TIFF picture is stored in {count:,} {_TIFF_PIECES[tag]}, more than "
                f"{limits.max_steps:,}",
                limits.max_steps,
            )


def _bmp(data: bytes) -> None:
    # Pillow decodes run-length encoded BMPs in Python, one step per run: a 10 MB file of
    # one-pixel runs takes seconds. Nobody stores a face that way.
    if len(data) >= 34 and struct.unpack_from("<I", data, 14)[0] >= 40:
        (compression,) = struct.unpack_from("<I", data, 30)
        if compression in (1, 2):
            raise UnsupportedVariantError(
                "run-length encoded BMP files are not accepted; send PNG, JPEG or a plain BMP"
            )


def webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas a WebP file declares (libwebp allocates it when the file is opened), or None
    for data that is not a WebP file this can read."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind = data[12:16]
    if kind == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8 ":
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
    else:
        return None
    return width, height

"""Reading files whose paths someone else chose: only regular files, and never more than a cap.

A FIFO blocks its reader until a writer comes (forever, if none does) and a link to `/dev/zero`
never ends, so a path is checked with `stat` before it is opened. The path can be swapped
between that check and `open`, so the file is opened without blocking and checked again on the
open descriptor, which is the file actually read.

JSON from such files is parsed with limits too (`strict_json_loads`), so a value that is valid
JSON but that no vaegan file holds is refused with a reason instead of crashing later.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


class FileRefusedError(ValueError):
    """A path that is not a readable regular file within the limit; `problem` says why."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(path: Path, status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "a special file")
        raise FileRefusedError(path, f"not a regular file ({kind})")


def _refusal(path: Path, error: OSError) -> FileRefusedError:
    if isinstance(error, FileNotFoundError):
        return FileRefusedError(path, "no such file")
    if isinstance(error, PermissionError):
        return FileRefusedError(path, "cannot be read (permission denied)")
    reason = (error.strerror or str(error)).lower()
    return FileRefusedError(path, f"cannot be read ({reason})")


@contextmanager
def open_regular_file(path: str | os.PathLike[str]) -> Iterator[tuple[BinaryIO, int]]:
    """The open file and its size, if `path` is a regular file; else FileRefusedError.

    Errors while opening or reading inside the block (permission, I/O) become FileRefusedError
    too, so a caller has one exception to turn into its own message.
    """
    source = Path(path)
    try:
        _check_regular(source, source.stat())
        # O_NONBLOCK: if a FIFO was swapped in after the stat, opening it must not wait for a
        # writer; for regular files the flag changes nothing.
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise _refusal(source, exc) from None
    try:
        status = os.fstat(fd)
        _check_regular(source, status)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        try:
            yield handle, status.st_size
        except OSError as exc:
            raise _refusal(source, exc) from None


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> bytes:
    """All of a regular file's bytes, refusing anything else and files over `max_bytes`."""
    with open_regular_file(path) as (handle, size):
        if max_bytes is not None and size > max_bytes:
            raise FileRefusedError(path, f"{size:,} bytes; the limit is {max_bytes:,} bytes")
        return read_exactly(path, handle, size)


def read_exactly(path: str | os.PathLike[str], handle: BinaryIO, size: int) -> bytes:
    """The `size` bytes left in `handle`; refused if the file turns out shorter or longer.

    One byte more than expected is asked for, so a file that grows while it is read is noticed
    without ever reading more than `size + 1` bytes of it.
    """
    data = handle.read(size + 1)
    if len(data) != size:
        raise FileRefusedError(path, "the file changed while it was being read")
    return data


# vaegan's own JSON is a few levels deep and its numbers are step counts, sizes and figures.
_MAX_JSON_DEPTH = 32
_MAX_JSON_DIGITS = 30


class JSONLimitError(ValueError):
    """Valid JSON that a vaegan file never holds; the message completes "the metadata ..."."""


def strict_json_loads(text: str | bytes) -> Any:
    """`json.loads` for files anyone may have written: raises JSONLimitError instead of giving
    values that crash whoever uses them later (NaN or Infinity, numbers too large for a float
    or with thousands of digits, nesting deep enough to exhaust the stack)."""
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise JSONLimitError(f"is nested more than {_MAX_JSON_DEPTH} levels deep") from None
    if _nesting(value) > _MAX_JSON_DEPTH:
        raise JSONLimitError(f"is nested more than {_MAX_JSON_DEPTH} levels deep")
    return value


def _refuse_constant(name: str) -> Any:
    raise JSONLimitError(f"has {name}, which is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONLimitError(f"has a number too large for a float ({reprlib.repr(text)})")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_JSON_DIGITS:
        raise JSONLimitError(
            f"has a {len(text.lstrip('-')):,}-digit number (at most {_MAX_JSON_DIGITS} digits)"
        )
    return int(text)


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in `value`, counted without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > _MAX_JSON_DEPTH:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest

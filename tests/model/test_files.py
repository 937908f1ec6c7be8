import os
import time
from pathlib import Path

import pytest

from model import files
from model.files import (
    FileRefusedError,
    JSONLimitError,
    open_regular_file,
    read_regular_file,
    strict_json_loads,
)


def _refused(path, message, **kwargs):
    started = time.monotonic()
    with pytest.raises(FileRefusedError, match=message) as info:
        read_regular_file(path, **kwargs)
    assert time.monotonic() - started < 1.0
    assert info.value.path == Path(path)
    return info.value


def test_reads_a_regular_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    assert read_regular_file(path) == b"abc"
    assert read_regular_file(path, max_bytes=3) == b"abc"


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "000001.jpg"
    os.mkfifo(fifo)
    _refused(fifo, r"not a regular file \(a FIFO\)")


def test_a_link_to_a_device_is_refused_before_reading(tmp_path):
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    _refused(link, r"not a regular file \(a character device\)")


def test_folders_missing_files_and_the_size_cap(tmp_path):
    _refused(tmp_path, r"not a regular file \(a folder\)")
    _refused(tmp_path / "gone", "no such file")
    big = tmp_path / "big.jpg"
    with big.open("wb") as handle:
        handle.truncate(10**9)  # sparse: costs no disk
    _refused(big, "1,000,000,000 bytes; the limit is 1,000 bytes", max_bytes=1000)


@pytest.mark.timeout(10)
def test_a_fifo_swapped_in_after_the_stat_is_caught_on_the_open_descriptor(tmp_path, monkeypatch):
    regular, fifo = tmp_path / "real.jpg", tmp_path / "swapped.jpg"
    regular.write_bytes(b"x")
    os.mkfifo(fifo)
    real_stat = Path.stat

    def stat_of_the_regular_file(self, **kwargs):
        return real_stat(regular if self == fifo else self, **kwargs)

    # As if the path still named a regular file when it was checked.
    monkeypatch.setattr(Path, "stat", stat_of_the_regular_file)
    _refused(fifo, r"not a regular file \(a FIFO\)")


def test_a_file_that_changes_size_while_read_is_refused(tmp_path):
    path = tmp_path / "growing.bin"
    path.write_bytes(b"1234")
    with (
        pytest.raises(FileRefusedError, match="changed while it was being read"),
        open_regular_file(path) as (handle, size),
    ):
        path.write_bytes(b"123456")
        files.read_exactly(path, handle, size)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested more than 32 levels"),
        ('{"a":' * 40 + "1" + "}" * 40, "nested more than 32 levels"),
        ('{"step": Infinity}', "Infinity, which is not a number JSON allows"),
        ('{"x": NaN}', "NaN"),
        ('{"x": 1e999}', "too large for a float"),
        ('{"step": ' + "9" * 5000 + "}", "5,000-digit number"),
    ],
)
def test_json_that_no_vaegan_file_holds_is_refused_with_the_reason(text, message):
    with pytest.raises(JSONLimitError, match=message):
        strict_json_loads(text)


def test_ordinary_json_is_read_as_usual():
    assert strict_json_loads('{"a": [1, -2.5e3, "x", null, true], "b": {"c": {}}}') == {
        "a": [1, -2500.0, "x", None, True],
        "b": {"c": {}},
    }

"""File states: the content hash read with the size a stat just gave is the hash of the whole file."""

import hashlib
import os

import pytest

from tinyo import intake
from tinyo.intake import compare_file, digest_file


def blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@pytest.mark.parametrize("size", [0, 1, 2, 4095, 4096, 70_000])
@pytest.mark.parametrize("hint", ["exact", "none", "smaller", "larger"])
def test_the_digest_is_of_the_whole_file_whatever_size_it_is_told(tmp_path, monkeypatch, size, hint):
    monkeypatch.setattr(intake, "READ_CHUNK", 4096)  # several reads for the larger files
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    told = {"exact": size, "none": None, "smaller": max(0, size - 3), "larger": size + 5}[hint]
    # "smaller": the file grew after the stat; "larger": it shrank: either way, all of it is read
    assert digest_file(str(path), told) == blake(data)


def test_an_unreadable_or_missing_file_has_no_digest(tmp_path):
    assert digest_file(str(tmp_path / "missing")) is None
    assert digest_file(str(tmp_path)) is None  # a folder cannot be read as a file


def test_compare_file_reads_the_hash_only_when_mtime_or_size_moved(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("one")
    changed, first = compare_file(str(path), None, True)
    assert changed and first.digest == blake(b"one") and first.size == 3
    assert compare_file(str(path), first, True) == (False, first)  # same mtime and size: not read
    os.utime(path, ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))  # touched, same content
    changed, touched = compare_file(str(path), first, True)
    assert not changed and touched.digest == first.digest and touched.mtime_ns != first.mtime_ns
    path.write_text("two!")
    changed, second = compare_file(str(path), touched, True)
    assert changed and second.digest == blake(b"two!")

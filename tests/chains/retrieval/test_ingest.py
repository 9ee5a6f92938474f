"""Documents into chunks: splitting, stable ids, titles, metadata, and errors a user can act on."""

import io
from typing import Any

import pytest
from pypdf import PdfWriter
from pypdf.errors import DependencyError

from chainserve.chains.retrieval import pdf_text
from chainserve.chains.retrieval.ingest import (
    IngestError,
    detect_format,
    document_id,
    ingest_text,
    ingest_upload,
)

GUIDE = """# Harbor guide

Harbor keeps your notes in sync.
It runs on any machine.

Second paragraph of the introduction.

## Installing

Download the package and run the installer.

```sh
# this line is a shell comment, not a heading
harbor install
```

### On Windows

Use the MSI package.

## Backups

Backups run every night at 02:00.
"""


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A minimal valid PDF: one Helvetica text object per page, one line per `Tj`."""
    count = len(pages)
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        shown = [_pdf_string(line) + b" Tj T*" for line in text.splitlines()]
        content = b"BT /F1 12 Tf 16 TL 72 720 Td " + b" ".join(shown) + b" ET" if shown else b""
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    if title is not None:
        objects.append(b"<< /Title %s >>" % _pdf_string(title))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info %d 0 R" % len(objects) if title is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\n" % (len(objects) + 1, info)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_markdown_splits_at_headings_and_keeps_them_in_metadata() -> None:
    doc = ingest_text(GUIDE, fmt="markdown", doc_id="guide")
    assert [c.metadata.get("h2") for c in doc.chunks] == [
        None,
        "Installing",
        "Installing",
        "Backups",
    ]
    assert doc.chunks[2].metadata["h3"] == "On Windows"
    assert {c.metadata["h1"] for c in doc.chunks} == {"Harbor guide"}
    assert doc.chunks[1].text.startswith("## Installing")  # headings stay in the text
    assert "# this line is a shell comment" in doc.chunks[1].text
    assert "sync.\nIt runs on any machine.\n\nSecond paragraph" in doc.chunks[0].text
    assert all(c.metadata["start_index"] == 0 for c in doc.chunks)
    assert doc.title == "Harbor guide"
    assert doc.format == "markdown"


def test_long_text_splits_into_overlapping_chunks_no_longer_than_the_size() -> None:
    paragraphs = [
        f"Paragraph {i}: " + " ".join(f"word{i}x{j}" for j in range(60)) for i in range(8)
    ]
    text = "\n\n".join(paragraphs)
    doc = ingest_text(text, doc_id="long", chunk_size=500, chunk_overlap=100)
    assert len(doc.chunks) > 3
    assert all(len(c.text) <= 500 for c in doc.chunks)
    starts = [c.metadata["start_index"] for c in doc.chunks]
    assert starts == sorted(starts)
    for chunk in doc.chunks:
        start = chunk.metadata["start_index"]
        assert text[start : start + len(chunk.text)] == chunk.text
    pairs = zip(doc.chunks, doc.chunks[1:], strict=False)
    assert any(b.text[:20] in a.text for a, b in pairs), "no overlap between any two chunks"


def test_chunk_ids_are_doc_id_and_index_and_stable_across_ingests() -> None:
    first = ingest_upload(GUIDE.encode(), filename="Harbor Guide.md")
    again = ingest_upload(GUIDE.encode(), filename="Harbor Guide.md", content_type="text/plain")
    assert first.id == "harbor-guide"
    assert [c.id for c in first.chunks] == [f"harbor-guide:{i}" for i in range(len(first.chunks))]
    assert {c.doc_id for c in first.chunks} == {"harbor-guide"}
    assert again.chunks == first.chunks


@pytest.mark.parametrize(
    ("explicit", "filename", "expected"),
    [
        ("my id: v2", "report.pdf", "my id: v2"),
        (None, "Quarterly Report (final).PDF", "quarterly-report-final"),
        (None, "C:\\Users\\ada\\Notes\\Todo List.md", "todo-list"),
        (None, "docs/ünïcode.txt", "n-code"),
        (None, "!!!.txt", "doc-2cf24dba5fb0a30e"),
        (None, None, "doc-2cf24dba5fb0a30e"),
    ],
)
def test_document_id_is_the_clients_else_the_file_name_else_a_content_hash(
    explicit: str | None, filename: str | None, expected: str
) -> None:
    assert document_id(explicit, filename, b"hello") == expected


@pytest.mark.parametrize("bad", ["", "   ", " padded", "a" * 201, "tab\there"])
def test_invalid_client_ids_are_refused(bad: str) -> None:
    with pytest.raises(IngestError, match="document id"):
        ingest_text("some text", doc_id=bad)


def test_inline_text_without_id_gets_the_same_id_for_the_same_text() -> None:
    first, again = ingest_text("Same words."), ingest_text("Same words.")
    assert first.id == again.id != ingest_text("Other words.").id
    assert first.id.startswith("doc-")
    assert first.title is None
    assert ingest_text("x", source="notes.txt").id == "notes"


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("a.md", "application/octet-stream", "markdown"),
        ("a.markdown", None, "markdown"),
        ("a.MD", "text/plain", "markdown"),  # browsers often call Markdown plain text
        ("a.txt", "text/plain; charset=utf-8", "text"),
        ("a.pdf", "", "pdf"),
        ("upload", "application/pdf", "pdf"),
        (None, "text/markdown; charset=UTF-8", "markdown"),
        ("blob", "Text/Plain", "text"),
    ],
)
def test_format_comes_from_the_extension_then_the_content_type(
    filename: str | None, content_type: str | None, expected: str
) -> None:
    assert detect_format(filename, content_type) == expected


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [("slides.pptx", "application/octet-stream"), ("photo.png", "image/png"), (None, None)],
)
def test_unsupported_uploads_are_refused_naming_what_is_accepted(
    filename: str | None, content_type: str | None
) -> None:
    with pytest.raises(IngestError, match=r"upload a \.md, \.markdown, \.txt or \.pdf file"):
        ingest_upload(b"data", filename=filename, content_type=content_type)


def test_text_uploads_must_be_utf8() -> None:
    with pytest.raises(IngestError, match=r"'menu.txt' is not UTF-8 text .*offset 2"):
        ingest_upload("Crème brûlée".encode("latin-1"), filename="menu.txt")
    with_bom = ingest_upload(b"\xef\xbb\xbfHello", filename="hi.txt")
    assert with_bom.chunks[0].text == "Hello"


def test_documents_without_text_are_refused() -> None:
    with pytest.raises(IngestError, match="no text"):
        ingest_upload(b" \n\n\t ", filename="empty.md")


def test_nul_characters_are_dropped() -> None:
    """PostgreSQL cannot store NUL in text, and it carries no meaning for retrieval."""
    doc = ingest_text("before\x00after", doc_id="nul")
    assert doc.chunks[0].text == "beforeafter"


def test_title_metadata_and_source_are_on_every_chunk() -> None:
    doc = ingest_upload(
        GUIDE.encode(),
        filename="guide.md",
        metadata={"title": "  Custom title ", "team": "docs", "page": "ignored"},
    )
    assert doc.title == "Custom title"
    assert doc.metadata == {
        "title": "Custom title",
        "team": "docs",
        "page": "ignored",
        "source": "guide.md",
        "format": "markdown",
    }
    for chunk in doc.chunks:
        assert chunk.metadata.items() >= {"title": "Custom title", "team": "docs"}.items()
    plain = ingest_upload(b"no headings here", filename="C:\\tmp\\plain notes.txt")
    assert plain.title == "plain notes.txt"
    assert plain.chunks[0].metadata["source"] == "C:\\tmp\\plain notes.txt"


def test_first_heading_skips_code_fences_and_closing_hashes() -> None:
    text = "Intro line.\n\n```\n# not a title\n```\n\n## Real title ##\n\nBody.\n"
    assert ingest_text(text, fmt="markdown", doc_id="t").title == "Real title"
    assert ingest_text(text, fmt="text", doc_id="t").title is None


def test_pdf_pages_become_chunks_with_page_numbers_and_the_pdf_title() -> None:
    pdf = make_pdf(["Tides rise twice a day.", "The moon pulls (mostly) the oceans."], "Tides")
    doc = ingest_upload(pdf, filename="tides.pdf", content_type="application/pdf")
    assert doc.id == "tides"
    assert doc.title == "Tides"
    assert doc.format == "pdf"
    assert [(c.id, c.metadata["page"]) for c in doc.chunks] == [("tides:0", 1), ("tides:1", 2)]
    assert "Tides rise twice a day." in doc.chunks[0].text
    assert "The moon pulls (mostly) the oceans." in doc.chunks[1].text


def test_pdf_title_falls_back_to_the_file_name_and_blank_pages_are_skipped() -> None:
    doc = ingest_upload(make_pdf(["", "Only page two has text."]), filename="scan-2.pdf")
    assert doc.title == "scan-2.pdf"
    assert [c.metadata["page"] for c in doc.chunks] == [2]


def test_password_protected_pdf_is_refused_but_owner_only_password_opens() -> None:
    pdf = make_pdf(["Confidential numbers."])
    with pytest.raises(IngestError, match="password-protected: save a copy without"):
        ingest_upload(encrypted(pdf, user_password="secret"), filename="locked.pdf")
    opened = ingest_upload(encrypted(pdf, user_password=""), filename="restricted.pdf")
    assert "Confidential numbers." in opened.chunks[0].text


def test_pdf_needing_an_absent_decryption_library_reads_as_protected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def aes_reader(*args: Any, **kwargs: Any) -> Any:
        raise DependencyError("cryptography>=3.1 is required for AES algorithm")

    monkeypatch.setattr(pdf_text, "PdfReader", aes_reader)
    with pytest.raises(IngestError, match="password-protected"):
        ingest_upload(make_pdf(["x"]), filename="aes.pdf")


def test_scanned_pdf_without_text_is_refused() -> None:
    with pytest.raises(IngestError, match=r"no extractable text .* run OCR"):
        ingest_upload(make_pdf(["", ""]), filename="scan.pdf")


@pytest.mark.parametrize(
    "data",
    [b"", b"not a pdf at all", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", make_pdf(["x"])[:60]],
)
def test_damaged_pdf_is_refused(data: bytes) -> None:
    with pytest.raises(IngestError, match="not a readable PDF"):
        ingest_upload(data, filename="broken.pdf")

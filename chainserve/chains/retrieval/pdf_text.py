"""Read a PDF's text per page, turning pypdf's many failures into errors a user can act on."""

import io
import logging

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from chainserve.chains.retrieval.types import IngestError

logger = logging.getLogger(__name__)


def read_pdf(data: bytes) -> tuple[list[str], str | None]:
    """Each page's text, and the title in the PDF's metadata."""
    protected = IngestError(
        "the PDF is password-protected: save a copy without a password and upload that"
    )
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        # PdfReader has already tried the empty password, which opens owner-password-only files.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise protected
        pages = [_page_text(reader, index) for index in range(len(reader.pages))]
    except DependencyError:
        # pypdf decrypts AES only with the optional `cryptography` package.
        raise protected from None
    except IngestError:
        raise
    except Exception:  # pypdf raises many kinds (KeyError, ValueError, ...) on broken files
        logger.info("unreadable PDF", exc_info=True)
        raise IngestError(
            "the file is not a readable PDF (it may be damaged or truncated): "
            "open and save it again, or export it to PDF anew, and upload that"
        ) from None
    if not any(page.strip() for page in pages):
        raise IngestError(
            "the PDF has no extractable text (it is probably scanned images): "
            "run OCR on it, or upload a text version"
        )
    return pages, _pdf_title(reader)


def _page_text(reader: PdfReader, index: int) -> str:
    """One broken page should not lose the whole document: it counts as empty, and is logged."""
    try:
        return reader.pages[index].extract_text()
    except DependencyError:
        raise  # AES-128 files open without `cryptography` but their pages do not decrypt
    except Exception:  # same: any error from pypdf on one page's content
        logger.warning("could not extract text from PDF page %d", index + 1, exc_info=True)
        return ""


def _pdf_title(reader: PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a broken info dictionary only costs us the title
        logger.info("unreadable PDF metadata", exc_info=True)
        return None
    if not isinstance(title, str):
        return None
    return title.strip() or None

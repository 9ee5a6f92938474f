"""Document collections for retrieval: ingest (JSON or file upload), list, inspect, delete.

Collections are per key (`api/access/collection_access.py` says whose a request means)."""

import asyncio
import json
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from chainserve.api.access.collection_access import (
    OwnerParam,
    readable_collection,
    refuse_missing_write,
    target_owner,
)
from chainserve.api.access.ownership import CallerDep
from chainserve.api.deps import RetrievalDep
from chainserve.api.errors.responses import REFUSALS, error_responses
from chainserve.api.errors.typed import RequestError
from chainserve.chains.retrieval.ingest import (
    IngestedDocument,
    IngestError,
    ingest_text,
    ingest_upload,
)
from chainserve.chains.retrieval.retrievers import COLLECTION_PATTERN
from chainserve.chains.retrieval.types import CollectionInfo, EmbedderMismatchError

router = APIRouter(
    prefix="/collections", tags=["collections"], responses=error_responses(*REFUSALS)
)

CollectionName = Annotated[
    str, Path(pattern=COLLECTION_PATTERN, description="Letters, digits, `_`, `.`, `-`.")
]
MAX_DOCUMENTS = 100
"""Per request: ingesting embeds every chunk before answering."""


class DocumentIn(BaseModel):
    id: str | None = Field(
        None, max_length=200, description="Stable id: ingesting the same id replaces it."
    )
    text: str = Field(min_length=1)
    format: Literal["text", "markdown"] = "text"
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Kept with every chunk; `title` names the document."
    )


class IngestRequest(BaseModel):
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS)


class IngestedOut(BaseModel):
    id: str
    title: str | None
    format: str
    chunks: int


class IngestResponse(BaseModel):
    collection: str
    embedder: str
    documents: list[IngestedOut]


class CollectionOut(BaseModel):
    name: str
    documents: int
    chunks: int
    embedder: str | None
    updated_at: float | None
    owner: str | None = Field(
        description="The key id that owns it; null: unowned (from before owners, or made "
        "without keys), named `legacy` in `?owner=`."
    )
    published: bool = Field(description="Readable (not writable) by every key.")


class CollectionList(BaseModel):
    collections: list[CollectionOut]


def collection_out(info: CollectionInfo) -> CollectionOut:
    return CollectionOut(**asdict(info))


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` written in place: `openapi_extra` puts it in
    the document as is, where `#/$defs/...` references would point nowhere."""
    defs = schema.pop("$defs", {})

    def inline(value: Any) -> Any:
        if isinstance(value, dict):
            ref = value.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(item) for key, item in value.items()}
        if isinstance(value, list):
            return [inline(item) for item in value]
        return value

    inlined: dict[str, Any] = inline(schema)
    return inlined


_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inlined(IngestRequest.model_json_schema())},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "`.md`, `.markdown`, `.txt` or `.pdf` files; "
                            "each file's name is its document id unless `id` is given.",
                        },
                        "id": {"type": "string", "description": "Document id (one file)."},
                        "metadata": {
                            "type": "string",
                            "description": "A JSON object kept with every chunk.",
                        },
                    },
                }
            },
        },
    }
}


async def _from_json(request: Request) -> list[IngestedDocument]:
    try:
        body = IngestRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    return [
        await asyncio.to_thread(ingest_text, d.text, fmt=d.format, doc_id=d.id, metadata=d.metadata)
        for d in body.documents
    ]


def _form_metadata(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        metadata = json.loads(str(raw))
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise RequestError(422, "invalid_request", "the `metadata` field must be a JSON object")
    return metadata


async def _from_form(request: Request) -> list[IngestedDocument]:
    async with request.form(max_files=MAX_DOCUMENTS, max_fields=10) as form:
        files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not files:
            raise RequestError(422, "invalid_request", "send one or more files as `files`")
        doc_id = form.get("id")
        if doc_id is not None and len(files) != 1:
            raise RequestError(422, "invalid_request", "`id` names one file: send one file")
        metadata = _form_metadata(form.get("metadata"))
        documents = []
        for upload in files:
            data = await upload.read()
            documents.append(
                await asyncio.to_thread(
                    ingest_upload,
                    data,
                    filename=upload.filename,
                    content_type=upload.content_type,
                    doc_id=None if doc_id is None else str(doc_id),
                    metadata=metadata,
                )
            )
        return documents


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@router.post(
    "/{name}/documents", openapi_extra=_INGEST_BODY, responses=error_responses(404, 409, 415)
)
async def ingest_documents(
    request: Request,
    name: CollectionName,
    retrieval: RetrievalDep,
    caller: CallerDep,
    owner: OwnerParam = None,
) -> IngestResponse:
    """Split, embed and store documents in the caller's collection (created if need be); a
    document already there (same id) is replaced."""
    target = target_owner(caller, name, owner)
    media_type = _media_type(request)
    try:
        if media_type == "multipart/form-data":
            documents = await _from_form(request)
        elif media_type in ("application/json", ""):
            documents = await _from_json(request)
        else:
            raise RequestError(
                415,
                "unsupported_media_type",
                'send JSON (`{"documents": [...]}`) or multipart/form-data with `files`',
            )
    except IngestError as exc:
        status = 415 if str(exc).startswith("unsupported file type") else 422
        code = "unsupported_document" if status == 415 else "invalid_document"
        raise RequestError(status, code, str(exc)) from None
    embedder = retrieval.embedder
    if retrieval.legacy_embedder is not None:
        existing = await retrieval.store.collection(name, owner=target)
        embedder = retrieval.embedder_for(existing.embedder if existing else None)
    for document in documents:
        vectors = await retrieval.embeddings.aembed_documents([c.text for c in document.chunks])
        try:
            await retrieval.store.replace_document(
                name, document.id, document.chunks, vectors, embedder, owner=target
            )
        except EmbedderMismatchError as exc:
            raise RequestError(409, "embedder_mismatch", str(exc)) from None
    return IngestResponse(
        collection=name,
        embedder=embedder,
        documents=[
            IngestedOut(id=d.id, title=d.title, format=d.format, chunks=len(d.chunks))
            for d in documents
        ],
    )


@router.get("")
async def list_collections(retrieval: RetrievalDep, caller: CallerDep) -> CollectionList:
    """List the caller's collections and the published ones (an admin key: every one)."""
    found = await retrieval.store.collections(owner=caller.owner, everyone=caller.admin)
    return CollectionList(collections=[collection_out(c) for c in found])


@router.get("/{name}", responses=error_responses(404))
async def get_collection(
    name: CollectionName, retrieval: RetrievalDep, caller: CallerDep, owner: OwnerParam = None
) -> dict[str, Any]:
    """Describe one collection (the caller's own, else a published one) and its documents."""
    info = await readable_collection(retrieval.store, caller, name, owner)
    documents = await retrieval.store.documents(name, owner=info.owner)
    return {**collection_out(info).model_dump(), "document_list": [asdict(d) for d in documents]}


@router.delete("/{name}", status_code=204, responses=error_responses(403, 404))
async def delete_collection(
    name: CollectionName, retrieval: RetrievalDep, caller: CallerDep, owner: OwnerParam = None
) -> Response:
    """Delete one of the caller's collections and every document in it."""
    target = target_owner(caller, name, owner)
    if not await retrieval.store.delete_collection(name, owner=target):
        raise await refuse_missing_write(retrieval.store, name, target)
    return Response(status_code=204)


@router.delete(
    "/{name}/documents/{doc_id:path}", status_code=204, responses=error_responses(403, 404)
)
async def delete_document(
    name: CollectionName,
    doc_id: str,
    retrieval: RetrievalDep,
    caller: CallerDep,
    owner: OwnerParam = None,
) -> Response:
    """Delete one document (all its chunks) from one of the caller's collections."""
    target = target_owner(caller, name, owner)
    if await retrieval.store.delete_document(name, doc_id, owner=target):
        return Response(status_code=204)
    if await retrieval.store.collection(name, owner=target) is None:
        raise await refuse_missing_write(retrieval.store, name, target)
    raise RequestError(404, "not_found", f"no document {doc_id!r} in collection {name!r}")

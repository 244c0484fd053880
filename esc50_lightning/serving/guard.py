"""The door of ``POST /predict``: an upload is checked before it reaches the model's queue.

A pure ASGI middleware in the HTTP server process. It reads the body (refusing one over
``max_bytes`` without reading the rest), takes the audio out of a multipart form (the field
``file``) or the raw body, refuses what is empty or not WAV, FLAC or OGG in one JSON line, and
hands LitServe's endpoint one JSON request that ``ClassifierAPI.decode_request`` decodes in the
inference worker. The bytes stay bytes: no name the client sends is ever opened.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORMATS = ("wav", "flac", "ogg")
# declared types taken as they are; the bytes decide the format (a browser may call FLAC "audio/x-flac")
AUDIO_TYPES = {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/flac", "audio/x-flac",
               "audio/ogg", "application/ogg", "audio/vorbis", "audio/opus"}
GENERIC_TYPES = {"", "application/octet-stream"}  # no type given: the bytes decide
OTHER_AUDIO = [(b"ID3", 0, "MP3"), (b"\xff\xfb", 0, "MP3"), (b"\xff\xf3", 0, "MP3"), (b"\xff\xf2", 0, "MP3"),
               (b"\x1aE\xdf\xa3", 0, "WebM"), (b"ftyp", 4, "MP4/M4A"), (b"FORM", 0, "AIFF")]
SEND = "send WAV, FLAC or OGG audio as the form field 'file' or as the raw request body"
FORM_SLACK = 64 * 1024  # a multipart body may exceed its file by its boundaries and headers


class Refused(Exception):
    """An upload the server will not classify: the HTTP status and one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=self.status)


def sniff(data: bytes) -> str | None:
    """The container the bytes begin with: ``wav``, ``flac``, ``ogg``, or ``None``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    return None


def check_audio(data: bytes, declared: str) -> str:
    """The format of an upload, or ``Refused``: 415 for a type or container this server does not
    read, 400 for nothing or for bytes that are no audio file at all."""
    if declared not in AUDIO_TYPES | GENERIC_TYPES:
        raise Refused(415, f"unsupported type {declared!r}: {SEND}")
    if not data:
        raise Refused(400, "empty upload: the file has no bytes")
    kind = sniff(data)
    if kind:
        return kind
    for magic, at, name in OTHER_AUDIO:
        if data[at : at + len(magic)] == magic:
            raise Refused(415, f"unsupported type: this is {name}; {SEND}")
    raise Refused(400, f"not audio: the bytes are not a WAV, FLAC or OGG file; {SEND}")


class UploadGuard:
    """ASGI middleware: ``POST path`` becomes ``{"audio": base64, "format", "spectrogram"}`` or a 4xx
    JSON answer; every other request passes untouched."""

    def __init__(self, app: ASGIApp, path: str = "/predict", max_bytes: int = 10_000_000) -> None:
        self.app, self.path, self.max_bytes = app, path, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            payload = await self.payload(scope, receive)
        except Refused as refused:
            await refused.response()(scope, receive, send)
            return
        body = json.dumps(payload).encode()
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the client's disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)

    async def payload(self, scope: Scope, receive: Receive) -> dict:
        request = Request(scope, receive)
        declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
        multipart = declared == "multipart/form-data"
        limit = self.max_bytes + (FORM_SLACK if multipart else 0)
        body = await self.read(request, limit)
        if multipart:
            data, declared = await self.form_file(scope, body)
        else:
            data = body
        if len(data) > self.max_bytes:
            raise Refused(413, self.too_big(len(data)))
        kind = check_audio(data, declared)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        spectrogram = query.get("spectrogram", ["0"])[-1].lower() in ("1", "true", "yes")
        return {"audio": base64.b64encode(data).decode("ascii"), "format": kind, "spectrogram": spectrogram}

    async def read(self, request: Request, limit: int) -> bytes:
        """The whole body, refused (413) as soon as it is known to exceed ``limit``."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise Refused(413, self.too_big(int(length)))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, self.too_big(size, at_least=True))
            chunks.append(chunk)
        return b"".join(chunks)

    async def form_file(self, scope: Scope, body: bytes) -> tuple[bytes, str]:
        """The file of a multipart body (the field ``file``, else its only file) and its declared type."""
        sent = False

        async def once() -> Message:
            nonlocal sent
            chunk, sent = (b"" if sent else body), True
            return {"type": "http.request", "body": chunk, "more_body": False}

        try:
            form = await Request(scope, once).form(max_files=4, max_fields=16)
        except Exception as err:  # noqa: BLE001 - starlette's parser raises several kinds for a broken form
            raise Refused(400, f"malformed multipart form ({type(err).__name__}); {SEND}") from None
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            upload = form.get("file") if isinstance(form.get("file"), UploadFile) else (files[0] if files else None)
            if upload is None:
                raise Refused(400, f"no file in the form; {SEND}")
            data = await upload.read()
            return data, (upload.content_type or "").split(";")[0].strip().lower()
        finally:
            await form.close()

    def too_big(self, size: int, at_least: bool = False) -> str:
        return (f"too big: the upload is {'over ' if at_least else ''}{size:,} bytes; this server takes at most "
                f"{self.max_bytes:,} (serve --max_bytes)")

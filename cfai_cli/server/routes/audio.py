"""POST /v1/audio/transcriptions, /v1/audio/translations (multipart) and /v1/audio/speech (JSON).

Imports starlette, service, core and errors. The multipart body is read under the proxy's size limit first
(413 past it) by server.forms; the form becomes the same TranscriptionRequest the CLI builds.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from cfai_cli.core.openai.audio import AudioFile, SpeechRequest, TranscriptionRequest
from cfai_cli.core.openai.base import validate_request
from cfai_cli.errors import InvalidRequest
from cfai_cli.server.forms import read_form
from cfai_cli.server.responses import API_HEADERS, JSONResponse
from cfai_cli.server.routes.common import read_json, request_context
from cfai_cli.service.audio import speak, transcribe

_TEXT_FIELDS = ("model", "language", "prompt", "temperature", "response_format", "target_language")


async def form_request(form: FormData, task: str) -> tuple[TranscriptionRequest, AudioFile]:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("Missing required parameter: 'file' (the audio, as a multipart file upload).",
                             param="file", code="missing_required_parameter")
    stream = form.get("stream")
    if isinstance(stream, str) and stream.strip().lower() == "true":
        raise InvalidRequest("Streamed transcriptions are not supported: Workers AI's speech models answer once. "
                             "Leave `stream` unset.", param="stream", code="unsupported_value")
    data: dict[str, Any] = {"task": task}
    for name in _TEXT_FIELDS:
        value = form.get(name)
        if isinstance(value, str):
            data[name] = value
    granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    if granularities:
        data["timestamp_granularities"] = [str(g) for g in granularities]
    req = validate_request(TranscriptionRequest, data)
    return req, AudioFile(await upload.read(), upload.filename or "audio",
                          upload.content_type or "application/octet-stream")


async def _transcription(request: Request, task: str) -> Response:
    async with read_form(request) as form:
        req, audio = await form_request(form, task)
    result, media_type = await transcribe(request_context(request), req, audio)
    if isinstance(result, str):
        return Response(result, media_type=media_type, headers=API_HEADERS)
    return JSONResponse(result, headers=API_HEADERS)


async def transcriptions(request: Request) -> Response:
    return await _transcription(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _transcription(request, "translate")


async def speech(request: Request) -> Response:
    req = validate_request(SpeechRequest, await read_json(request))
    audio, content_type = await speak(request_context(request), req)
    return Response(audio, media_type=content_type, headers=API_HEADERS)


ROUTES = [
    ("/audio/transcriptions", transcriptions, ["POST"]),
    ("/audio/translations", translations, ["POST"]),
    ("/audio/speech", speech, ["POST"]),
]

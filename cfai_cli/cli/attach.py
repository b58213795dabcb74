"""`cfai chat -a FILE|URL|-` and binary stdin: what the user hands over becomes parts of the user message.

Imports the standard library at the top; core.sniff and the service modules inside the functions (a one-shot
`cfai chat hi` with nothing piped uses neither). Kinds
come from the bytes (core.sniff), never the file name: images become `image_url` parts (data URIs), text is
inlined in a fenced block headed by its name, audio is transcribed first (service.audio, the proxy's own
transcription path), anything else is refused with what to do instead. URLs go through the proxy's image
fetcher (bounded, SSRF-safe) and must turn out to be images.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfai_cli.cli.textin import stdin_bytes
from cfai_cli.errors import InvalidRequest

if TYPE_CHECKING:
    from cfai_cli.cli.render import Terminal
    from cfai_cli.core.sniff import Sniffed
    from cfai_cli.service.context import Context

MAX_TEXT_BYTES = 512 * 1024  # ~128k tokens: more than any chat model's context takes anyway
MAX_FILE_BYTES = 25 * 1024 * 1024  # images (20 MB, like the fetcher) and audio (25 MB, like OpenAI's upload)
MAX_IMAGE_BYTES = 20 * 1024 * 1024


@dataclass
class Attachment:
    """A file, stdin or URL attached to a prompt: its bytes and what they were sniffed as (a URL is fetched later)."""

    name: str  # file name, "stdin" or the URL
    data: bytes = b""
    kind: Sniffed | None = None
    url: str | None = None  # set for http(s) attachments, fetched when the request is made


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def refusal(what: str, kind: Sniffed) -> InvalidRequest:
    """The one line for data that chat cannot take, saying what to do instead."""
    hint = {"application/pdf": "extract the text first (pdftotext FILE -)",
            "application/zip": "unpack it and attach the files inside"}.get(kind.mime, "convert it to text first")
    return InvalidRequest(f"{what} is {kind.label}; cfai chat reads text, images and audio — {hint}.",
                          param="attachment", code="unsupported_attachment")


def classify(name: str, data: bytes, what: str) -> Attachment:
    """An attachment from bytes already read, checked against the size caps of its kind."""
    from cfai_cli.core.sniff import sniff

    kind = sniff(data)
    if kind.category == "binary":
        raise refusal(what, kind)
    if kind.category == "text" and len(data) > MAX_TEXT_BYTES:
        raise InvalidRequest(f"{what} is {len(data):,} bytes of text; cfai chat inlines at most "
                             f"{MAX_TEXT_BYTES // 1024} KB: send a part of it (head, grep, split).",
                             param="attachment", code="attachment_too_large")
    if kind.category == "image" and len(data) > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"{what} is an image larger than 20 MB; shrink it first.", param="attachment",
                             code="attachment_too_large")
    return Attachment(name, data, kind)


def read_attachment(source: str, stdin: Any) -> Attachment:
    """`-a SOURCE`: a file, `-` for stdin, or an http(s) URL (fetched later, with the request)."""
    if is_url(source):
        return Attachment(source, url=source)
    what = "stdin" if source == "-" else source
    if source == "-":
        data = stdin_bytes(stdin, MAX_FILE_BYTES + 1)
    else:
        path = Path(source)
        try:
            if path.is_dir():
                raise InvalidRequest(f"-a {source} is a directory; attach the files in it one by one.",
                                     param="attachment", code="unsupported_attachment")
            with path.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise InvalidRequest(f"cannot read -a {source}: {exc.strerror or exc}", param="attachment",
                                 code="unreadable_attachment") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidRequest(f"{what} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; cfai chat does not "
                             "attach files that big.", param="attachment", code="attachment_too_large")
    return classify(Path(source).name if source != "-" else "stdin", data, what)


def piped_input(data: bytes, term: Terminal) -> tuple[str | None, Attachment | None]:
    """Piped stdin: (text, None), or (None, an image/audio attachment); other binary data is refused."""
    if not data:
        return None, None
    from cfai_cli.core.sniff import decode_text, sniff

    kind = sniff(data)
    if kind.category == "text":
        text, replaced = decode_text(data)
        if replaced:
            term.warn("stdin is not valid UTF-8; undecodable bytes were replaced with U+FFFD (convert it with "
                      "iconv -f LATIN1 -t UTF-8 for an exact text).")
        return text, None
    return None, classify("stdin", data, "stdin")


def fence(name: str, text: str) -> str:
    """A text attachment as the model sees it: its name, then a code fence longer than any inside it."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{name}\n{ticks}\n{text.rstrip(chr(10))}\n{ticks}"


async def content_parts(ctx: Context, attachments: list[Attachment], term: Terminal) -> tuple[list[str],
                                                                                                 list[dict[str, Any]]]:
    """(text blocks, image parts) for the attachments: texts fenced, audio transcribed, images as data URIs."""
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for item in attachments:
        if item.url is not None:
            images.append(_image_part(await _fetched_image(ctx, item.url)))
            continue
        assert item.kind is not None
        if item.kind.category == "image":
            images.append(_image_part(f"data:{item.kind.mime};base64,{base64.b64encode(item.data).decode('ascii')}"))
        elif item.kind.category == "audio":
            with term.waiting(f"transcribing {item.name}"):
                texts.append(fence(f"{item.name} (transcript)", await _transcript(ctx, item)))
        else:
            from cfai_cli.core.sniff import decode_text

            text, replaced = decode_text(item.data)
            if replaced:
                term.warn(f"{item.name} is not valid UTF-8; undecodable bytes were replaced with U+FFFD.")
            texts.append(fence(item.name, text))
    return texts, images


def _image_part(uri: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": uri}}


async def _fetched_image(ctx: Context, url: str) -> str:
    uri = await ctx.images.data_uri(url, param="attachment")
    data = base64.b64decode(uri.partition(",")[2])
    from cfai_cli.core.sniff import sniff

    kind = sniff(data)
    if kind.category != "image":
        raise InvalidRequest(f"-a {url} is {kind.label}, not an image; cfai chat fetches only images from URLs "
                             "(download other files and attach them by name).", param="attachment",
                             code="unsupported_attachment")
    return f"data:{kind.mime};base64,{uri.partition(',')[2]}"


async def _transcript(ctx: Context, item: Attachment) -> str:
    from cfai_cli.core.openai.audio import AudioFile, TranscriptionRequest
    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.service.audio import transcribe

    assert item.kind is not None
    req = validate_request(TranscriptionRequest, {"model": "whisper-1", "response_format": "text"})
    try:
        result, _ = await transcribe(ctx, req, AudioFile(item.data, item.name, item.kind.mime))
    except InvalidRequest as exc:
        raise InvalidRequest(f"cannot transcribe {item.name}: {exc.message}", param="attachment",
                             code=exc.code) from None
    return str(result).strip()


def user_content(text: str | None, texts: list[str], images: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """The user message's content: the prompt then the fenced texts; with images, a list of content parts."""
    joined = "\n\n".join(t for t in (text, *texts) if t)
    if not images:
        return joined
    return ([{"type": "text", "text": joined}] if joined else []) + images


def add_to_chat_body(body: dict[str, Any], texts: list[str], images: list[dict[str, Any]], *,
                     has_prompt: bool) -> None:
    """Put the attachments into the last user message (the one the prompt made), or a new one."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return  # left for validation to reject, naming `messages`
    last = messages[-1] if messages else None
    if has_prompt and isinstance(last, dict) and isinstance(last.get("content"), str):
        messages[-1] = {**last, "content": user_content(last["content"], texts, images)}
    else:
        messages.append({"role": "user", "content": user_content(None, texts, images)})


def add_to_responses_body(body: dict[str, Any], texts: list[str], images: list[dict[str, Any]]) -> None:
    """The same for a Responses body: `input` becomes a list with one user message of input parts."""
    given = body.get("input")
    items: list[Any] = list(given) if isinstance(given, list) else []
    text = given if isinstance(given, str) else None
    content = user_content(text, texts, images)
    parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else [
        {"type": "input_text", "text": p["text"]} if p["type"] == "text"
        else {"type": "input_image", "image_url": p["image_url"]["url"], "detail": "auto"} for p in content]
    items.append({"role": "user", "content": parts})
    body["input"] = items


VISION_DEFAULT = "gpt-4o"  # an alias, so [aliases] moves it; Llama 4 Scout by default


def vision_model(settings: Any, model: str, term: Terminal, *, chosen: bool) -> str:
    """The model for a request with images. Without -m (the default model is text-only), the `gpt-4o` alias
    with a note; an explicit model not known to take images is kept (the list may lag the catalogue), with a
    warning saying what to use instead."""
    from cfai_cli.core.catalog import known_vision

    resolved = settings.routing.resolve(model, settings.aliases, vision=True, vision_aliases=settings.vision_aliases)
    if not resolved.startswith("@") or known_vision(resolved):
        return model
    if not chosen:
        term.note(f"images attached: asking {VISION_DEFAULT} (the default model {resolved} does not take images)")
        return VISION_DEFAULT
    term.warn(f"{model} ({resolved}) is not known to take images, so Workers AI may refuse them: use a vision "
              f"model such as -m {VISION_DEFAULT}, gpt-4o-mini or @cf/meta/llama-4-scout-17b-16e-instruct.")
    return model

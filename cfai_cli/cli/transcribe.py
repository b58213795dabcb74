"""`cfai transcribe`: speech to text (or subtitles) with Whisper on Workers AI, optionally translated.

Imports typer and cli.common at the top; service, core and render inside the command (cheap start-up).
The request is the same TranscriptionRequest the proxy builds from its multipart form, through the same
service function, so `cfai transcribe` and POST /v1/audio/transcriptions cannot disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cfai_cli.cli.common import (
    OfflineOption,
    TimeoutOption,
    UsageOption,
    complete_choices,
    complete_model,
    report_spend,
    start,
)
from cfai_cli.cli.outfile import check_output

HELP = """Transcribe an audio file; the text goes to stdout (or to -o FILE).

WAV and MP3 files of any length are split into pieces and stitched back with correct timestamps; other
formats (m4a, ogg, flac, webm) are sent whole. --translate gives English (Whisper's translate task);
--to LANG translates into any m2m100 language. --json prints the OpenAI object (verbose_json: text,
language, duration, segments; with --format json, just {"text"}). A progress bar shows on stderr.
"""

EPILOG = """Examples:

  cfai transcribe meeting.wav

  cfai transcribe meeting.mp3 -o meeting.srt            (format from the extension)

  cfai transcribe interview.wav --json | jq .segments

  cfai transcribe interview.wav --json --format json | jq -r .text

  cfai transcribe talk.mp3 --translate --to fr --format vtt -o talk.fr.vtt
"""

FORMATS = ("text", "json", "verbose_json", "srt", "vtt")
_BY_EXTENSION = {".srt": "srt", ".vtt": "vtt", ".json": "verbose_json", ".txt": "text"}


def output_format(fmt: str | None, output: Path | None) -> str:
    """--format, else the output file's extension, else plain text."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}.", param_hint="--format")
        return fmt
    if output is not None:
        return _BY_EXTENSION.get(output.suffix.lower(), "text")
    return "text"


def json_format(fmt: str | None) -> str:
    """The response_format --json prints: verbose_json, or json when asked; the others are not JSON."""
    if fmt is None or fmt == "verbose_json":
        return "verbose_json"
    if fmt == "json":
        return "json"
    from cfai_cli.cli.render import Terminal
    from cfai_cli.errors import ExitCode

    Terminal().error(f"--json prints the OpenAI JSON object, so it cannot be combined with --format {fmt}: use "
                     f"--format {fmt} alone, or --json (verbose_json) or --json --format json.")
    raise typer.Exit(int(ExitCode.USAGE))


def _read_audio(file: str) -> tuple[bytes, str]:
    if file == "-":
        return sys.stdin.buffer.read(), "stdin"
    path = Path(file)
    try:
        return path.read_bytes(), path.name
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc.strerror or exc}", param_hint="FILE") from None


def transcribe(
    invocation: typer.Context,
    file: Annotated[str, typer.Argument(help="The audio file (wav, mp3, m4a, ogg, flac, webm), or - for stdin.")],
    fmt: Annotated[str | None, typer.Option("--format", "-f", show_default=False,
                                            autocompletion=complete_choices(*FORMATS),
                                            help="text, json, verbose_json, srt or vtt [default: from -o, "
                                                 "else text].")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", show_default=False,
                                                help="Write to this file instead of stdout.")] = None,
    language: Annotated[str | None, typer.Option("--language", "-l", show_default=False,
                                                 help="The spoken language (en, fr, …); improves accuracy.")] = None,
    translate: Annotated[bool, typer.Option("--translate", help="Translate the speech (to English unless --to).")]
    = False,
    to: Annotated[str | None, typer.Option("--to", show_default=False,
                                           help="With --translate: the target language (fr, de, ja, …).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", autocompletion=complete_model,
                                       help="An alias (whisper-1) or a Workers AI id "
                                       "(@cf/openai/whisper, @cf/deepgram/nova-3).")] = "whisper-1",
    prompt: Annotated[str | None, typer.Option("--prompt", show_default=False,
                                               help="Context or spellings to guide the transcript.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the OpenAI transcription object: verbose_json "
                                           "(text, language, duration, segments), or {\"text\"} with "
                                           "--format json.")] = False,
    show_usage: UsageOption = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
) -> None:
    import asyncio

    from cfai_cli.core.openai.audio import AudioFile, TranscriptionRequest
    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.service.audio import chunk_count
    from cfai_cli.service.audio import transcribe as run_transcription
    from cfai_cli.service.context import open_context

    response_format = output_format(fmt, output)
    if output is not None:
        check_output(output)
    if json_out:  # checked before anything is printed or read
        response_format = json_format(fmt)
    term, settings = start(invocation.obj, offline=offline, timeout=timeout)
    if to is not None and not translate:
        translate = True  # --to only makes sense as a translation; say so rather than ignore it
    body: dict[str, Any] = {"model": model, "response_format": response_format,
                            "task": "translate" if translate else "transcribe"}
    for key, value in (("language", language), ("prompt", prompt), ("target_language", to)):
        if value is not None:
            body[key] = value
    req = validate_request(TranscriptionRequest, body)
    data, name = _read_audio(file)
    audio = AudioFile(data, name)
    pieces = chunk_count(audio)

    async def run() -> tuple[Any, str]:
        async with open_context(settings) as ctx:
            what = "translating" if translate else "transcribing"
            with term.progress(pieces, f"{what} {name}") as advance:
                done = await run_transcription(ctx, req, audio, progress=advance)
            if show_usage:
                report_spend(ctx, term)
            return done

    result, _ = asyncio.run(run())
    if isinstance(result, str):
        text = result
    else:
        import json

        text = json.dumps(result, ensure_ascii=False, indent=2) + "\n"
    if output is None:
        term.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {output}: {exc.strerror or exc}", param_hint="--output") from None
    term.note(f"wrote {output} ({req.response_format})")


def register(app: typer.Typer) -> None:
    app.command("transcribe", help=HELP, epilog=EPILOG)(transcribe)

"""`cfai speak`: text to speech with Deepgram Aura or MeloTTS; the audio goes to -o FILE or piped stdout.

Imports typer and cli.common at the top; service, core and render inside the command (cheap start-up).
The request is the same SpeechRequest that POST /v1/audio/speech validates.
"""

from __future__ import annotations

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
    settings_from_flags,
)
from cfai_cli.cli.outfile import check_output

HELP = """Speak TEXT (or text piped on stdin) and save the audio.

tts-1 (Deepgram Aura-1) writes mp3, wav, flac, opus, aac and pcm (from -o's extension), and maps OpenAI voices
to its speakers (or takes a speaker name such as luna). MeloTTS (-m @cf/myshell-ai/melotts) speaks MP3 only, in
the language given as the voice (en, fr, es, zh, ja, ko). Audio is never written to a terminal.
"""

EPILOG = """Examples:

  cfai speak "Hello there" -o hello.mp3

  echo "Build finished" | cfai speak --voice luna -o done.wav

  cfai speak -m @cf/myshell-ai/melotts --voice fr "Bonjour tout le monde" -o bonjour.mp3
"""

FORMATS = ("mp3", "wav", "flac", "opus", "aac", "pcm")  # core.openai.audio.SpeechFormat, without pydantic at start-up
# For completing --voice (core.translate.speech: OpenAI voices, Aura-1 speakers, MeloTTS languages).
VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer",
          "verse", "angus", "arcas", "asteria", "athena", "helios", "hera", "luna", "orion", "orpheus", "perseus",
          "stella", "zeus", "en", "es", "fr", "ja", "ko", "zh")

_BY_EXTENSION = {".mp3": "mp3", ".wav": "wav", ".flac": "flac", ".opus": "opus", ".ogg": "opus", ".aac": "aac",
                 ".pcm": "pcm"}


def speak(
    invocation: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(metavar="TEXT", show_default=False,
                                                     help="What to say (or pipe it on stdin).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", show_default=False,
                                                help="Write the audio here (otherwise to a piped stdout).")] = None,
    voice: Annotated[str, typer.Option("--voice", "-v", autocompletion=complete_choices(*VOICES),
                                       help="An OpenAI voice (alloy, nova, …), an Aura speaker "
                                       "(luna, zeus, …), or with MeloTTS a language (fr, es, …).")] = "alloy",
    model: Annotated[str, typer.Option("--model", "-m", autocompletion=complete_model,
                                       help="tts-1 (Deepgram Aura-1) or a Workers AI id such as "
                                       "@cf/myshell-ai/melotts.")] = "tts-1",
    fmt: Annotated[str | None, typer.Option("--format", "-f", show_default=False,
                                            autocompletion=complete_choices(*FORMATS),
                                            help="mp3, wav, flac, opus, aac or pcm [default: from -o, else mp3]."
                                            )] = None,
    show_usage: UsageOption = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
) -> None:
    import asyncio

    from cfai_cli.cli.render import Terminal
    from cfai_cli.core.openai.audio import SpeechRequest
    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.service.audio import speak as run_speech
    from cfai_cli.service.context import open_context

    term = Terminal(options=invocation.obj)
    if output is None and term.out_tty:
        raise typer.BadParameter("refusing to write audio to a terminal: give -o FILE or redirect stdout.",
                                 param_hint="--output")
    if output is not None:
        check_output(output)
    settings = settings_from_flags(offline=offline, timeout=timeout, options=invocation.obj)
    if settings.offline:
        term.offline_warning()
    text = " ".join(words).strip() if words else None
    if text is None and not term.in_tty:
        from cfai_cli.cli.textin import read_stdin_text

        text = read_stdin_text(term, command="cfai speak").strip()
    if not text:
        raise typer.BadParameter("nothing to say: give TEXT or pipe it on stdin.", param_hint="TEXT")
    response_format = fmt or (_BY_EXTENSION.get(output.suffix.lower(), "mp3") if output is not None else "mp3")
    body: dict[str, Any] = {"model": model, "input": text, "voice": voice, "response_format": response_format}
    req = validate_request(SpeechRequest, body)

    async def run() -> tuple[bytes, str]:
        async with open_context(settings) as ctx:
            with term.waiting("speaking"):
                done = await run_speech(ctx, req)
            if show_usage:
                report_spend(ctx, term)
            return done

    audio, content_type = asyncio.run(run())
    if output is None:
        term.write_bytes(audio)
        return
    try:
        output.write_bytes(audio)
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {output}: {exc.strerror or exc}", param_hint="--output") from None
    term.note(f"wrote {output} ({len(audio)} bytes, {content_type})")


def register(app: typer.Typer) -> None:
    app.command("speak", help=HELP, epilog=EPILOG)(speak)

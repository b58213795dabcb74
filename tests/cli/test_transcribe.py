"""`cfai transcribe` and `cfai speak` against the emulator: data on stdout, files with -o, notes on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.audio_fixtures import tone_wav, wav_seconds
from tests.cli.conftest import Invoke


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "meeting.wav"
    path.write_bytes(tone_wav(7.0))
    return path


def test_text_to_stdout_by_default(cli: Invoke, wav: Path) -> None:
    result = cli("transcribe", "--offline", str(wav))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Offline speech, part 1. Offline speech, part 2.\n"
    assert "OFFLINE" in result.stderr


@pytest.mark.parametrize(("fmt", "start"), [("srt", "1\n00:00:00,000 --> 00:00:05,000\n"), ("vtt", "WEBVTT\n\n"),
                                            ("text", "Offline speech")])
def test_formats(cli: Invoke, wav: Path, fmt: str, start: str) -> None:
    result = cli("transcribe", "--offline", str(wav), "--format", fmt)
    assert result.stdout.startswith(start)


def test_json_formats_are_openai_objects(cli: Invoke, wav: Path) -> None:
    plain = json.loads(cli("transcribe", "--offline", str(wav), "-f", "json").stdout)
    assert plain["text"].startswith("Offline") and plain["usage"]["seconds"] == 7.0
    verbose = json.loads(cli("transcribe", "--offline", str(wav), "-f", "verbose_json", "-l", "de").stdout)
    assert verbose["language"] == "german" and len(verbose["segments"]) == 2


def test_output_file_format_from_extension(cli: Invoke, wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "meeting.srt"
    result = cli("transcribe", "--offline", str(wav), "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_text(encoding="utf-8").startswith("1\n00:00:00,000 --> ")
    assert "wrote" in result.stderr


def test_long_wav_is_chunked_and_stitched(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    path.write_bytes(tone_wav(40.0))  # two 1 MiB pieces at 16 kHz mono
    verbose = json.loads(cli("transcribe", "--offline", str(path), "-f", "verbose_json").stdout)
    starts = [s["start"] for s in verbose["segments"]]
    assert 32.768 in starts and starts == sorted(starts) and verbose["duration"] == 40.0


def test_translate_to_english_and_to_another_language(cli: Invoke, wav: Path) -> None:
    english = cli("transcribe", "--offline", str(wav), "--translate")
    assert english.exit_code == 0 and english.stdout.startswith("Offline speech")
    french = cli("transcribe", "--offline", str(wav), "--translate", "--to", "fr", "-f", "srt")
    assert "[fr] Offline speech, part 1." in french.stdout


def test_stdin_audio(cli: Invoke) -> None:
    result = cli("transcribe", "--offline", "-", input=tone_wav(2.0))
    assert result.stdout == "Offline speech, part 1.\n"


@pytest.mark.parametrize(("args", "message"), [
    (["missing.wav"], "cannot read"),
    (["{wav}", "--format", "xml"], "choose one of"),
    (["{wav}", "--model", "@cf/openai/whisper", "--translate"], "cannot translate"),
])
def test_errors_go_to_stderr(cli: Invoke, wav: Path, args: list[str], message: str) -> None:
    result = cli("transcribe", "--offline", *[a.format(wav=wav) for a in args])
    assert result.exit_code != 0 and message in result.stderr and result.stdout == ""


def test_speak_to_file_and_to_pipe(cli: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "hello.mp3"
    result = cli("speak", "--offline", "hello", "world", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:2] == b"\xff\xfb" and "wrote" in result.stderr
    piped = cli("speak", "--offline", input="Build finished\n")
    assert piped.stdout_bytes[:2] == b"\xff\xfb"


def test_speak_wav_with_aura(cli: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "done.wav"
    result = cli("speak", "--offline", "-m", "@cf/deepgram/aura-1", "--voice", "luna", "ready", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert wav_seconds(out.read_bytes()) > 0


def test_speak_every_format_with_tts_1_and_melotts_pinned_back(cli: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    assert cli("speak", "--offline", "hi", "-o", str(out)).exit_code == 0  # tts-1 is Aura: wav works
    assert out.read_bytes()[:4] == b"RIFF"
    result = cli("speak", "--offline", "-m", "@cf/myshell-ai/melotts", "hi", "-o", str(tmp_path / "y.wav"))
    assert result.exit_code == 4 and "MP3 only" in result.stderr
    cli("config", "set", "aliases.tts-1", "@cf/myshell-ai/melotts")  # the README's way back to MeloTTS
    result = cli("speak", "--offline", "hi", "-o", str(tmp_path / "z.wav"))
    assert result.exit_code == 4 and "MP3 only" in result.stderr


def test_compressed_audio_over_the_limit_is_refused_but_long_wav_is_not(cli: Invoke, tmp_path: Path) -> None:
    big_mp3 = tmp_path / "big.mp3"
    big_mp3.write_bytes(b"ID3" + bytes(200_000))
    long_wav = tmp_path / "long.wav"
    long_wav.write_bytes(tone_wav(10.0))  # 320 kB, over the 0.1 MB limit below
    cli("config", "set", "max_body_mb", "0.1")
    refused = cli("transcribe", "--offline", str(big_mp3))
    assert refused.exit_code == 4 and "Convert it to WAV" in refused.stderr
    assert cli("transcribe", "--offline", str(long_wav)).exit_code == 0


def test_json_prints_the_verbose_json_object(cli: Invoke, wav: Path) -> None:
    result = cli("transcribe", "--offline", str(wav), "--json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert {"text", "language", "duration", "segments"} <= set(body)
    assert body["text"].startswith("Offline speech") and body["duration"] == 7.0 and len(body["segments"]) == 2
    same = json.loads(cli("transcribe", "--offline", str(wav), "--json", "--format", "verbose_json").stdout)
    assert same == body


def test_json_with_format_json_prints_the_plain_object(cli: Invoke, wav: Path, tmp_path: Path) -> None:
    plain = json.loads(cli("transcribe", "--offline", str(wav), "--json", "--format", "json").stdout)
    assert plain["text"].startswith("Offline speech") and "segments" not in plain
    out = tmp_path / "meeting.srt"  # --json decides the format, whatever the extension says
    assert cli("transcribe", "--offline", str(wav), "--json", "-o", str(out)).exit_code == 0
    assert "segments" in json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_json_with_a_text_format_is_a_usage_error_on_one_line(cli: Invoke, wav: Path, fmt: str) -> None:
    result = cli("transcribe", "--offline", str(wav), "--json", "--format", fmt)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfai: ") and f"--format {fmt}" in lines[0], result.stderr

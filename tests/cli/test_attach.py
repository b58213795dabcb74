"""`cfai chat -a FILE|URL|-` and what is piped in, against the emulator: images to a vision model, text
inlined under its name, audio transcribed, binary refused with what to do; and the pure sniffing."""

from __future__ import annotations

import http.server
import json
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfai_cli.cli.common import locations
from cfai_cli.core.catalog import known_vision
from cfai_cli.core.sniff import decode_text, sniff
from cfai_cli.errors import ExitCode
from tests.cli.conftest import Invoke
from tests.cli.test_hostile import STDINS

PNG = STDINS["png"]


def _answer(stdout: str) -> tuple[str, str]:
    """(model, answer text) of a --json --no-stream chat.completion."""
    body = json.loads(stdout)
    return body["model"], body["choices"][0]["message"]["content"]


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("cfai: ")
    return lines[-1]


@pytest.mark.parametrize(("data", "category", "mime"), [
    (PNG, "image", "image/png"), (b"\xff\xd8\xff\xe0JFIF", "image", "image/jpeg"), (b"GIF89a..", "image", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image", "image/webp"), (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio", "audio/wav"),
    (b"ID3\x04\x00\x00", "audio", "audio/mpeg"), (b"ID3 tags name the song", "text", "text/plain"),
    (b"MZ is a country code", "text", "text/plain"), (b"MZ\x90\x00\x03", "binary", "application/x-msdownload"),
    (b"BZh91AY&SY\x00", "binary", "application/x-bzip2"), (b"BZh9 says hi", "text", "text/plain"),
    (b"\xff\xfb\x90\x00", "audio", "audio/mpeg"),
    (b"fLaC\x00", "audio", "audio/flac"), (b"OggS\x00", "audio", "audio/ogg"),
    (b"\x00\x00\x00\x20ftypM4A ", "audio", "audio/mp4"), (b"%PDF-1.4", "binary", "application/pdf"),
    (b"PK\x03\x04", "binary", "application/zip"), (b"\x7fELF\x02", "binary", "application/x-executable"),
    (bytes(range(256)), "binary", "application/octet-stream"), ("café".encode("latin-1"), "text", "text/plain"),
    ("naïve ✓".encode(), "text", "text/plain"), (b"", "text", "text/plain"),
])
def test_sniff_by_magic_numbers(data: bytes, category: str, mime: str) -> None:
    found = sniff(data)
    assert (found.category, found.mime) == (category, mime)


def test_decode_text_replaces_and_says_so() -> None:
    assert decode_text("café".encode()) == ("café", False)
    assert decode_text(b"\xef\xbb\xbfhi") == ("hi", False)
    assert decode_text("café".encode("latin-1")) == ("caf\ufffd", True)


def test_an_image_goes_to_a_vision_model_without_m(cli: Invoke, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"  # a PNG under a .jpg name: the bytes decide
    photo.write_bytes(PNG)
    result = cli("chat", "--offline", "--json", "--no-stream", "-a", str(photo), "what is this?")
    assert result.exit_code == 0, result.stderr
    model, text = _answer(result.stdout)
    assert known_vision(model)
    assert "sent an image" in text and "what is this?" in text
    assert "does not take images" in result.stderr  # the note saying why the model changed


def test_a_text_only_model_is_named_with_what_to_use(cli: Invoke, tmp_path: Path) -> None:
    (tmp_path / "p.png").write_bytes(PNG)
    result = cli("chat", "--offline", "-m", "gpt-3.5-turbo", "-a", str(tmp_path / "p.png"), "what?")
    assert result.exit_code == ExitCode.INVALID_REQUEST  # the emulator refuses, as Workers AI does
    assert "gpt-3.5-turbo" in result.stderr and "is not known to take images" in result.stderr
    assert "-m gpt-4o" in result.stderr


def test_text_files_are_inlined_under_their_name(cli: Invoke, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("first line\n```inner```\n")
    result = cli("chat", "--offline", "--json", "--no-stream", "-a", str(notes), "summarise")
    assert result.exit_code == 0, result.stderr
    _, text = _answer(result.stdout)
    assert "summarise" in text and "notes.md" in text and "first line" in text and "````" in text


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x00\x01" * 16000)
    return path


def test_audio_is_transcribed_first(cli: Invoke, tmp_path: Path) -> None:
    clip = _wav(tmp_path / "memo.wav")
    result = cli("chat", "--offline", "--json", "--no-stream", "-a", str(clip), "summarise")
    assert result.exit_code == 0, result.stderr
    _, text = _answer(result.stdout)
    assert "memo.wav (transcript)" in text and "Offline speech" in text
    piped = cli("chat", "--offline", "--json", "--no-stream", "summarise", input=clip.read_bytes())
    assert piped.exit_code == 0, piped.stderr
    assert "stdin (transcript)" in _answer(piped.stdout)[1]


def test_attachments_through_responses(cli: Invoke, tmp_path: Path) -> None:
    (tmp_path / "p.png").write_bytes(PNG)
    (tmp_path / "a.txt").write_text("alpha")
    result = cli("chat", "--offline", "--responses", "--json", "--no-stream", "-a", str(tmp_path / "p.png"),
                 "-a", str(tmp_path / "a.txt"), "look")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert known_vision(body["model"])
    said = body["output"][-1]["content"][0]["text"]
    assert "sent an image" in said and "alpha" in said


@pytest.mark.parametrize(("args", "stdin", "words"), [
    (["-a", "/nonexistent/x.png", "hi"], None, "cannot read -a /nonexistent/x.png"),
    (["-a", "{tmp}", "hi"], None, "is a directory"),
    (["-a", "{tmp}/doc.pdf", "hi"], None, "is a PDF; cfai chat reads text, images and audio — extract the text"),
    (["-a", "-", "hi"], STDINS["random"], "stdin is binary data"),
    (["sum"], STDINS["pdf"], "stdin is a PDF; cfai chat reads text, images and audio — extract the text first"),
    (["-a", "{tmp}/big.txt", "hi"], None, "cfai chat inlines at most 512 KB"),
    (["--request", "-", "-a", "-"], b"{}", "stdin can feed --request - or -a -, not both"),
])
def test_what_cannot_be_attached_is_one_line(cli: Invoke, tmp_path: Path, args: list[str], stdin: bytes | None,
                                             words: str) -> None:
    (tmp_path / "doc.pdf").write_bytes(STDINS["pdf"])
    (tmp_path / "big.txt").write_text("x" * (600 * 1024))
    result = cli("chat", "--offline", *[a.replace("{tmp}", str(tmp_path)) for a in args], input=stdin)
    assert result.exit_code in (ExitCode.INVALID_REQUEST, ExitCode.USAGE)
    assert words in _last_error(result.stderr)
    assert result.stdout == ""


def test_a_piped_image_is_an_attachment(cli: Invoke) -> None:
    result = cli("chat", "--offline", "--json", "--no-stream", "describe", input=PNG)
    assert result.exit_code == 0, result.stderr
    model, text = _answer(result.stdout)
    assert known_vision(model) and "sent an image" in text


def test_latin1_stdin_is_decoded_with_a_warning(cli: Invoke) -> None:
    result = cli("chat", "--offline", "--json", "--no-stream", "x", input="café crème".encode("latin-1"))
    assert result.exit_code == 0, result.stderr
    assert "caf\ufffd cr\ufffdme" in _answer(result.stdout)[1]
    assert "stdin is not valid UTF-8" in result.stderr


@pytest.mark.parametrize("command", [["embed"], ["moderate", "-"], ["tokens"], ["rerank", "query"]])
def test_other_commands_refuse_binary_stdin_with_what_they_read(cli: Invoke, command: list[str]) -> None:
    result = cli(*command, "--offline", input=PNG) if command[0] != "tokens" else cli(*command, input=PNG)
    assert result.exit_code == ExitCode.INVALID_REQUEST
    assert "stdin is a PNG image" in _last_error(result.stderr) and "reads text" in result.stderr


@pytest.fixture
def image_host() -> Iterator[str]:
    """A loopback HTTP server with an image and a page (private addresses allowed by the config file)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (PNG, "image/png") if self.path == "/p.png" else (b"<html>hi</html>", "text/html")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = locations().config_file
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("allow_private_fetch = true\n")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_image_urls_are_fetched_and_other_urls_refused(cli: Invoke, image_host: str) -> None:
    result = cli("chat", "--offline", "--json", "--no-stream", "-a", f"{image_host}/p.png", "what?")
    assert result.exit_code == 0, result.stderr
    assert "sent an image" in _answer(result.stdout)[1]
    refused = cli("chat", "--offline", "-a", f"{image_host}/page", "what?")
    assert refused.exit_code == ExitCode.INVALID_REQUEST
    assert "not an image; cfai chat fetches only images from URLs" in _last_error(refused.stderr)


def test_private_urls_stay_refused_by_default(cli: Invoke) -> None:
    result = cli("chat", "--offline", "-a", "http://127.0.0.1:9/p.png", "what?")
    assert result.exit_code == ExitCode.INVALID_REQUEST
    assert "non-public address" in _last_error(result.stderr)

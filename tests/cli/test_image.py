"""`cfai image` against the emulator: files under a tmp dir, never overwritten, stdout bytes, JSON, edits."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cfai_cli.core.translate.images import sniff_image
from tests.cli.conftest import Invoke


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_name_from_prompt_and_no_overwrite(cli: Invoke, in_tmp: Path) -> None:
    first = cli("image", "--offline", "A red fox, in snow!")
    assert first.exit_code == 0, first.stderr
    assert Path(first.stdout.strip()).name == "a-red-fox-in-snow.png"
    second = cli("image", "--offline", "A red fox, in snow!")
    assert Path(second.stdout.strip()).name == "a-red-fox-in-snow-2.png"
    assert sniff_image((in_tmp / "a-red-fox-in-snow.png").read_bytes()).width == 1024
    assert "1024x1024 png" in first.stderr


def test_explicit_output_n_size_and_force(cli: Invoke, in_tmp: Path) -> None:
    made = cli("image", "--offline", "boats", "-n", "2", "--size", "512x256", "-o", "boat.png",
               "-m", "@cf/stabilityai/stable-diffusion-xl-base-1.0", "--seed", "5")
    assert made.exit_code == 0, made.stderr
    assert made.stdout.split() == ["boat-1.png", "boat-2.png"]
    one, two = (in_tmp / "boat-1.png").read_bytes(), (in_tmp / "boat-2.png").read_bytes()
    assert one != two and (sniff_image(one).width, sniff_image(one).height) == (512, 256)
    refused = cli("image", "--offline", "boats", "-n", "2", "-o", "boat.png")
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert (in_tmp / "boat-1.png").read_bytes() == one
    forced = cli("image", "--offline", "other", "-n", "2", "-o", "boat.png", "--force")
    assert forced.exit_code == 0 and (in_tmp / "boat-1.png").read_bytes() != one


def test_stdout_bytes_and_json(cli: Invoke) -> None:
    raw = cli("image", "--offline", "x", "-o", "-")
    assert raw.stdout_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    body = json.loads(cli("image", "--offline", "x", "--json").stdout)
    assert body["output_format"] == "png"
    assert base64.b64decode(body["data"][0]["b64_json"]).startswith(b"\x89PNG")


def test_edit(cli: Invoke, in_tmp: Path) -> None:
    cli("image", "--offline", "fox", "-o", "fox.png")
    (in_tmp / "mask.png").write_bytes((in_tmp / "fox.png").read_bytes())
    edited = cli("image", "--offline", "edit", "fox.png", "make it night", "-o", "night.png")
    assert edited.exit_code == 0, edited.stderr
    assert sniff_image((in_tmp / "night.png").read_bytes()).format == "png"
    masked = cli("image", "--offline", "edit", "fox.png", "add a moon", "--mask", "mask.png", "-o", "moon.png")
    assert masked.exit_code == 0, masked.stderr


@pytest.mark.parametrize(("args", "status"), [
    (["image", "--offline"], 2),
    (["image", "--offline", "edit", "missing.png", "x"], 2),
    (["image", "--offline", "x", "--mask", "m.png"], 2),
    (["image", "--offline", "forbidden picture"], 4),
    (["image", "--offline", "x", "--size", "4096x4096"], 4),  # flux-2-klein: 256 to 1920 a side
    (["image", "x"], 3),
])
def test_errors(cli: Invoke, args: list[str], status: int) -> None:
    result = cli(*args)
    assert result.exit_code == status, (result.stdout, result.stderr)

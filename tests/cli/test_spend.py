"""`--usage` on the data commands: tokens, neurons (measured or estimated) and cost on stderr, offline."""

from __future__ import annotations

import re
from pathlib import Path

from cfai_cli.core.catalog import PUBLISHED_PRICES
from cfai_cli.core.cost import Units, estimate_neurons
from tests.audio_fixtures import tone_wav
from tests.cli.conftest import Invoke

USAGE_LINE = re.compile(r"usage: (\d+) prompt \+ (\d+) completion tokens · ([\d,.]+) neurons( \(estimated\))? · "
                        r"\$(\d+\.\d{6})")
LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


def spend(stderr: str) -> tuple[int, int, float, bool, float]:
    found = USAGE_LINE.search(stderr)
    assert found is not None, stderr
    prompt, completion, neurons, estimated, usd = found.groups()
    return int(prompt), int(completion), float(neurons.replace(",", "")), bool(estimated), float(usd)


def test_chat_usage_measured_when_the_emulator_reports_estimated_when_it_streams(cli: Invoke) -> None:
    whole = cli("chat", "--offline", "--no-stream", "--usage", "-m", LLAMA, "tell me about neurons please")
    assert whole.exit_code == 0 and whole.stdout.startswith("[offline]")
    prompt, completion, neurons, estimated, usd = spend(whole.stderr)
    assert not estimated and prompt > 0 and completion > 0 and neurons > 0
    assert abs(usd - neurons * 0.011 / 1000) < 1e-6
    streamed = cli("chat", "--offline", "--usage", "-m", LLAMA, "tell me about neurons please")
    assert streamed.exit_code == 0
    s_prompt, s_completion, s_neurons, s_estimated, _ = spend(streamed.stderr)
    assert s_estimated and (s_prompt, s_completion) == (prompt, completion)
    # Same prices in the emulator's catalogue and cfai's published table: the estimate meets the report.
    expected = estimate_neurons(PUBLISHED_PRICES[LLAMA], Units(input_tokens=prompt, output_tokens=completion))
    assert abs(s_neurons - expected) < 0.01 and abs(s_neurons - neurons) < 0.01
    assert "usage:" not in cli("chat", "--offline", "--no-stream", "hi").stderr  # only when asked


def test_embed_and_image_usage_are_estimated(cli: Invoke, tmp_path: object) -> None:
    embedded = cli("embed", "--offline", "--usage", "-m", "@cf/baai/bge-m3", "one text", "another text")
    assert embedded.exit_code == 0
    prompt, completion, neurons, estimated, _ = spend(embedded.stderr)
    assert estimated and prompt > 0 and completion == 0 and neurons > 0
    drawn = cli("image", "--offline", "--usage", "-m", "@cf/black-forest-labs/flux-1-schnell", "-o", "-", "a cat")
    assert drawn.exit_code == 0
    _, _, neurons, estimated, _ = spend(drawn.stderr)
    assert estimated and neurons > 0


def test_audio_rerank_and_moderate_report_their_usage_too(cli: Invoke, tmp_path: Path) -> None:
    wav = tmp_path / "three.wav"
    wav.write_bytes(tone_wav(3.0))
    heard = cli("transcribe", "--offline", "--usage", str(wav))
    assert heard.exit_code == 0, heard.stderr
    _, _, neurons, _, usd = spend(heard.stderr)
    assert neurons > 0 and abs(usd - neurons * 0.011 / 1000) < 1e-6
    said = cli("speak", "--offline", "--usage", "-o", str(tmp_path / "hi.mp3"), "hello there")
    assert said.exit_code == 0, said.stderr
    assert spend(said.stderr)[2] > 0  # aura-1: priced per character spoken
    ranked = cli("rerank", "--offline", "--usage", "cats", input="a cat\na dog\n")
    assert ranked.exit_code == 0, ranked.stderr
    assert USAGE_LINE.search(ranked.stderr) or "neurons unknown" in ranked.stderr
    checked = cli("moderate", "--offline", "--usage", "a friendly hello")
    assert checked.exit_code == 0, checked.stderr
    assert spend(checked.stderr)[0] > 0  # llama guard's prompt tokens
    assert "usage:" not in cli("moderate", "--offline", "a friendly hello").stderr

"""Moderations on a Llama Guard model: the guard request, both shapes of its verdict, and the OpenAI result.

Pure: standard library, core and errors. The table from Llama Guard 3's hazard codes (S1–S14, MLCommons
taxonomy) to OpenAI's categories is GUARD_TO_OPENAI, with its reasons in docs/moderations.md. The guard gives a
verdict, not probabilities, so every score is 1.0 or 0.0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cfai_cli.core import jsonfast
from cfai_cli.core.catalog import LLAMA_GUARD
from cfai_cli.core.openai.moderations import CATEGORIES, ModerationInput, ModerationResponse, ModerationResult
from cfai_cli.errors import InvalidRequest, UpstreamError

GUARD_MODEL = LLAMA_GUARD

GUARD_NAMES: dict[str, str] = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation", "S5": "Defamation", "S6": "Specialized Advice", "S7": "Privacy",
    "S8": "Intellectual Property", "S9": "Indiscriminate Weapons", "S10": "Hate", "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content", "S13": "Elections", "S14": "Code Interpreter Abuse",
}

# Each guard code sets the OpenAI categories its definition covers. S6, S7, S8 and S13 have no OpenAI
# counterpart: they flag the input (the guard said unsafe) with every category false; cfai_guard_categories
# says why.
GUARD_TO_OPENAI: dict[str, tuple[str, ...]] = {
    "S1": ("violence", "illicit", "illicit/violent"),
    "S2": ("illicit",),
    "S3": ("sexual", "illicit", "illicit/violent"),
    "S4": ("sexual", "sexual/minors"),
    "S5": ("harassment",),
    "S6": (),
    "S7": (),
    "S8": (),
    "S9": ("violence", "illicit", "illicit/violent"),
    "S10": ("hate", "harassment"),
    "S11": ("self-harm", "self-harm/intent", "self-harm/instructions"),
    "S12": ("sexual",),
    "S13": (),
    "S14": ("illicit",),
}
# Hate together with a violent hazard is hate that threatens harm: OpenAI's two "threatening" categories.
_THREATENING = ("hate/threatening", "harassment/threatening")
_VIOLENT = frozenset({"S1", "S9"})

_CODE = re.compile(r"\bS(\d{1,2})\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    safe: bool
    categories: tuple[str, ...] = ()  # guard codes, "S1".."S14" (unknown codes kept as given)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def to_workers_guard(text: str) -> dict[str, Any]:
    """The guard request for one input, classified as a user prompt.

    JSON mode asks for the `{safe, categories}` object Cloudflare's schema documents; temperature 0 makes the
    verdict repeatable (the model's default is 0.6).
    """
    return {"messages": [{"role": "user", "content": text}], "response_format": {"type": "json_object"},
            "temperature": 0}


def check_classifiable(item: ModerationInput) -> None:
    """Refuse a multi-modal input with nothing a text-only guard model can read (image parts only)."""
    if item.images and not item.text.strip():
        raise InvalidRequest(
            "Image moderation is not supported: Llama Guard 3 on Workers AI classifies text only. Send text parts "
            "(image parts next to text are ignored).", param="input", code="image_input_unsupported")


def _codes(raw: Iterable[Any]) -> tuple[str, ...]:
    out: list[str] = []
    for item in raw:
        text = str(item).strip()
        found = _CODE.findall(text)
        codes = [f"S{int(n)}" for n in found] if found else ([text] if text else [])
        out.extend(c for c in codes if c not in out)
    return tuple(out)


def _from_text(text: str) -> tuple[bool, tuple[str, ...]] | None:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = jsonfast.loads_text(stripped)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return _from_object(value)
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    if not lines:
        return None
    head = lines[0].lower().rstrip(".")
    if head == "safe":
        return True, ()
    if head.startswith("unsafe"):
        rest = " ".join([lines[0][len("unsafe"):], *lines[1:]])
        return False, _codes(rest.replace(",", " ").split())
    return None


def _from_object(value: Mapping[str, Any]) -> tuple[bool, tuple[str, ...]] | None:
    safe = value.get("safe")
    if isinstance(safe, str):
        safe = {"true": True, "false": False, "safe": True, "unsafe": False}.get(safe.strip().lower())
    if not isinstance(safe, bool):
        return None
    raw = value.get("categories") or []
    codes = _codes(raw if isinstance(raw, list) else str(raw).replace(",", " ").split())
    return safe, codes


def parse_guard(result: Any, *, model: str) -> GuardVerdict:
    """A guard answer in either documented shape: `response` as `{safe, categories}` or as the model's text
    ("safe" / "unsafe\\nS1,S10"); a JSON object sent as text is read too."""
    body = result if isinstance(result, Mapping) else {}
    response = body.get("response", result if isinstance(result, str) else None)
    parsed = _from_object(response) if isinstance(response, Mapping) else (
        _from_text(response) if isinstance(response, str) else None)
    if parsed is None:
        shown = json.dumps(response)[:200] if response is not None else "no 'response'"
        if "guard" in model.lower():  # a guard model that misbehaved: Workers AI's failure
            raise UpstreamError(f"{model} did not answer with a safety verdict ({shown}).", code="bad_guard_answer")
        # Any other model just chats back: the request named the wrong kind of model.
        raise InvalidRequest(f"{model} is not a guard model: it did not answer with a safety verdict ({shown}). "
                             f"Use {GUARD_MODEL} or an alias such as 'omni-moderation-latest'.", param="model",
                             code="not_a_guard_model")
    safe, codes = parsed
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        usage = {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return GuardVerdict(safe, () if safe else codes, prompt if isinstance(prompt, int) else None,
                        completion if isinstance(completion, int) else None)


def openai_categories(codes: Sequence[str]) -> dict[str, bool]:
    hit = {name for code in codes for name in GUARD_TO_OPENAI.get(code, ())}
    if "S10" in codes and _VIOLENT.intersection(codes):
        hit.update(_THREATENING)
    return {name: name in hit for name in CATEGORIES}


def moderation_result(verdict: GuardVerdict) -> ModerationResult:
    categories = openai_categories(verdict.categories)
    applied: list[Literal["text", "image"]] = ["text"]  # image parts are never classified (see check_classifiable)
    return {
        "flagged": not verdict.safe,
        "categories": categories,
        "category_scores": {name: 1.0 if on else 0.0 for name, on in categories.items()},
        "category_applied_input_types": {name: list(applied) for name in CATEGORIES},
        "cfai_guard_categories": list(verdict.categories),
    }


def from_guard(verdicts: Sequence[GuardVerdict], *, model: str, id: str) -> ModerationResponse:
    return {"id": id, "model": model, "results": [moderation_result(v) for v in verdicts]}

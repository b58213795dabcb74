"""Extract the OpenAI component schemas cfai serves into tests/schemas/openai-subset.json (committed).

Reads the full spec (default ../shared/openai-openapi/openapi.yaml beside the repo; argv[1] overrides), keeps
the `$ref` closure of ROOTS, rewrites OpenAPI 3.0 `nullable: true` into 2020-12 `anyOf [..., {type: null}]`
and writes sorted JSON, so regenerating from the same spec is byte-identical. See `--help` for options.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO_ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml"
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "schemas" / "openai-subset.json"

SOURCE_REPOSITORY = "openai/openai-openapi"
SOURCE_PATH = "openapi.yaml"
# The spec file cannot name its own commit, so the pinned copy is recognised by its hash (see the
# shared README). Any other input must say where it came from with --commit.
KNOWN_COMMITS = {
    "db5d7478feae10b4d331834c60d9765a8aa042e38419f9b1694288c11aa8ebc8": "f85dbe223d40e1a31cba812ab2d755c7e98a92a3",
}

# The request/response bodies cfai accepts or emits. The spec has no schema for the body of
# `DELETE /responses/{id}` (its 200 declares no content; the example is {id, object: "response",
# deleted: true}), so there is no "DeleteResponse" to extract.
ROOTS = (
    "CreateChatCompletionRequest",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionRequest",
    "CreateCompletionResponse",
    "CreateResponse",
    "Response",
    "ResponseStreamEvent",
    "ResponseItemList",  # GET /responses/{id}/input_items
    "CreateEmbeddingRequest",
    "CreateEmbeddingResponse",
    "CreateModerationRequest",
    "CreateModerationResponse",
    "CreateImageRequest",
    "ImagesResponse",
    "ImageGenStreamEvent",
    "ImageEditStreamEvent",
    "CreateTranscriptionResponseJson",
    "CreateTranscriptionResponseVerboseJson",
    "CreateTranscriptionResponseDiarizedJson",
    "CreateTranscriptionResponseStreamEvent",
    "CreateTranslationResponseJson",
    "CreateTranslationResponseVerboseJson",
    "CreateSpeechRequest",
    "CreateSpeechResponseStreamEvent",
    "ListModelsResponse",
    "Model",
    "DeleteModelResponse",
    "ErrorResponse",
    "Error",
    "OpenAIFile",  # /files
    "ListFilesResponse",
    "DeleteFileResponse",
    "CreateBatchRequest",  # /batches
    "Batch",
    "ListBatchesResponse",
)

REF_PREFIX = "#/components/schemas/"

# JSON Schema keywords whose values are schemas. Everything else (example, default, enum, const,
# discriminator, x-*) is data and must not be rewritten, even if it happens to contain "nullable".
_SCHEMA_VALUED = frozenset({
    "items", "additionalItems", "additionalProperties", "not", "if", "then", "else", "contains",
    "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keys that do not constrain anything, so an allOf member made only of these plus `nullable` is the
# OpenAPI 3.0 idiom `allOf: [{$ref: X}, {nullable: true}]` ("X or null").
_ANNOTATIONS = frozenset({"description", "title", "default", "example", "examples", "deprecated"})


# The C loader is about 20x faster on this 3 MB file; the pure-Python one gives the same result.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Yaml12Loader(_BaseLoader):  # type: ignore[misc]
    """PyYAML speaks YAML 1.1; OpenAPI 3.1 is YAML 1.2, where `on`/`yes` are strings and dates stay text."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_spec(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed spec and the sha256 of the exact bytes read."""
    raw = path.read_bytes()
    spec = yaml.load(raw, Loader=_Yaml12Loader)
    if not isinstance(spec, dict) or "components" not in spec:
        raise SystemExit(f"{path}: not an OpenAPI document")
    return spec, hashlib.sha256(raw).hexdigest()


def subschemas(schema: Any) -> Iterator[Any]:
    """The schemas directly nested in `schema` (not data such as examples)."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key in _SCHEMA_VALUED:
            # Draft 4-style tuple `items: [...]` is still a list of schemas.
            yield from value if isinstance(value, list) else [value]
        elif key in _SCHEMA_LISTS:
            yield from value
        elif key in _SCHEMA_MAPS:
            yield from value.values()


def refs_in(schema: Any) -> Iterator[str]:
    """Every component name that `schema` refers to, at any depth."""
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if ref is not None:
        if not isinstance(ref, str) or not ref.startswith(REF_PREFIX) or "/" in ref[len(REF_PREFIX) :]:
            raise SystemExit(f"unsupported $ref {ref!r}: only {REF_PREFIX}<Name> is handled")
        yield ref[len(REF_PREFIX) :]
    for sub in subschemas(schema):
        yield from refs_in(sub)


def closure(schemas: dict[str, Any], roots: Iterable[str]) -> list[str]:
    """Sorted names reachable from `roots`. Missing roots are warned about and skipped."""
    seen: set[str] = set()
    pending: list[str] = []
    for name in roots:
        if name in schemas:
            pending.append(name)
        else:
            print(f"warning: root schema {name!r} is not in the spec; skipped", file=sys.stderr)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for target in refs_in(schemas[name]):
            if target not in schemas:
                raise SystemExit(f"{name} refers to missing schema {target!r}")
            pending.append(target)
    return sorted(seen)


def _is_nullable_marker(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("nullable") is True and set(schema) <= _ANNOTATIONS | {"nullable"}


def to_2020_12(schema: Any, component: str) -> Any:
    """A copy of one component schema with the OpenAPI-isms that Draft 2020-12 misreads rewritten.

    * `{..., nullable: true}` becomes `{anyOf: [{...}, {type: "null"}]}`. Wrapping (rather than adding
      "null" to `type`) keeps `$ref`-only, `enum`, `allOf` and `anyOf`/`oneOf` schemas correct: none of
      them would accept null just because `type` did. `nullable: false` is dropped.
    * Draft 2019-09 `$recursiveAnchor: true` / `$recursiveRef: "#"` (CompoundFilter nests itself) become
      an ordinary `$ref` to the component; 2020-12 ignores the old keywords, which would let anything
      through, and its metaschema rejects a boolean `$recursiveAnchor`.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    nullable = schema.get("nullable") is True
    for key, value in schema.items():
        if key in ("nullable", "$recursiveAnchor"):
            continue
        if key == "$recursiveRef":
            if value != "#":
                raise SystemExit(f"{component}: unsupported $recursiveRef {value!r}")
            out["$ref"] = REF_PREFIX + component
            continue
        if key == "allOf" and any(_is_nullable_marker(member) for member in value):
            # The idiom allOf [X, {nullable: true}] means "X or null"; left in place the marker
            # would become anyOf [{}, null] and X alone would still reject null.
            nullable = True
            value = [member for member in value if not _is_nullable_marker(member)]
            if not value:
                continue  # an empty allOf is invalid 2020-12
        if key == "oneOf" and sum(isinstance(m, dict) and m.get("nullable") is True for m in value) > 1:
            # Two branches that both accept null make oneOf reject null, the opposite of the intent.
            raise SystemExit(f"{component}: several nullable oneOf branches; rewrite this case by hand")
        if key in _SCHEMA_LISTS or (key in _SCHEMA_VALUED and isinstance(value, list)):
            out[key] = [to_2020_12(s, component) for s in value]
        elif key in _SCHEMA_VALUED:
            out[key] = to_2020_12(value, component)
        elif key in _SCHEMA_MAPS:
            out[key] = {name: to_2020_12(s, component) for name, s in value.items()}
        else:
            out[key] = value
    if not nullable:
        return out
    return {"anyOf": [out, {"type": "null"}]}


def _leftovers(value: Any) -> int:
    """Count rewritable keywords anywhere, data included, as a last check that the walker missed none."""
    if isinstance(value, dict):
        # A bool value tells the keyword apart from a property that happens to be named "nullable".
        here = isinstance(value.get("nullable"), bool) + ("$recursiveRef" in value) + ("$recursiveAnchor" in value)
        return here + sum(_leftovers(v) for v in value.values())
    if isinstance(value, list):
        return sum(_leftovers(v) for v in value)
    return 0


def build_subset(spec_path: Path, commit: str | None = None) -> dict[str, Any]:
    spec, sha256 = load_spec(spec_path)
    commit = commit or KNOWN_COMMITS.get(sha256)
    if commit is None:
        raise SystemExit(f"{spec_path} (sha256 {sha256}) is not the pinned spec; pass --commit <sha> to record it")
    schemas: dict[str, Any] = spec["components"]["schemas"]
    names = closure(schemas, ROOTS)
    converted = {name: to_2020_12(schemas[name], name) for name in names}
    left = _leftovers(converted)
    if left:
        raise SystemExit(f"{left} nullable/$recursive* keys survived the rewrite; the walker misses a keyword")
    return {
        "source": {
            "repository": SOURCE_REPOSITORY,
            "commit": commit,
            "path": SOURCE_PATH,
            "openapi": spec.get("openapi"),
            "info_version": spec.get("info", {}).get("version"),
            "sha256": sha256,
            "generated_by": "scripts/extract_openai_schemas.py",
        },
        "components": {"schemas": converted},
    }


def render(subset: dict[str, Any]) -> str:
    # Sorted keys, fixed indent and a final newline make the output a pure function of the input.
    return json.dumps(subset, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC, help="full openapi.yaml")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the subset")
    parser.add_argument("--commit", help="openai-openapi commit of SPEC, when it is not the pinned copy")
    args = parser.parse_args(argv)
    if not args.spec.is_file():
        parser.error(f"spec not found: {args.spec}")
    subset = build_subset(args.spec, args.commit)
    text = render(subset)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    count = len(subset["components"]["schemas"])
    print(f"wrote {args.output} ({count} schemas, {len(text.encode()):,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a big-payload request's memory peaks: the proxy's RSS at marks around the functions named, in-process.

Starts bench/fake_upstream.py and `cfai serve`'s app in this process (bench/inproc.py), sends one small request of
the kind (n=1 image, or 2 inputs) twice so modules, connections and the allocator are warm, then one big request
(`images`: n=4 flux-1-schnell b64_json; `embeddings`: 2,048 inputs to bge-base), and prints, at the entry (`>`)
and exit (`<`) of each function named as `module:attribute` (`module:Class.method` too), the RSS above what it
was before the request and the highest RSS since the mark before (VmHWM, reset at each mark through
/proc/self/clear_refs; Linux). The peak of bench/payloads.py ("peak RSS above idle") is the same measure over a
whole `cfai serve` process and several requests; this says which step it is in. RSS, not tracemalloc: orjson's
`dumps` reserves ~12x a long string's length (untouched pages, never resident) and tracemalloc counts it all.

    python bench/payload_rss.py images cfai_cli.upstream.workers:decode_image_result \
        cfai_cli.server.responses:PiecewiseJSONResponse.__init__
    python bench/payload_rss.py embeddings cfai_cli.upstream.lean:LeanBody.read \
        cfai_cli.server.routes.embeddings:create_embeddings
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from inproc import serving_app, with_fake_upstream  # noqa: E402
from payload_cpu import one, request_for  # noqa: E402

marks: list[tuple[str, int, int]] = []


def _rss() -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found[line[:5]] = int(line.split()[1]) * 1024
    return found["VmRSS"], found["VmHWM"]


def mark(label: str) -> None:
    now, high = _rss()
    marks.append((label, now, high))
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS


def watch(spec: str) -> None:
    """Marks at the entry and exit of `module:attribute[.attribute]`."""
    module, _, path = spec.partition(":")
    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    real = getattr(owner, name)
    if inspect.iscoroutinefunction(real):
        async def marked_async(*args: Any, **kwargs: Any) -> Any:
            mark(f"> {path}")
            try:
                return await real(*args, **kwargs)
            finally:
                mark(f"< {path}")
        setattr(owner, name, functools.wraps(real)(marked_async))
    else:
        def marked(*args: Any, **kwargs: Any) -> Any:
            mark(f"> {path}")
            try:
                return real(*args, **kwargs)
            finally:
                mark(f"< {path}")
        setattr(owner, name, functools.wraps(real)(marked))


async def run(port: int, args: argparse.Namespace) -> None:
    async with serving_app(port, "cfai-payload-rss-") as (app, key):
        path, body = request_for(args.kind, "float")
        small = json.loads(body)
        if "n" in small:
            small["n"] = 1
        else:
            small["input"] = small["input"][:2]
        for _ in range(2):
            await one(app, key, path, json.dumps(small).encode())
        for spec in args.watch:
            watch(spec)
        gc.collect()
        marks.clear()
        mark("start")
        size = await one(app, key, path, body)
        mark("end")
    base = marks[0][1]
    print(f"{args.kind}: answer {size / 1e6:.1f} MB; RSS above the start, and its highest since the mark before")
    for label, now, high in marks:
        print(f"{label:50s} {(now - base) / 1e6:7.2f} MB   highest before {(high - base) / 1e6:7.2f} MB")
    print(f"highest: {(max(high for _, _, high in marks[1:]) - base) / 1e6:.2f} MB above the start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["embeddings", "images"])
    parser.add_argument("watch", nargs="*", help="functions to mark, as module:attribute")
    args = parser.parse_args()
    with_fake_upstream(lambda port: run(port, args))


if __name__ == "__main__":
    main()

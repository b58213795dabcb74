"""One-shot CLI commands counted in instructions (callgrind), which do not move with the machine's load.

Runs `cfai --help`, `cfai chat hi` (against `bench/fake_upstream.py`, as bench/startup.py does) and
`cfai chat --offline hi` under `valgrind --tool=callgrind` with `PYTHONHASHSEED=0`, for one or more builds,
interleaved round by round, and prints the median instruction count of each. A build is a Python and the
checkout whose `cfai_cli` it runs (put first on `PYTHONPATH`), so the same code can be counted under two
venvs (another Typer, say) or two checkouts under one venv:

    python bench/startup_instructions.py                                   # this checkout, this Python
    python bench/startup_instructions.py --build before=.venv/bin/python:/tmp/before --rounds 3
    python bench/startup_instructions.py --build t28=/tmp/cli-t28/bin/python:. --only chat

Each command runs as the console script does (`cfai_cli.cli.entry.main`), with bytecode caches written by a
first run outside valgrind. Prints figures; never a timed assertion.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import fake_env, start_fake

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "import sys; from cfai_cli.cli.entry import main; sys.argv[0] = 'cfai'; sys.exit(main())"
COMMANDS = {"help": ["--help"], "chat": ["chat", "hi"], "offline": ["chat", "--offline", "hi"]}


def instructions(python: str, path: str, argv: list[str], env: dict[str, str]) -> int:
    run_env = {**env, "PYTHONHASHSEED": "0", "PYTHONPATH": path}
    # cwd: `python -c` puts the current directory before PYTHONPATH, and this checkout's cfai_cli must not
    # stand in for the build asked for.
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-c", ENTRY,
                           *argv], env=run_env, capture_output=True, text=True, cwd=env["CFAI_HOME"])
    if done.returncode != 0:
        raise RuntimeError(f"{python} {argv} exited {done.returncode}: {done.stderr[-2000:]}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if not found:
        raise RuntimeError(f"no callgrind total in: {done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="append", default=[],
                        help="LABEL=PYTHON:CHECKOUT (default: this=<this Python>:<this checkout>)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(COMMANDS), action="append")
    args = parser.parse_args()
    builds: dict[str, tuple[str, str]] = {}
    for spec in args.build or [f"this={sys.executable}:{ROOT}"]:
        label, _, rest = spec.partition("=")
        python, _, checkout = rest.rpartition(":")
        builds[label] = (os.path.abspath(python), str(Path(checkout).resolve()))  # not resolve(): a venv's link
    names = args.only or list(COMMANDS)
    fake, port = start_fake()
    counts: dict[tuple[str, str], list[int]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="cfai-instr-") as home:
            env = fake_env(home, port)
            for python, path in builds.values():  # bytecode caches, the exchange log's schema
                for name in names:
                    subprocess.run([python, "-c", ENTRY, *COMMANDS[name]], env={**env, "PYTHONPATH": path},
                                   check=True, capture_output=True, cwd=home)
            for _ in range(args.rounds):
                for name in names:
                    for label, (python, path) in builds.items():
                        counts.setdefault((name, label), []).append(instructions(python, path, COMMANDS[name], env))
    finally:
        fake.terminate()
        fake.wait()
    print(f"| command | {' | '.join(builds)} |")
    print(f"| --- |{' ---: |' * len(builds)}")
    for name in names:
        cells = [f"{statistics.median(counts[name, label]) / 1e6:,.1f} M" for label in builds]
        print(f"| `cfai {' '.join(COMMANDS[name])}` | {' | '.join(cells)} |")
    if os.environ.get("VERBOSE"):
        print(counts)


if __name__ == "__main__":
    main()

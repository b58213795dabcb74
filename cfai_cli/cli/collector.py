"""The garbage collector while a `cfai` process starts: off while modules are imported, then on for what is kept.

Imports only the standard library (the console script imports it before anything else).

A start-up allocates hundreds of thousands of objects that live as long as the process (modules, classes,
functions, pydantic's schemas), and almost no garbage. The collector, counting allocations, still runs its
young and middle generations ~90 times and the whole heap a few times while `cfai chat hi` imports, each pass
walking every object made so far, and the interpreter walks them all once more at exit. Counted under
`valgrind --tool=callgrind` (2026-12-02, `cfai chat hi` against bench/fake_upstream.py, 897 M instructions with
the collector as it is): collector off for the whole run 857 M (-4.4 %); off during start-up, then the objects
made so far frozen (`gc.freeze()`: moved out of every generation, never walked again, including at exit) and
the collector on before the command's request 813 M (-9.4 %); raising the thresholds instead (700, 100, 100)
885 M, (10000, 10, 10) 883 M.

Only the console script hands the collector over (`own()`, in cli/entry.py): tests and other hosts that call
the app in a long-lived process keep theirs untouched, every function here is then a no-op. The collector is on
again (`settle()`) before any command runs (cli/app.py's boundary), so a long-running command (`cfai serve`,
an interactive chat) collects as always; a one-shot command turns it off again around its own imports
(`importing()`: cli/chat.py before its request).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_owned = False  # the console script started this process: its collector is ours to pause


def own() -> None:
    """The console script's first step: this process runs one `cfai` command; pause the collector."""
    global _owned
    _owned = True
    gc.disable()


def settle() -> None:
    """Freeze what start-up made (kept for the process's life) and collect from here on as usual."""
    if _owned and not gc.isenabled():
        gc.freeze()
        gc.enable()


@contextmanager
def importing() -> Iterator[None]:
    """Around a command's own imports: the collector paused, then settled (also when they fail)."""
    if not _owned:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        settle()

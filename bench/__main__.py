"""`make bench`: run every bench/bench_*.py module's `main()` in turn, or the ones named.

Benchmarks measure; they never fail a build on speed. Each prints its figures as
`bench=<name> key=value ...` lines so that they can be pasted into a closing note.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_")
    )
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        print(f"# {name}", flush=True)
        module.main()
        print(f"# {name} finished in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import bench

RESULTS = Path(__file__).with_name("results.json")


def available() -> list[str]:
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in names:
        print(f"== {name}", flush=True)
        started = time.time()
        module = importlib.import_module(f"bench.bench_{name}")
        figures = module.run()
        figures["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        figures["seconds"] = round(time.time() - started, 1)
        results[name] = figures
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print()
    print(f"{'benchmark':<12} {'figure':<36} value")
    for name in sorted(results):
        for key, value in sorted(results[name].items()):
            print(f"{name:<12} {key:<36} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

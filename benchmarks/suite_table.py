"""One table of the benchmark suite's JSON files: printed, and written as suite.md and suite.json.

    python benchmarks/suite_table.py OUT_DIR      # reads OUT_DIR/<benchmark>.json (gpu_suite.sh writes them)

Every number of every file becomes one row (benchmark, measurement, value), so a benchmark that gains
a figure shows up without changes here; a benchmark that failed or timed out (no JSON) is listed as such.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf) of every number and short string in a nested JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for row in value:  # a list of rows: name each by its non-numeric fields
            label = ",".join(f"{k}={v}" for k, v in row.items() if isinstance(v, (str, int)) and k in _KEYS)
            yield from flatten({k: v for k, v in row.items() if k not in _KEYS}, f"{prefix}[{label}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield prefix, value
    elif isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        yield prefix, ", ".join(_fmt(v) for v in value)


_KEYS = ("stack", "P", "layers", "ranks", "f", "mode")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(out_dir: Path, expected: list[str]) -> tuple[str, dict]:
    """The markdown table and the combined JSON of the benchmarks in `out_dir`."""
    lines = ["| benchmark | measurement | value |", "|---|---|---|"]
    combined = {}
    for name in expected:
        path = out_dir / f"{name}.json"
        if not path.exists():
            lines.append(f"| {name} | (no result: failed or timed out, see {name}.txt) | |")
            continue
        data = json.loads(path.read_text())
        combined[name] = data
        for key, value in flatten({k: v for k, v in data.items() if k != "config"}):
            lines.append(f"| {name} | {key} | {_fmt(value)} |")
    return "\n".join(lines) + "\n", combined


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0])
    expected = argv[1:] or sorted(p.stem for p in out_dir.glob("*.json") if p.stem != "suite")
    markdown, combined = table(out_dir, expected)
    (out_dir / "suite.md").write_text(markdown)
    (out_dir / "suite.json").write_text(json.dumps(combined, indent=1))
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

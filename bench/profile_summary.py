"""Summarise a ``py-spy record --format raw`` profile (collapsed stacks) as markdown.

Prints where the samples go: by layer (inclusive: a sample counts for a layer if any of its
frames is in it) and the top functions by self time.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# (layer, pattern on the frame's file path), first match wins for self time
LAYERS = [
    ("lightrelay (own code)", r"/lightrelay/"),
    ("aiohttp (upstream client)", r"/aiohttp/"),
    ("orjson", r"orjson"),
    ("uvicorn + httptools (server)", r"/uvicorn/|httptools"),
    ("starlette (routing, request, response)", r"/starlette/"),
    ("sqlalchemy", r"/sqlalchemy/"),
    ("aiosqlite / sqlite3", r"aiosqlite|sqlite3"),
    ("pydantic", r"/pydantic"),
    ("asyncio / uvloop (incl. native socket I/O)", r"/asyncio/|uvloop"),
    ("logging", r"/logging/"),
]
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def layer_of(path: str) -> str:
    for name, pattern in LAYERS:
        if re.search(pattern, path):
            return name
    return "other"


def main(path: str) -> None:
    total = 0
    inclusive: Counter[str] = Counter()
    self_layer: Counter[str] = Counter()
    self_func: Counter[str] = Counter()
    own_inclusive: Counter[str] = Counter()
    for line in open(path, encoding="utf-8", errors="replace"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [FRAME.match(f) for f in stack.split(";")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        for name in {layer_of(f["file"]) for f in frames}:
            inclusive[name] += n
        leaf = frames[-1]
        self_layer[layer_of(leaf["file"])] += n
        short = re.sub(r"^.*/(site-packages|lib/python3\.\d+)/", "", leaf["file"])
        self_func[f"{leaf['func']} ({short})"] += n
        for f in {f"{f['func']} ({f['file'].split('/lightrelay/', 1)[-1]})" for f in frames
                  if "/lightrelay/" in f["file"]}:
            own_inclusive[f] += n
    if not total:
        print("no samples")
        return
    pct = lambda n: f"{100 * n / total:.1f} %"  # noqa: E731
    print(f"py-spy samples (busy only): {total}\n")
    print("| layer | self | inclusive |\n|---|---:|---:|")
    for name, n in self_layer.most_common():
        print(f"| {name} | {pct(n)} | {pct(inclusive[name])} |")
    print("\nTop functions by self time:\n\n| function | self |\n|---|---:|")
    for name, n in self_func.most_common(25):
        print(f"| `{name}` | {pct(n)} |")
    print("\nlightrelay functions, inclusive:\n\n| function | inclusive |\n|---|---:|")
    for name, n in own_inclusive.most_common(20):
        print(f"| `{name}` | {pct(n)} |")


if __name__ == "__main__":
    main(sys.argv[1])

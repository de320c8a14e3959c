"""Summarise py-spy collapsed stacks: the share of samples per function.

    python -m benchmarks.stacks FILE [--top 25]

Prints each function's inclusive share (samples whose stack contains it) and
self share (samples where it is the innermost frame).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Return total samples and the inclusive and self counts per frame."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, inclusive, own = summarise(args.path)
    print(f"{total} samples")
    print("inclusive:")
    for frame, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f} %  {frame}")
    print("self:")
    for frame, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f} %  {frame}")


if __name__ == "__main__":
    main()

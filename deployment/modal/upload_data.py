"""Put local JSONL training files into the data Volume, after checking every line.

    python deployment/modal/upload_data.py python.jsonl math.jsonl

A bad line is reported with its file and number, and then nothing is uploaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hi_moe.ops import deploy
from hi_moe.ops.training import validate_lines


def check(paths: list[Path]) -> list[str]:
    """Every problem in every file; empty when all can be uploaded."""
    problems: list[str] = []
    for path in paths:
        if not path.is_file():
            problems.append(f"{path}: no such file")
            continue
        with path.open(encoding="utf-8") as lines:
            _, found = validate_lines(lines)
        problems += [f"{path}: {problem}" for problem in found]
    return problems


def upload(paths: list[Path]) -> None:
    import modal

    volume = modal.Volume.from_name(deploy.DATA_VOLUME, create_if_missing=True)
    with volume.batch_upload(force=True) as batch:
        for path in paths:
            batch.put_file(str(path), f"/{path.name}")


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: upload_data.py FILE.jsonl [...]", file=sys.stderr)
        return 2
    paths = [Path(arg) for arg in argv]
    problems = check(paths)
    if problems:
        print(f"nothing uploaded: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    upload(paths)
    print(f"uploaded {', '.join(p.name for p in paths)} to the {deploy.DATA_VOLUME} Volume")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""python -m dashboards.generator [--check]: writes the generated files, or with --check only
says which committed ones are out of date."""

from __future__ import annotations

import argparse
import sys

from . import __doc__ as DOC
from . import rendered


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboards.generator", description=DOC.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="fail when a file is out of date")
    args = parser.parse_args()
    stale = []
    for path, content in rendered().items():
        if path.exists() and path.read_text() == content:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.write_text(content)
    if stale:
        print("out of date, run python -m dashboards.generator:", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write docs/register-map.md from the register definition in rtl/registers.py.

Usage: python scripts/gen_regmap.py [--check] [-o FILE]

``--check`` writes nothing and exits with status 1 if the file differs from what would be
generated (tb/test_csr.py runs the same comparison).
"""

import argparse
import sys
from pathlib import Path

from tessera.rtl.registers import register_map_markdown

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "register-map.md"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="only check that the file is up to date")
    args = parser.parse_args()
    text = register_map_markdown()
    current = args.output.read_text() if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is out of date: run python scripts/gen_regmap.py",
                  file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

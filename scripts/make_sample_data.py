"""Regenerate the bundled sample set (byte for byte the same files).

    python scripts/make_sample_data.py --out resources/sample [--count 12] [--seed 2026]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.synthetic import write_sample_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("resources/sample"))
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    written = write_sample_set(args.out, count=args.count, seed=args.seed)
    sys.stdout.write(f"wrote {len(written)} files to {args.out}\n")


if __name__ == "__main__":
    main()

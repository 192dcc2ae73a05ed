"""Seconds to build one synthetic phantom (the test fixtures and the demo build many).

.venv/bin/python bench/phantom.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from node.synthetic.phantom import make_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20, help="phantoms to time (default 20)")
    args = parser.parse_args()
    make_phantom(0)  # warm-up: imports and caches
    times = []
    for seed in range(args.repeat):
        start = time.perf_counter()
        make_phantom(11 + seed, lesions=2, calcifications=2)
        times.append(time.perf_counter() - start)
    print(
        f"phantom with 2 masses + 2 clusters: median {statistics.median(times):.3f} s, "
        f"max {max(times):.3f} s over {args.repeat}"
    )


if __name__ == "__main__":
    main()

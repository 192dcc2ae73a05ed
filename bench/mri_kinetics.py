"""Seconds and peak memory of the kinetic analysis of one DCE exam (issue 13).

.venv/bin/python bench/mri_kinetics.py [--phases 6] [--slices 160] [--size 512]

The phantom is built first (not timed); the analysis (motion check, breast mask, maps,
curve types, candidates) is timed on arrays already in memory, as after assembly. Peak
memory is what NumPy allocated during the analysis (tracemalloc), beside the process's
maximum resident size.

Measured 2026-11-29 on the shared 2-core build machine (loaded by other jobs: the process
got 36 % of a CPU): 6 phases x 160 slices x 512^2, analysis 14.3 s, 1.25 GiB allocated
during the analysis beside 0.94 GiB of float32 phases, max RSS 2.43 GiB; 3/3 lesions found
with the right curve type.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from node.mri.kinetics import analyse_volumes
from node.mri.phantom import make_dce_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phases", type=int, default=6, help="pre + post phases (default 6)")
    parser.add_argument("--slices", type=int, default=160)
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    args = parser.parse_args()
    start = time.perf_counter()
    phantom = make_dce_phantom(
        seed=1,
        slices=args.slices,
        rows=args.size,
        columns=args.size,
        post_phases=args.phases - 1,
        pixel_spacing_mm=320 / args.size,
        slice_thickness_mm=1.0,
    )
    built = time.perf_counter() - start
    phases = [p.astype(np.float32) for p in phantom.phases]
    del phantom.phases
    spacing = (1.0, 320 / args.size, 320 / args.size)
    tracemalloc.start()
    start = time.perf_counter()
    result = analyse_volumes(phases, list(phantom.times_s), spacing)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    inputs = sum(p.nbytes for p in phases)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"DCE exam {args.phases} phases x {args.slices} slices x {args.size}^2: "
        f"analysis {seconds:.1f} s, {len(result.candidates)} candidates "
        f"({sorted(c.curve for c in result.candidates)}); peak allocated during analysis "
        f"{peak / 2**30:.2f} GiB beside {inputs / 2**30:.2f} GiB of float32 phases; "
        f"process max RSS {rss / 1024:.2f} GiB; phantom built in {built:.1f} s (not counted)"
    )


if __name__ == "__main__":
    main()

"""Seconds and peak memory of the kinetic analysis of one DCE exam, and of its summary (issue 13).

.venv/bin/python bench/mri_kinetics.py [--phases 6] [--slices 160] [--size 512] [--no-summary]

The phantom is built first (not timed); the analysis (motion check, breast mask, maps,
curve types, candidates) is timed on arrays already in memory, as after assembly. Then,
side by side in the same run, the summary (SC image and Encapsulated PDF in one language,
node/mri/summary.py) is timed on the same result, with the first post-contrast phase as
DICOM slices. Peak memory is what was allocated during each stage (tracemalloc), beside the
process's maximum resident size after each stage.

Measured 2026-11-29 on the shared 2-core build machine, niced, at load average 20-23 (other
jobs), so every figure is an upper bound: 6 phases x 160 slices x 512^2, analysis 22.0 s
(15.1 s in an earlier run of the same analysis code: the load varies), 1.25 GiB allocated during the
analysis beside 0.94 GiB of float32 phases; summary (SC + PDF, en) 35.7 s the first time in a
process (the PDF font subset is made once per process) and 13.3 s after (all of it matplotlib
text rendering; 2.6 s for the same page at 24 x 96 x 128 a few minutes earlier), 13 MiB
allocated; process max RSS 2.51 GiB after the analysis and unchanged by the summary. 3/3
lesions found with the right curve type.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from node.mri.assembly import DceExam, DcePhase
from node.mri.kinetics import analyse_volumes
from node.mri.phantom import make_dce_phantom
from node.mri.summary import summary_outputs
from node.mri.synthetic_dicom import mr_slice


def _max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _exam(post: np.ndarray, phases: int, spacing: tuple[float, float, float]) -> DceExam:
    """A DceExam whose phases all share the first post-contrast slices: what the summary
    reads (pixels of that phase, geometry, phase count); the analysis used the arrays."""
    series = {
        "SeriesInstanceUID": "2.25.1",
        "SeriesNumber": 4,
        "SeriesDescription": "ax DCE post 1",
        "ScanningSequence": "GR",
        "SequenceVariant": ["SP", "SS"],
        "SequenceName": "fl3d_vibe",
        "ScanOptions": "FS",
        "EchoTime": 2.0,
        "RepetitionTime": 5.0,
        "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"],
        "TemporalPositionIdentifier": 2,
        "NumberOfTemporalPositions": phases,
        "time_s": 60.0,
        "contrast": True,
    }
    slices = tuple(
        mr_slice(
            post[k],
            series=series,
            study_uid="2.25.2",
            frame_of_reference_uid="2.25.3",
            patient_id="BENCH",
            index=k,
            spacing=(spacing[1], spacing[0]),  # (pixel spacing, slice thickness)
            position_z=k * spacing[0],
        )
        for k in range(post.shape[0])
    )
    return DceExam(phases=tuple(DcePhase(slices, None) for _ in range(phases)), ignored=())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phases", type=int, default=6, help="pre + post phases (default 6)")
    parser.add_argument("--slices", type=int, default=160, help="slices per phase (default 160)")
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument(
        "--no-summary", action="store_true", help="time the analysis only, not the summary"
    )
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
    post = phantom.phases[1].copy()
    del phantom.phases
    spacing = (1.0, 320 / args.size, 320 / args.size)
    tracemalloc.start()
    start = time.perf_counter()
    result = analyse_volumes(phases, list(phantom.times_s), spacing)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    inputs = sum(p.nbytes for p in phases)
    print(
        f"DCE exam {args.phases} phases x {args.slices} slices x {args.size}^2: "
        f"analysis {seconds:.1f} s, {len(result.candidates)} candidates "
        f"({sorted(c.curve for c in result.candidates)}); peak allocated during analysis "
        f"{peak / 2**30:.2f} GiB beside {inputs / 2**30:.2f} GiB of float32 phases; "
        f"process max RSS {_max_rss_gib():.2f} GiB; phantom built in {built:.1f} s (not counted)"
    )
    if args.no_summary:
        return
    del phases
    exam = _exam(post, args.phases, spacing)
    result.times_s = tuple(phantom.times_s)
    for run in ("first (with the once-per-process font preparation)", "again (per exam)"):
        tracemalloc.start()
        start = time.perf_counter()
        outputs = summary_outputs(exam, result)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        sizes = ", ".join(
            f"{ds.Modality} "
            f"{len(ds.PixelData if 'PixelData' in ds else ds.EncapsulatedDocument) / 2**10:.0f} KiB"
            for ds in outputs
        )
        print(
            f"summary (SC + PDF, en), {run}: {seconds:.1f} s ({sizes}); peak allocated "
            f"{peak / 2**20:.0f} MiB; process max RSS {_max_rss_gib():.2f} GiB"
        )


if __name__ == "__main__":
    main()

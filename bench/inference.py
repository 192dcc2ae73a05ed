"""Per-exam inference time and peak memory of the models, old and new side by side.

Each (model, torch threads) runs in a fresh child process, so its peak RSS is its own: the
child loads the model as the node does (``registry.load_model``), reads a synthetic 4-view
exam at serving resolution (3328 x 2560 MG images, presentation pixels as the worker makes
them), scores it once to warm up, then ``--exams`` times through ``predict_exam`` (each
breast against the other for the exam-aware model).

    .venv/bin/python bench/inference.py [--models mias-contralateral/1.0.0 mias-contralateral/1.1.0]
        [--threads 1 2] [--exams 3] [--rows 3328 --columns 2560] [--batch-norm folded unfolded]

``--batch-norm unfolded`` runs the backbone as the weights file defines it (a batch norm after
every convolution) instead of folded into the convolutions, which is what the node serves.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from node.dicom.pixels import presentation_pixels
from node.dicom.views import normalise_dataset
from node.domain import ExamImage
from node.inference import backbones, contralateral
from node.inference.scoring import predict_exam
from node.models.registry import load_model
from node.synthetic.dicom import synthetic_exam

MODELS = Path(__file__).resolve().parents[1] / "models"


def child(
    ref: str, threads: int, exams: int, rows: int, columns: int, batch_norm: str
) -> dict[str, object]:
    """One measurement, in this process."""
    torch.set_num_threads(threads)
    if batch_norm == "unfolded":  # the model loads its backbone through this name
        unfolded = functools.partial(backbones.load_backbone, fold=False)
        contralateral.load_backbone = unfolded  # type: ignore[attr-defined,assignment]
    started = time.perf_counter()
    model = load_model(MODELS, ref, device="cpu")
    load_s = time.perf_counter() - started
    images = []
    for dataset, _truth in synthetic_exam(7, rows=rows, columns=columns):
        found = normalise_dataset(dataset)
        images.append(ExamImage(presentation_pixels(dataset), found.laterality, found.view))
    predict_exam(model, images)  # warm-up
    times = []
    for _ in range(exams):
        t = time.perf_counter()
        predictions = predict_exam(model, images)
        times.append(time.perf_counter() - t)
    per_exam = sorted(times)[len(times) // 2]
    return {
        "model": ref,
        "batch_norm": batch_norm,
        "threads": threads,
        "images_per_exam": len(images),
        "image_size": f"{rows}x{columns}",
        "load_s": round(load_s, 2),
        "exam_s_median": round(per_exam, 2),
        "image_s": round(per_exam / len(images), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "compared": [p.compared for p in predictions],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["mias-contralateral/1.0.0", "mias-contralateral/1.1.0"]
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--exams", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3328)
    parser.add_argument("--columns", type=int, default=2560)
    parser.add_argument(
        "--batch-norm",
        nargs="+",
        choices=["folded", "unfolded"],
        default=["folded"],
        help="backbone batch norms folded into the convolutions (as served) or not",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("MODEL", "THREADS", "BN"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        ref, threads, batch_norm = args.child
        result = child(ref, int(threads), args.exams, args.rows, args.columns, batch_norm)
        print(json.dumps(result))
        return
    print(
        "| model | batch norm | threads | s/exam (median) | s/image | peak RSS MB | load s | compared |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for ref, batch_norm, threads in itertools.product(args.models, args.batch_norm, args.threads):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                ref,
                str(threads),
                batch_norm,
                "--exams",
                str(args.exams),
                "--rows",
                str(args.rows),
                "--columns",
                str(args.columns),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['model']} | {r['batch_norm']} | {r['threads']} | {r['exam_s_median']} | {r['image_s']} "
            f"| {r['peak_rss_mb']} | {r['load_s']} | {r['compared']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

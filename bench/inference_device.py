"""The served model on the CPU and on a CUDA GPU, side by side: where an exam's inference
time goes, whether batching exams together helps, and whether the GPU gives the same answers.

Run where torch sees a GPU; without one only the CPU columns print. For each device and image
size, in this process, on synthetic 4-view exams (presentation pixels as the worker makes them):

- stages, seconds per exam (median of ``--exams`` after a warm-up): *prepare* (mirror, breast
  mask, crop, resize: on the CPU whatever the device), *network* (the backbone as the node
  runs it, ``exam_features``: on a GPU the exam's views in one pass, on the CPU one view per
  pass; feature maps back to host memory), *exam* (``predict_exam`` as the worker calls it,
  timed apart) and *scoring* (heads, heatmaps on the source pixels, findings: on the CPU;
  the exam's time less the other two);
- batching: the views of k exams in one pass (``--batch-exams``), seconds per exam, and the
  GPU memory it peaked at; on a GPU k = 1 is what the node does (once: the network's input
  size does not depend on the source's);
- agreement with the CPU: the largest |score difference| over the exams' images and the
  relative difference of the feature maps, with TF32 (torch's default for cuDNN
  convolutions) on and off (the node computes in full float32, node.inference.device); the
  stages print once more with TF32 for what it would save.

    .venv/bin/python bench/inference_device.py [--model mias-contralateral/1.1.0]
        [--sizes small full] [--exams 5] [--batch-exams 1 2 4 8] [--threads 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from node.dicom.pixels import presentation_pixels
from node.dicom.views import normalise_dataset
from node.domain import ExamImage
from node.inference.contralateral import (
    ContralateralModel,
    Prepared,
    batch_features,
    exam_features,
    prepare,
)
from node.models.registry import load_model
from node.synthetic.dicom import synthetic_exam

MODELS = Path(__file__).resolve().parents[1] / "models"
SIZES = {"small": (1024, 832), "full": (3328, 2560)}


def exam_images(seed: int, rows: int, columns: int) -> list[ExamImage]:
    """One synthetic 4-view exam as the worker hands it to the model."""
    images = []
    for dataset, _truth in synthetic_exam(seed, rows=rows, columns=columns):
        found = normalise_dataset(dataset)
        images.append(ExamImage(presentation_pixels(dataset), found.laterality, found.view))
    return images


def timed(call: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds of ``call`` with the device's queued work finished on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    value = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, value


def stages(model: ContralateralModel, exams: Sequence[Sequence[ExamImage]]) -> dict[str, float]:
    """Median seconds per exam of each stage (the first exam only warms up)."""
    size = model.spec.input_size
    seen: dict[str, list[float]] = {"prepare": [], "network": [], "scoring": [], "exam": []}
    for index, images in enumerate([exams[0], *exams]):
        prep_s, prepared = timed(
            lambda images=images: [prepare(i.pixels, i.laterality, size) for i in images],
            model.device,
        )
        net_s, _ = timed(lambda p=prepared: exam_features(model.backbone, p), model.device)
        exam_s, _ = timed(lambda images=images: model.predict_exam(images), model.device)
        if index == 0:
            continue
        seen["prepare"].append(prep_s)
        seen["network"].append(net_s)
        seen["exam"].append(exam_s)
        seen["scoring"].append(max(0.0, exam_s - prep_s - net_s))
    return {name: statistics.median(values) for name, values in seen.items()}


def batching(
    model: ContralateralModel, prepared: Sequence[Sequence[Prepared]], ks: Sequence[int]
) -> list[dict[str, float]]:
    """The network stage for k exams in one pass: median seconds per exam, peak GPU MB."""
    rows = []
    for k in ks:
        if k > len(prepared):
            continue
        group = [p for exam in prepared[:k] for p in exam]
        batch_features(model.backbone, group)  # warm-up (cuDNN picks its kernels per shape)
        if model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(model.device)
        times = [
            timed(lambda g=group: batch_features(model.backbone, g), model.device)[0]
            for _ in range(3)
        ]
        peak = (
            torch.cuda.max_memory_allocated(model.device) / 2**20
            if model.device.type == "cuda"
            else float("nan")
        )
        rows.append({"k": k, "s_per_exam": statistics.median(times) / k, "peak_gpu_mb": peak})
    return rows


def agreement(
    reference: ContralateralModel, other: ContralateralModel, exams: Sequence[Sequence[ExamImage]]
) -> dict[str, float]:
    """How far ``other``'s scores and feature maps are from ``reference``'s on the same exams."""
    size = reference.spec.input_size
    score_diff, num, den = 0.0, 0.0, 0.0
    for images in exams:
        a = reference.predict_exam(images)
        b = other.predict_exam(images)
        score_diff = max(score_diff, *(abs(x.score - y.score) for x, y in zip(a, b, strict=True)))
        prepared = [prepare(i.pixels, i.laterality, size) for i in images]
        fa = batch_features(reference.backbone, prepared)
        fb = batch_features(other.backbone, prepared)
        for x, y in zip(fa, fb, strict=True):
            for tap in x.maps:
                num += float(np.sum((x.maps[tap].astype(np.float64) - y.maps[tap]) ** 2))
                den += float(np.sum(x.maps[tap].astype(np.float64) ** 2))
    return {"max_abs_score_diff": score_diff, "feature_rel_diff": (num / den) ** 0.5}


@contextmanager
def conv_precision(precision: str) -> Iterator[None]:
    """cuDNN convolutions in "ieee" (full float32, as the node serves) or "tf32" meanwhile."""
    torch.backends.cudnn.conv.fp32_precision = precision  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.backends.cudnn.conv.fp32_precision = "ieee"  # type: ignore[attr-defined]


Models = dict[str, ContralateralModel]
Exams = Sequence[Sequence[ExamImage]]


def stage_table(models: Models, exams: Exams, size: str) -> dict[str, Any]:
    """Per device, the stages of an exam; on a GPU once more with TF32 for what it would save."""
    print("| device | prepare | network | scoring | exam |")
    print("|---|---|---|---|---|")
    runs = [(name, model, "ieee") for name, model in models.items()]
    if "cuda" in models:
        runs.append(("cuda, TF32", models["cuda"], "tf32"))
    report = {}
    for name, model, precision in runs:
        with conv_precision(precision):
            s = stages(model, exams)
        report[f"{size}/{name}/stages"] = s
        cells = f"{s['prepare']:.3f} | {s['network']:.4f} | {s['scoring']:.3f} | {s['exam']:.3f}"
        print(f"| {name} | {cells} |", flush=True)
    return report


def batching_table(models: Models, exams: Exams, ks: Sequence[int]) -> dict[str, Any]:
    """Per device, the network stage with k exams' views in one pass."""
    size_in = models["cpu"].spec.input_size
    prepared = [[prepare(i.pixels, i.laterality, size_in) for i in e] for e in exams]
    print(
        f"\nnetwork stage ({size_in[0]} x {size_in[1]} input whatever the source), "
        "k exams in one pass: seconds per exam (peak GPU MB)"
    )
    print("| device | " + " | ".join(f"k={k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    report = {}
    for name, model in models.items():
        rows = batching(model, prepared, ks)
        report[f"{name}/batching"] = rows
        cells = [
            f"{r['s_per_exam']:.4f}"
            + ("" if np.isnan(r["peak_gpu_mb"]) else f" ({r['peak_gpu_mb']:.0f})")
            for r in rows
        ]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return report


def agreement_table(models: Models, exams: Exams, size: str) -> dict[str, Any]:
    """The GPU's scores and features against the CPU's, with TF32 and without."""
    print("\nCUDA against the CPU on the same exams")
    print("| TF32 | max abs score diff | feature rel diff |")
    print("|---|---|---|")
    report = {}
    for precision in ("tf32", "ieee"):
        with conv_precision(precision):
            a = agreement(models["cpu"], models["cuda"], exams)
        report[f"{size}/agreement/{precision}"] = a
        on = "on" if precision == "tf32" else "off"
        print(f"| {on} | {a['max_abs_score_diff']:.2e} | {a['feature_rel_diff']:.2e} |", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mias-contralateral/1.1.0", help="an exam-aware model")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["small", "full"])
    parser.add_argument("--exams", type=int, default=5, help="timed exams per size (default 5)")
    parser.add_argument(
        "--batch-exams",
        nargs="+",
        type=int,
        default=[1, 2, 4, 8],
        help="exams per network pass to compare (default 1 2 4 8)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (default 2, a small pod)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    models: Models = {}
    for name in devices:
        model = load_model(MODELS, args.model, device=name)
        if not isinstance(model, ContralateralModel):
            parser.error(f"{args.model} is not an exam-aware model")
        models[name] = model
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else "none"
    print(f"model {args.model}; torch {torch.__version__}; {args.threads} CPU threads; GPU {gpu}")
    report: dict[str, Any] = {"model": args.model, "gpu": gpu, "threads": args.threads}
    for size in args.sizes:
        rows, columns = SIZES[size]
        count = max(args.exams, max(args.batch_exams))
        exams = [
            exam_images(seed, rows, columns)
            for seed in tqdm(range(count), desc=f"{size} exams", unit="exam")
        ]
        print(f"\n{size} ({rows} x {columns}), 4 views per exam, seconds per exam (median)")
        report |= stage_table(models, exams[: args.exams], size)
        if size == args.sizes[0]:  # the network's input size is the same for every source size
            report |= batching_table(models, exams, args.batch_exams)
        if "cuda" in models:
            report |= agreement_table(models, exams[: args.exams], size)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

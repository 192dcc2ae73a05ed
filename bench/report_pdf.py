"""Time to draw the one-page PDF report, a baseline revision and this tree side by side.

Why: the PDF was the biggest single piece of a small exam's writing stage. This builds a
synthetic 4-view exam, scores it with a shipped model as the worker does, then draws the page
(``render_report``) with ``node/writers/report_pdf.py`` as it is in ``--baseline`` (read with
``git show``, imported under another name) and as it is in this tree, alternately, each once
to warm up (fonts are prepared once per process), then ``--repeats`` times.

    .venv/bin/python bench/report_pdf.py [--baseline main] [--repeats 10] [--language en]
        [--model mias-contralateral/1.1.0] [--rows 1024 --columns 832]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

import node.writers.report_pdf as current
from node.inference.scoring import prepare_images, score_images
from node.models.registry import load_model
from node.synthetic.dicom import synthetic_exam
from node.writers.locales import load_locale

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("R CC", "L CC", "R MLO", "L MLO")


def baseline_module(revision: str, directory: Path) -> ModuleType:
    """``node/writers/report_pdf.py`` at ``revision``, imported as ``report_pdf_baseline``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:node/writers/report_pdf.py"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    path = directory / "report_pdf_baseline.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("report_pdf_baseline", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=10, help="timed pages per variant")
    parser.add_argument("--language", default="en", help="locale of the page (en, ru, kk)")
    parser.add_argument("--model", default="mias-contralateral/1.1.0", help="model name/version")
    parser.add_argument("--rows", type=int, default=1024, help="rows of each synthetic image")
    parser.add_argument("--columns", type=int, default=832, help="columns of each image")
    args = parser.parse_args()

    model = load_model(ROOT / "models", args.model, device="cpu")
    sources = [ds for ds, _ in synthetic_exam(3, rows=args.rows, columns=args.columns)]
    images, _ = prepare_images(sources)
    exam = score_images(model, images, expected_views=VIEWS, revision=0)
    locale = load_locale(args.language)
    with tempfile.TemporaryDirectory() as directory:
        variants: dict[str, Callable[..., bytes]] = {
            f"baseline ({args.baseline})": baseline_module(
                args.baseline, Path(directory)
            ).render_report,
            "this tree": current.render_report,
        }
        first = {name: render(sources, exam, locale) for name, render in variants.items()}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in tqdm(range(args.repeats), desc="pages", unit="round"):
            for name, render in variants.items():
                started = time.perf_counter()
                document = render(sources, exam, locale)
                times[name].append(time.perf_counter() - started)
                if document != first[name]:
                    raise RuntimeError(f"{name}: the same exam gave different bytes")
    print(f"| variant | s/page median | min | max | PDF bytes |  ({args.rows}x{args.columns})")
    print("|---|---|---|---|---|")
    for name, seconds in times.items():
        print(
            f"| {name} | {statistics.median(seconds):.3f} | {min(seconds):.3f} "
            f"| {max(seconds):.3f} | {len(first[name])} |"
        )


if __name__ == "__main__":
    main()

"""Importers: mini-MIAS (images + labels CSV), DICOM folders, CBIS-DDSM (DICOM + case CSVs).

All three end in the same place: de-identified, quality-controlled PNGs plus manifest.csv
(see ``node.datasets.manifest``). One module per format (``mias``, ``dicom``, ``cbis``); what
they share (options, the collector that checks and writes images) is in ``collector``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from node.datasets.importers.cbis import cbis_labels
from node.datasets.importers.collector import Collector, ImportOptions, ImportResult
from node.datasets.importers.dicom import import_dicom, sop_labels
from node.datasets.importers.mias import import_mias
from node.datasets.manifest import (
    MANIFEST,
    Rejection,
    write_dataset_info,
    write_manifest,
    write_rejected,
)
from node.datasets.split import assign_splits
from node.errors import DatasetError

__all__ = ["FORMATS", "ImportOptions", "ImportResult", "run_import", "summarise_rejections"]

FORMATS = ("mias", "dicom", "cbis-ddsm")


def run_import(options: ImportOptions) -> ImportResult:
    """Import, QC, split and write the dataset folder; returns what was accepted and refused."""
    if options.format not in FORMATS:
        raise DatasetError(f"unknown format {options.format!r}; known: {FORMATS}")
    if not options.source.is_dir():
        raise DatasetError(f"source {options.source} is not a folder")
    if (options.out / MANIFEST).exists() and not options.force:
        raise DatasetError(f"{options.out} already holds a dataset (use --force to replace)")
    if options.reid_key is not None and options.out.resolve() in options.reid_key.resolve().parents:
        raise DatasetError("keep the re-identification key outside the dataset folder")
    collector = Collector(options.out)
    if options.format == "mias":
        import_mias(options, collector)
    elif options.format == "dicom":
        lookup = sop_labels(options.labels) if options.labels else None
        import_dicom(options, collector, lookup)
    else:
        csvs = list(options.labels) or sorted(options.source.rglob("*case_description*.csv"))
        if not csvs:
            raise DatasetError("cbis-ddsm needs its case-description CSVs (--labels or in SRC)")
        import_dicom(options, collector, cbis_labels(csvs))
    records = collector.result.records
    if options.val_fraction > 0:
        records = assign_splits(records, options.val_fraction, options.seed)
    else:
        records = [r.with_split("train") for r in records]
    collector.result.records = records
    write_manifest(options.out, records)
    write_rejected(options.out, collector.result.rejected)
    write_dataset_info(
        options.out,
        {
            "id": options.dataset_id,
            "format": options.format,
            "source": options.source.name,
            "imported": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "images": len(records),
            "rejected": len(collector.result.rejected),
            "split": {"val_fraction": options.val_fraction, "seed": options.seed, "by": "patient"},
            "deidentification": "PS3.15 Annex E Basic Profile"
            if options.format != "mias"
            else "none needed (mini-MIAS is anonymous)",
        },
    )
    return collector.result


def summarise_rejections(rejected: Iterable[Rejection]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in rejected:
        counts[item.reason] += 1
    return dict(sorted(counts.items()))

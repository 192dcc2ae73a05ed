"""``mammo-node data import|split|report``: build a dataset folder others can train and evaluate on."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.cli.settings import add_settings_options, settings_from
from node.datasets.importers import FORMATS, ImportOptions, run_import, summarise_rejections
from node.datasets.manifest import (
    DATASET_YAML,
    read_dataset_info,
    read_manifest,
    write_dataset_info,
    write_manifest,
)
from node.datasets.report import format_summary, write_report
from node.datasets.split import assign_splits
from node.errors import DatasetError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``data import|split|report`` to a parent CLI's subcommands."""
    data = subparsers.add_parser(
        "data",
        help="import, split and report datasets (mini-MIAS, DICOM, CBIS-DDSM)",
        description="Build one dataset layout (images/*.png + manifest.csv + rejected.csv + "
        "dataset.yaml) from mini-MIAS, DICOM folders or CBIS-DDSM, for training and evaluation.",
    )
    commands = data.add_subparsers(dest="data_command", required=True)

    fetch = commands.add_parser(
        "fetch",
        help="retrieve studies from a PACS (DICOMweb QIDO-RS + WADO-RS) into a folder to import",
        description="Retrieve every instance of the given studies from a configured DICOMweb "
        "destination (default: the embedded Orthanc) into OUT/study-NNNN/NNNN.dcm. The files "
        "are NOT de-identified yet: run `mammo-node data import OUT --format dicom` next, and "
        "keep OUT on the hospital's side.",
    )
    fetch.add_argument(
        "--from",
        dest="source_name",
        default="orthanc",
        metavar="DEST",
        help="a DICOMweb destination name from the config",
    )
    fetch.add_argument(
        "--study",
        action="append",
        default=[],
        metavar="UID",
        help="StudyInstanceUID to fetch (repeatable)",
    )
    fetch.add_argument(
        "--studies-file",
        type=Path,
        metavar="FILE",
        help="a file with one StudyInstanceUID per line",
    )
    fetch.add_argument(
        "--out", type=Path, required=True, metavar="OUT", help="folder for the fetched files"
    )
    add_settings_options(fetch)
    fetch.set_defaults(handler=cmd_fetch)

    imp = commands.add_parser(
        "import",
        help="import SRC into a dataset folder, with de-identification and quality control",
        description="Import images into DATASET. DICOM is de-identified by the PS3.15 Annex E "
        "Basic Application Level Confidentiality Profile (patient ids become pseudonyms, UIDs "
        "are remapped consistently, dates and names emptied, private tags removed). Quality "
        "control refuses wrong modality, For-Processing, unreadable, blank, saturated and "
        "duplicate images and lists each in DATASET/rejected.csv with its reason.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    imp.add_argument("source", type=Path, metavar="SRC", help="folder to import")
    imp.add_argument("--out", type=Path, required=True, metavar="DATASET", help="dataset folder")
    imp.add_argument(
        "--format",
        choices=FORMATS,
        default="dicom",
        help="mias: images + labels.csv (mini-MIAS layout); dicom: any DICOM files; "
        "cbis-ddsm: DICOM + CBIS-DDSM case-description CSVs. With dicom and cbis-ddsm, "
        "CBIS-DDSM ROI masks under SRC (Patient ID of the image + _n) become lesion masks "
        "(DATASET/masks/) with centre and equivalent radius; crops and masks of another size "
        "than their image go to rejected.csv",
    )
    imp.add_argument(
        "--labels",
        type=Path,
        action="append",
        default=[],
        metavar="CSV",
        help="labels: mias: labels.csv (default SRC/labels.csv); dicom: CSV with "
        "SOPInstanceUID,label[,abnormality,density_acr]; cbis-ddsm: case-description CSVs "
        "(default: *case_description*.csv under SRC). Repeatable.",
    )
    imp.add_argument(
        "--reid-key",
        type=Path,
        metavar="FILE",
        help="write the re-identification key (original id -> pseudonym) here; must lie "
        "outside DATASET. Without it, pseudonyms cannot be reversed.",
    )
    imp.add_argument(
        "--dataset-id", help="id models record as their training data (default: folder name)"
    )
    imp.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="fraction of PATIENTS put in the val split (stratified by label, seeded); 0: all train",
    )
    imp.add_argument("--seed", type=int, default=0, help="split seed")
    imp.add_argument("--keep-dicom", action="store_true", help="also keep the de-identified DICOM")
    imp.add_argument(
        "--clean-descriptors",
        action="store_true",
        help="PS3.15 Clean Descriptors option: keep study/series descriptions minus identifiers",
    )
    imp.add_argument(
        "--modality", action="append", default=[], help="accepted Modality (repeatable; default MG)"
    )
    imp.add_argument(
        "--crop-to-breast",
        action="store_true",
        help="mias: crop each film scan to the breast (largest bright region); lesion "
        "coordinates follow. Makes film look like digital mammograms (chest wall at the edge).",
    )
    imp.add_argument("--force", action="store_true", help="replace an existing dataset's manifest")
    imp.set_defaults(handler=cmd_import)

    split = commands.add_parser(
        "split",
        help="(re)assign patient-level train/val/test splits",
        description="Assign every PATIENT (all her images) to train, val or test, stratified by "
        "her worst label, with a fixed seed. Never by image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    split.add_argument("dataset", type=Path, metavar="DATASET", help="an imported dataset folder")
    split.add_argument(
        "--val-fraction", type=float, default=0.3, help="share of patients in the val split"
    )
    split.add_argument(
        "--test-fraction", type=float, default=0.0, help="share of patients in the test split"
    )
    split.add_argument("--seed", type=int, default=0, help="split seed")
    split.set_defaults(handler=cmd_split)

    report = commands.add_parser(
        "report",
        help="counts by class, severity, density, laterality, view and split, with a plot",
        description="Print counts per label, abnormality, density, laterality, view and split, "
        "warn about imbalance, and write report.json + report.png (into DATASET or --out).",
    )
    report.add_argument(
        "dataset", type=Path, metavar="DATASET", help="an imported dataset folder (data import)"
    )
    report.add_argument("--out", type=Path, help="folder for report.json/png (default DATASET)")
    report.set_defaults(handler=cmd_report)


def cmd_import(args: argparse.Namespace) -> int:
    options = ImportOptions(
        source=args.source,
        out=args.out,
        format=args.format,
        dataset_id=args.dataset_id or args.out.resolve().name,
        labels=args.labels,
        reid_key=args.reid_key,
        val_fraction=args.val_fraction,
        seed=args.seed,
        keep_dicom=args.keep_dicom,
        clean_descriptors=args.clean_descriptors,
        modalities=frozenset(m.upper() for m in args.modality) or frozenset({"MG"}),
        force=args.force,
        crop_to_breast=args.crop_to_breast,
    )
    result = run_import(options)
    print(
        f"imported {len(result.records)} images into {args.out}; rejected "
        f"{len(result.rejected)} {summarise_rejections(result.rejected)} (see rejected.csv)"
    )
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    records = assign_splits(
        read_manifest(args.dataset), args.val_fraction, args.seed, args.test_fraction
    )
    write_manifest(args.dataset, records)
    info = read_dataset_info(args.dataset)
    info["split"] = {
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
        "by": "patient",
    }
    write_dataset_info(args.dataset, info)
    for split in ("train", "val", "test"):
        subset = [r for r in records if r.split == split]
        if subset:
            print(f"{split}: {len(subset)} images, {len({r.patient_id for r in subset})} patients")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if not (args.dataset / DATASET_YAML).is_file():
        raise DatasetError(
            f"{args.dataset} is not an imported dataset (no {DATASET_YAML}); import it "
            f"first: mammo-node data import {args.dataset} --out DATASET --format "
            f"{'|'.join(FORMATS)}, then: mammo-node data report DATASET"
        )
    summary = write_report(args.dataset, args.out)
    print(format_summary(summary))
    print(f"wrote {(args.out or args.dataset) / 'report.png'} and report.json")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """``data fetch``: studies from a PACS into a folder for ``data import``."""
    from node.datasets.pacs import fetch_studies
    from node.errors import ConfigError
    from node.net.dicomweb import DicomWebClient

    studies = list(args.study)
    if args.studies_file is not None:
        studies += [
            line.strip() for line in args.studies_file.read_text().splitlines() if line.strip()
        ]
    if not studies:
        raise ConfigError("give at least one --study UID or a --studies-file")
    settings = settings_from(args)
    destination = settings.destination(args.source_name)
    if destination.kind != "dicomweb":
        raise ConfigError(
            f"{destination.name} is a {destination.kind} destination; fetch needs DICOMweb"
        )
    with DicomWebClient(destination) as client:
        outcome = fetch_studies(client, studies, args.out)
    print(f"fetched {len(outcome.files)} instances into {args.out}")
    for uid in outcome.missing_studies:
        print(f"not found: study {uid}")
    for uid, reason in outcome.failed:
        print(f"failed: {uid}: {reason}")
    return 1 if outcome.missing_studies or outcome.failed else 0

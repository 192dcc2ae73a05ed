"""``mammo-node evaluate``: honest figures of a model on a dataset split it never trained on."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from node.cli.settings import add_settings_options, settings_from
from node.datasets.manifest import read_dataset_info
from node.evaluation import report as rep
from node.evaluation.compare import same_sensitivity
from node.evaluation.run import score_split
from node.training.card import read_model_yaml, write_card, write_model_yaml

HIT_FACTORS = (1.0, 1.5)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``evaluate`` to a parent CLI's subcommands."""
    ev = subparsers.add_parser(
        "evaluate",
        help="AUC (95%% CI), rates at operating points, FROC, calibration; vs a baseline",
        description="Score a dataset split with a model through the node's own predict path "
        "and report: AUC with a patient-level bootstrap 95% CI; sensitivity, specificity, "
        "accuracy, PPV and NPV (Wilson CIs) at the model's operating point and at --threshold; "
        "lesion FROC (a finding hits when within 1x or 1.5x the lesion radius of its centre); "
        "calibration (reliability plot, ECE, Brier); the false positives and negatives side by "
        "side with --baseline. Refuses a split or images the model was trained on. Writes "
        "report.md, report.json, roc.png, froc.png, calibration.png, errors.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ev.add_argument("--model", required=True, help="model id or id/version")
    ev.add_argument("--dataset", type=Path, required=True, help="dataset folder (data import)")
    ev.add_argument("--split", default="val", help="split to evaluate on")
    ev.add_argument("--baseline", help="model id or id/version to compare with")
    ev.add_argument("--out", type=Path, help="report folder (default var/eval/<model>-<split>)")
    add_settings_options(ev, "models_dir")  # the models folder (default: the node's)
    ev.add_argument(
        "--threshold",
        type=float,
        action="append",
        default=[],
        help="extra operating point (repeatable)",
    )
    ev.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ev.add_argument("--device", help="torch device (default: cuda when available)")
    ev.add_argument(
        "--record",
        action="store_true",
        help="write the figures into the model's model.yaml (evaluation.validation) and card",
    )
    ev.set_defaults(handler=cmd_evaluate)


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The flat table the model card shows."""
    op = next(t for t in summary["at_threshold"] if t["model_operating_point"])
    figures: dict[str, Any] = {"auc": summary["auc"]}
    for task, item in summary["auc_by_task"].items():
        figures[f"auc_{task}"] = item
    for key in ("sensitivity", "specificity", "accuracy", "ppv", "npv"):
        figures[f"{key}_at_operating_point"] = op[key]
    figures["ece"] = round(summary["calibration"]["ece"], 4)
    figures["brier"] = round(summary["calibration"]["brier"], 4)
    for key, item in summary["froc"].items():
        for fp, sens in item["sensitivity_at_fp_per_image"].items():
            if fp in ("0.5", "1", "2"):
                figures[f"froc_sensitivity_{key}_at_{fp}_fp_per_image"] = round(sens, 3)
    return figures


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces these figures (recorded in reports and cards)."""
    parts = ["mammo-node", "evaluate", "--model", args.model, "--dataset", str(args.dataset)]
    parts += ["--split", args.split]
    if args.baseline:
        parts += ["--baseline", args.baseline]
    for threshold in args.threshold:
        parts += ["--threshold", str(threshold)]
    parts += ["--bootstrap", str(args.bootstrap), "--seed", str(args.seed)]
    return shlex.join(parts)


def cmd_evaluate(args: argparse.Namespace) -> int:
    models_dir = settings_from(args).models_dir
    command = _command(args)
    model = score_split(models_dir, args.model, args.dataset, args.split, args.device)
    baseline = (
        score_split(models_dir, args.baseline, args.dataset, args.split, args.device)
        if args.baseline
        else None
    )
    summary = rep.summarise(model, args.threshold, args.bootstrap, args.seed, HIT_FACTORS)
    report: dict[str, Any] = {
        "dataset": read_dataset_info(args.dataset)["id"],
        "split": args.split,
        "command": command,
        "bootstrap": args.bootstrap,
        "model": summary,
        "baseline": rep.summarise(baseline, args.threshold, args.bootstrap, args.seed, HIT_FACTORS)
        if baseline
        else None,
        "errors": rep.errors(model, baseline),
        "scores": [
            {"image_id": s.record.image_id, "label": s.record.label, "score": round(s.score, 5)}
            for s in model.scores
        ],
    }
    out = args.out or Path("var/eval") / f"{args.model.replace('/', '-')}-{args.split}"
    rep.write(_round(report), out)
    shown = [m for m in (model, baseline) if m is not None]
    rep.plot_roc(shown, out / "roc.png")
    rep.plot_froc(shown, out / "froc.png", HIT_FACTORS)
    rep.plot_calibration(shown, out / "calibration.png")
    rep.plot_errors(model, report["errors"], args.dataset, out / "errors.png")
    print((out / "report.md").read_text(encoding="utf-8"))
    if args.record:
        spec = read_model_yaml(model.folder.path)
        spec["evaluation"]["validation"] = _round(
            {
                "command": command,
                "dataset_id": report["dataset"],
                "split": args.split,
                "images": summary["images"],
                "patients": summary["patients"],
                "positives": summary["positives"],
                "figures": _figures(summary),
                "baseline": {
                    "model": report["baseline"]["model"],
                    "auc": report["baseline"]["auc"]["value"],
                    "ci": report["baseline"]["auc"]["ci"],
                }
                if report["baseline"]
                else None,
                "comparison": same_sensitivity(model, baseline),
            }
        )
        write_model_yaml(model.folder.path, spec)
        write_card(model.folder.path)
        print(f"recorded in {model.folder.path / 'model.yaml'} and MODEL_CARD.md")
    return 0

"""``mammo-node models ...`` and ``mammo-node feedback ...``: the model lifecycle and the
radiologists' feedback, from the command line (wired into node.cli by ``add_parser``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from node.cli.settings import add_settings_options, settings_from

if TYPE_CHECKING:
    from node.review.feedback import Feedback

RESTART = "A running node switches at its next job (jobs in flight finish first)."


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser(
        "models",
        help="list model versions; promote, roll back, or run one in shadow mode",
        description="The live and shadow models are recorded in <models>/registry.yaml with "
        "the history of every change. A candidate is promoted only when it is not worse than "
        "the live model on the same locked validation set (margins: setting `promotion`).",
    )
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="model versions, live/shadow, evaluation summary")
    add_settings_options(listing, "models_dir", "data_dir")
    listing.add_argument("--json", action="store_true", help="one JSON object per model")
    listing.set_defaults(handler=cmd_models_list)

    promote = actions.add_parser("promote", help="make ID/VERSION the live model")
    add_settings_options(promote, "models_dir", "data_dir")
    promote.add_argument("ref", metavar="ID/VERSION", help="the model version to make live")
    promote.add_argument("--reason", help="why (recorded in the history)")
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote although the rule refuses it (needs --reason; recorded)",
    )
    promote.set_defaults(handler=cmd_models_promote)

    rollback = actions.add_parser("rollback", help="return to the previous live model")
    add_settings_options(rollback, "models_dir", "data_dir")
    rollback.add_argument("--reason", help="why (recorded in the history)")
    rollback.set_defaults(handler=cmd_models_rollback)

    shadow = actions.add_parser(
        "shadow",
        help="run ID/VERSION beside the live model without publishing (or --off)",
        description="Shadow results are stored per job with their agreement with the live "
        "model (GET /api/v1/models, metric mammo_node_shadow_agreement_ratio).",
    )
    add_settings_options(shadow, "models_dir", "data_dir")
    target = shadow.add_mutually_exclusive_group(required=True)
    target.add_argument("ref", nargs="?", metavar="ID/VERSION", help="the model to run in shadow")
    target.add_argument("--off", action="store_true", help="stop shadow mode")
    shadow.add_argument("--reason", help="why (recorded in the history)")
    shadow.set_defaults(handler=cmd_models_shadow)

    feedback = commands.add_parser(
        "feedback",
        help="record a radiologist's verdict on a job's result, or export labels",
        description="`feedback JOB_ID --agree|--disagree [...]` records a verdict on the exam "
        "(or on --finding N, numbered 1..N in image order); `feedback export --out FILE` "
        "writes the labels (UIDs, model version, labels; no names, no comments) as CSV.",
    )
    feedback.add_argument(
        "target", metavar="JOB_ID|export", help="the job to give feedback on, or export"
    )
    verdict = feedback.add_mutually_exclusive_group()
    verdict.add_argument(
        "--agree",
        dest="agree",
        action="store_true",
        default=None,
        help="the result is right (for the exam, or --finding N)",
    )
    verdict.add_argument(
        "--disagree", dest="agree", action="store_false", help="the result is wrong"
    )
    feedback.add_argument("--birads", type=int, help="final BI-RADS assessment, 0-6")
    feedback.add_argument("--pathology", help="pathology outcome: benign, malignant or none")
    feedback.add_argument("--satisfaction", type=int, help="how useful the result was, 1-5")
    feedback.add_argument("--finding", type=int, default=0, help="finding number (0: the exam)")
    feedback.add_argument("--comment", help="free text (kept in the database, never exported)")
    feedback.add_argument("--out", type=Path, help="export: the CSV file to write")
    add_settings_options(feedback, "data_dir")
    feedback.set_defaults(handler=cmd_feedback)


# -- models -------------------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> int:
    from node.models.lifecycle import ModelLifecycle

    lifecycle = ModelLifecycle(settings_from(args).models_dir)
    for entry in lifecycle.models():
        if entry.live:
            warn_if_synthetic(lifecycle.models_dir, entry.ref)
        if args.json:
            print(json.dumps(asdict(entry)))
            continue
        marker = "live" if entry.live else "shadow" if entry.shadow else ""
        print(f"{entry.ref:32s} {marker:6s} {entry.evaluation.describe()}  ({entry.name})")
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    from node.models.lifecycle import ModelLifecycle

    settings = settings_from(args)
    entry = ModelLifecycle(settings.models_dir).promote(
        args.ref, margins=settings.promotion, reason=args.reason, force=args.force
    )
    forced = " (FORCED)" if entry.forced else ""
    print(f"{entry.model} is live{forced}, was {entry.previous}: {entry.reason}. {RESTART}")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from node.models.lifecycle import ModelLifecycle

    entry = ModelLifecycle(settings_from(args).models_dir).rollback(args.reason)
    print(f"{entry.model} is live again, was {entry.previous}. {RESTART}")
    return 0


def cmd_models_shadow(args: argparse.Namespace) -> int:
    from node.models.lifecycle import ModelLifecycle

    entry = ModelLifecycle(settings_from(args).models_dir).set_shadow(
        None if args.off else args.ref, args.reason
    )
    state = f"{entry.model} runs in shadow" if entry.model else "shadow mode is off"
    print(f"{state} (was {entry.previous}). {RESTART}")
    return 0


# -- feedback -----------------------------------------------------------------------------


def cmd_feedback(args: argparse.Namespace) -> int:
    from node.db import create_engine
    from node.errors import InvalidFeedback
    from node.jobs.store import JobStore
    from node.review.feedback import FeedbackStore

    export = args.target == "export"
    if export and args.out is None:
        raise InvalidFeedback("feedback export needs --out FILE")
    if not export:
        if not args.target.isdigit():
            raise InvalidFeedback(f"expected a job number or 'export', got {args.target!r}")
        # The values first: `--birads 9` is wrong whatever else is missing.
        _feedback(args, agree=bool(args.agree))
        if args.agree is None:
            raise InvalidFeedback("say --agree or --disagree")
    settings = settings_from(args)
    engine = create_engine(settings.effective_database_url)
    store = FeedbackStore(engine, JobStore(engine))
    if export:
        rows = store.export_csv(args.out)
        print(f"wrote {rows} label rows to {args.out}", file=sys.stderr)
        return 0
    feedback = _feedback(args, agree=args.agree)
    recorded = store.record(feedback)
    recorded.pop("comment", None)
    print(json.dumps(recorded))
    return 0


def _feedback(args: argparse.Namespace, *, agree: bool) -> Feedback:
    """The feedback the options say; InvalidFeedback names the first wrong value."""
    from node.review.feedback import Feedback

    return Feedback(
        job_id=int(args.target),
        agree=agree,
        finding=args.finding,
        birads=args.birads,
        pathology=args.pathology,
        satisfaction=args.satisfaction,
        comment=args.comment,
    )


def warn_if_synthetic(models_dir: Path, ref: str) -> None:
    """Honest defaults: a synthetic-only live model is said on stderr by every command
    that shows its results or its place."""
    from node.models.registry import find_model
    from node.models.trained_on import synthetic_only_warning

    warning = synthetic_only_warning(find_model(models_dir, ref).spec)
    if warning:
        print(f"mammo-node: WARNING: {warning}", file=sys.stderr)

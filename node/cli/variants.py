"""``mammo-node variants compare``: command-line entry to the predictor comparison."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from node.errors import VariantInputError
from node.variants.dataset import build_dataset, parse_tool_option, resolve_tools
from node.variants.evaluate import Evaluation, Settings, evaluate, evaluate_groups
from node.variants.report import RunInfo, console_table, write_report
from node.variants.table import concatenate, read_variants

DEFAULT_GROUP_COLUMN = "Gene"
_NO_GROUP = "none"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``variants compare`` to a parent CLI's subcommands."""
    variants = subparsers.add_parser(
        "variants",
        help="evaluate in-silico variant pathogenicity predictors",
        description="Evaluate in-silico predictors of variant pathogenicity against truth.",
    )
    commands = variants.add_subparsers(dest="variants_command", required=True)
    compare = commands.add_parser(
        "compare",
        help="compare tools' scores against a truth column (AUC, thresholds, DeLong)",
        description=(
            "Compare in-silico tools on variants with known truth: per tool (and per gene) "
            "coverage, AUC with bootstrap CI, sensitivity/specificity/accuracy/MCC at the "
            "published threshold and at a cross-validated one, DeLong tests of the best "
            "tool against each other tool, and a cross-validated logistic-regression "
            "combination. Prints a ranked table and writes report.md, report.json and "
            "roc.png."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    compare.add_argument(
        "variants",
        nargs="+",
        type=Path,
        metavar="VARIANTS",
        help="CSV (.csv), TSV (.tsv/.txt) or VCF (.vcf, scores in INFO as KEY=VALUE), "
        "optionally gzipped; one row per variant. Several files are stacked (they must all "
        "have the truth, tool and group columns).",
    )
    compare.add_argument(
        "--truth-column",
        required=True,
        metavar="COL",
        help="column (or VCF INFO key) holding the truth, e.g. Call",
    )
    compare.add_argument(
        "--positive",
        required=True,
        metavar="VALUE",
        help="truth value meaning pathogenic/damaging, e.g. Damaging",
    )
    compare.add_argument(
        "--negative",
        action="append",
        default=[],
        metavar="VALUE",
        help="truth value meaning benign/neutral (repeatable). Default: the one other value "
        "in the column; an error lists the values if there are several.",
    )
    compare.add_argument(
        "--ignore-truth",
        action="append",
        default=[],
        metavar="VALUE",
        help="truth value to leave out (e.g. Intermediate); counted under 'excluded'. "
        "Empty, '.', NA cells are always left out and counted.",
    )
    compare.add_argument(
        "--tools",
        nargs="+",
        metavar="COL[:higher|:lower]",
        help="score columns to compare. A built-in table gives direction and published "
        "threshold for dbNSFP tools (SIFT, FATHMM, PROVEAN, LRT: lower = damaging). Other "
        "columns need ':higher' or ':lower'; a direction that differs from the table "
        "drops the published threshold. Default: every column the table knows.",
    )
    compare.add_argument(
        "--group-column",
        metavar="COL",
        help=f"also report per value of this column; default {DEFAULT_GROUP_COLUMN!r} when "
        f"the file has it; '{_NO_GROUP}' turns it off",
    )
    compare.add_argument(
        "--out",
        type=Path,
        default=Path("variants-report"),
        metavar="DIR",
        help="folder for report.md, report.json and roc.png (created if needed)",
    )
    compare.add_argument(
        "--folds",
        type=int,
        default=5,
        help="stratified cross-validation folds (thresholds, combined)",
    )
    compare.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap replicates for the AUC confidence interval",
    )
    compare.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed for folds and bootstrap (results are reproducible)",
    )
    compare.add_argument(
        "--cv-criterion",
        choices=("mcc", "youden"),
        default="mcc",
        help="what the cross-validated threshold maximises on training folds",
    )
    compare.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="significance level for the Holm-adjusted DeLong tests",
    )
    compare.add_argument(
        "--best-min-coverage",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="a tool must score at least this share of variants to be named best",
    )
    compare.add_argument(
        "--l2", type=float, default=1.0, help="L2 penalty of the combined logistic regression"
    )
    compare.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    """Run the comparison; bad input prints one line to stderr and returns 2."""
    try:
        return _run(args)
    except VariantInputError as exc:
        print(f"mammo-node variants compare: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    tables = [read_variants(p) for p in args.variants]
    first = tables[0]
    group = args.group_column
    if group is None:
        group = DEFAULT_GROUP_COLUMN if all(t.has(DEFAULT_GROUP_COLUMN) for t in tables) else None
    elif group == _NO_GROUP:
        group = None
    tools = resolve_tools(first, args.tools)
    needed = [args.truth_column, *(t.column for t in tools), *([group] if group else [])]
    if args.tools:
        needed = [
            args.truth_column,
            *(parse_tool_option(o)[0] for o in args.tools),
            *([group] if group else []),
        ]
    table = concatenate(tables, list(dict.fromkeys(needed)))
    data = build_dataset(
        table,
        args.truth_column,
        args.positive,
        tools,
        args.negative,
        args.ignore_truth,
        group,
    )
    try:
        settings = Settings(
            folds=args.folds,
            n_boot=args.bootstrap,
            seed=args.seed,
            criterion=args.cv_criterion,
            alpha=args.alpha,
            best_min_coverage=args.best_min_coverage,
            l2=args.l2,
            progress=sys.stderr.isatty(),
        )
    except ValueError as exc:
        print(f"mammo-node variants compare: error: {exc}", file=sys.stderr)
        return 2
    overall = evaluate(data, settings)
    groups = evaluate_groups(data, settings)
    run = RunInfo(
        tuple(str(p) for p in args.variants),
        args.truth_column,
        args.positive,
        group,
        _command_line(args),
    )
    print(console_table(overall))
    for g in groups:
        print()
        print(console_table(g))
    paths = write_report(args.out, run, data, overall, groups, settings)
    print()
    _summary(overall)
    print(f"report: {paths['markdown']}  {paths['json']}  {paths['roc']}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as it could be typed again (for the report header)."""
    words = [
        "mammo-node",
        "variants",
        "compare",
        *map(str, args.variants),
        "--truth-column",
        args.truth_column,
        "--positive",
        args.positive,
    ]
    for value in args.negative:
        words += ["--negative", value]
    for value in args.ignore_truth:
        words += ["--ignore-truth", value]
    if args.tools:
        words += ["--tools", *args.tools]
    if args.group_column:
        words += ["--group-column", args.group_column]
    words += [
        "--out",
        str(args.out),
        "--folds",
        str(args.folds),
        "--bootstrap",
        str(args.bootstrap),
        "--seed",
        str(args.seed),
        "--cv-criterion",
        args.cv_criterion,
    ]
    return shlex.join(words)


def _summary(overall: Evaluation) -> None:
    if overall.best is not None:
        tied = [c.other for c in overall.comparisons if not c.significant]
        print(
            f"best single tool: {overall.best}; not significantly different from: "
            f"{', '.join(tied) or 'none'}"
        )
    if overall.combined is not None:
        c = overall.combined
        print(
            f"combined (CV logistic regression): AUC {c.auc:.3f} "
            f"[{c.auc_ci_low:.3f}, {c.auc_ci_high:.3f}]"
        )


def build_parser() -> argparse.ArgumentParser:
    """Stand-alone parser used by ``python -m node.variants``."""
    parser = argparse.ArgumentParser(prog="python -m node.variants")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(["variants", *(argv if argv is not None else sys.argv[1:])])
    return int(args.handler(args))

"""Turn a VariantTable into labelled score arrays, recording every row left out and why."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from node.errors import InsufficientData, NonNumericScore, UnexpectedTruthValues, UnknownDirection
from node.variants.table import MISSING_TOKENS, VariantTable
from node.variants.thresholds import Direction, ToolSpec, lookup

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# dbNSFP joins per-transcript scores with ";" (text) or "," / "&" / "|" (VCF annotators).
_MULTI = re.compile(r"[;,&|]")


@dataclass(frozen=True)
class Exclusion:
    """Rows left out of the whole analysis, e.g. truth unknown."""

    reason: str
    count: int


@dataclass(frozen=True)
class Dataset:
    """Labelled variants: ``labels[i]`` is True for the positive (damaging) class.

    ``scores`` keep the tools' own units with NaN where a tool gave no score; use
    ``oriented`` for "higher means more damaging" values.
    """

    labels: BoolArray
    scores: FloatArray
    tools: tuple[ToolSpec, ...]
    groups: tuple[str, ...] | None
    positive: str
    negatives: tuple[str, ...]
    n_input: int
    excluded: tuple[Exclusion, ...]

    def __post_init__(self) -> None:
        if self.scores.shape != (self.labels.size, len(self.tools)):
            raise ValueError("scores must be (variants, tools)")
        if self.groups is not None and len(self.groups) != self.labels.size:
            raise ValueError("one group value per variant")

    @property
    def n(self) -> int:
        return int(self.labels.size)

    def oriented(self, j: int) -> FloatArray:
        """Tool ``j``'s scores with the sign flipped for "lower is damaging" tools."""
        column = self.scores[:, j]
        return -column if self.tools[j].direction == "lower" else column

    def subset(self, mask: BoolArray) -> Dataset:
        """The variants where ``mask`` is True (used for per-gene analysis)."""
        groups = (
            None
            if self.groups is None
            else tuple(g for g, keep in zip(self.groups, mask, strict=True) if keep)
        )
        return Dataset(
            self.labels[mask],
            self.scores[mask],
            self.tools,
            groups,
            self.positive,
            self.negatives,
            int(mask.sum()),
            (),
        )


def parse_tool_option(option: str) -> tuple[str, Direction | None]:
    """``COL`` or ``COL:higher`` / ``COL:lower`` from ``--tools``."""
    column, sep, direction = option.rpartition(":")
    if not sep:
        return option, None
    if direction not in ("higher", "lower"):
        return option, None  # a column name that itself contains ":"
    return column, "higher" if direction == "higher" else "lower"


def resolve_tools(table: VariantTable, options: Sequence[str] | None) -> tuple[ToolSpec, ...]:
    """Tools to compare: those named (direction from the option or the built-in table),
    or every column of the table that the built-in table knows."""
    if not options:
        found = tuple(spec for c in table.columns if (spec := lookup(c)) is not None)
        if not found:
            raise UnknownDirection(
                f"{table.source}: no column matches the built-in tool table; name score "
                "columns with --tools COL:higher or COL:lower"
            )
        return found
    specs: list[ToolSpec] = []
    unknown: list[str] = []
    for option in options:
        column, direction = parse_tool_option(option)
        table.column(column)
        builtin = lookup(column)
        if direction is None:
            if builtin is None:
                unknown.append(column)
                continue
            specs.append(builtin)
        elif builtin is not None and builtin.direction == direction:
            specs.append(builtin)
        else:
            note = "direction given on the command line"
            if builtin is not None:
                note += f" (overrides built-in {builtin.direction!r}; published cut-off dropped)"
            specs.append(ToolSpec(column, column, direction, note=note))
    if unknown:
        raise UnknownDirection(
            f"no built-in direction for {', '.join(unknown)}; write "
            f"--tools {unknown[0]}:higher (or :lower) to say which way is damaging"
        )
    names = [s.column for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UnknownDirection(f"--tools names {', '.join(twice)} more than once")
    return tuple(specs)


def build_dataset(
    table: VariantTable,
    truth_column: str,
    positive: str,
    tools: Sequence[ToolSpec],
    negatives: Sequence[str] = (),
    ignore: Sequence[str] = (),
    group_column: str | None = None,
) -> Dataset:
    """Labels from the truth column, scores parsed strictly, rows of unknown truth left out."""
    truth = table.column(truth_column)
    keep, negs, excluded = _truth_rows(truth, truth_column, positive, negatives, ignore)
    labels = np.array([truth[i] == positive for i in keep], dtype=bool)
    scores = (
        np.column_stack([_parse_scores(table, spec, keep) for spec in tools])
        if tools
        else np.empty((len(keep), 0))
    )
    groups = None
    if group_column is not None:
        raw = table.column(group_column)
        groups = tuple(raw[i] if raw[i] not in MISSING_TOKENS else "(missing)" for i in keep)
    if labels.size == 0:
        raise InsufficientData(f"{table.source}: no variant has a known truth value")
    return Dataset(
        labels,
        scores.astype(np.float64),
        tuple(tools),
        groups,
        positive,
        negs,
        table.n_rows,
        excluded,
    )


def _truth_rows(
    truth: Sequence[str],
    column: str,
    positive: str,
    negatives: Sequence[str],
    ignore: Sequence[str],
) -> tuple[list[int], tuple[str, ...], tuple[Exclusion, ...]]:
    counts = Counter(truth)
    present = {v for v in counts if v not in MISSING_TOKENS}
    if positive not in present:
        raise UnexpectedTruthValues(
            f"truth column {column!r} never holds the positive value {positive!r}; "
            f"its values are {_listing(counts)}"
        )
    if negatives:
        negs = tuple(negatives)
        unexpected = present - {positive, *negs, *ignore}
    else:
        others = present - {positive, *ignore}
        negs = tuple(sorted(others)) if len(others) == 1 else ()
        unexpected = set() if len(others) == 1 else others
        if not others:
            raise UnexpectedTruthValues(
                f"truth column {column!r} holds only the positive value {positive!r}; "
                "nothing to compare against"
            )
    if unexpected:
        shown = _listing(Counter({v: counts[v] for v in unexpected}))
        raise UnexpectedTruthValues(
            f"truth column {column!r} has values that are neither positive ({positive!r}) "
            f"nor negative ({', '.join(map(repr, negs)) or 'not given'}): {shown}; "
            "name them with --negative VALUE or leave them out with --ignore-truth VALUE"
        )
    keep = [i for i, v in enumerate(truth) if v == positive or v in negs]
    excluded: list[Exclusion] = []
    missing = sum(counts[v] for v in counts if v in MISSING_TOKENS)
    if missing:
        excluded.append(Exclusion(f"truth {column!r} empty or NA", missing))
    for value in ignore:
        if counts.get(value):
            excluded.append(
                Exclusion(f"truth {column!r} = {value!r} (--ignore-truth)", counts[value])
            )
    for value in negs:
        if not counts.get(value):
            raise UnexpectedTruthValues(
                f"truth column {column!r} never holds the negative value {value!r}; "
                f"its values are {_listing(counts)}"
            )
    return keep, negs, tuple(excluded)


def _listing(counts: Counter[str]) -> str:
    return ", ".join(f"{v!r} ({n})" for v, n in sorted(counts.items(), key=lambda x: -x[1]))


def _parse_scores(table: VariantTable, spec: ToolSpec, keep: Sequence[int]) -> FloatArray:
    cells = table.column(spec.column)
    out = np.full(len(keep), np.nan)
    bad: list[str] = []
    for k, i in enumerate(keep):
        value = _parse_cell(cells[i], spec.direction)
        if value is None:
            bad.append(f"row {i + 1}: {cells[i]!r}")
        else:
            out[k] = value
    if bad:
        raise NonNumericScore(
            f"{table.source}: column {spec.column!r} has {len(bad)} non-numeric score(s), "
            f"e.g. {'; '.join(bad[:3])} (missing scores must be empty, '.' or NA)"
        )
    return out


def _parse_cell(cell: str, direction: Direction) -> float | None:
    """A float, NaN for missing, None for garbage; of several values the most damaging."""
    if cell in MISSING_TOKENS:
        return math.nan
    parts = [p.strip() for p in _MULTI.split(cell)] if _MULTI.search(cell) else [cell]
    values: list[float] = []
    for part in parts:
        if part in MISSING_TOKENS:
            continue
        try:
            number = float(part)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        values.append(number)
    if not values:
        return math.nan
    return max(values) if direction == "higher" else min(values)

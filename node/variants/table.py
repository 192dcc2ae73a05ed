"""Reading variant tables (CSV, TSV, or VCF with scores in INFO) into a validated value object.

The reader is tolerant about layout (delimiter sniffed from the extension, ``#`` header line
of VCF, quoted cells) and strict about content: every row has every column, names are unique,
and the table is not empty.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import MissingColumn, VariantFileError

# Cells read as "no value" in scores and truth (dbNSFP writes ".", R writes "NA").
MISSING_TOKENS: frozenset[str] = frozenset({"", ".", "NA", "N/A", "NaN", "nan", "NULL"})

_VCF_FIXED = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER")


@dataclass(frozen=True)
class VariantTable:
    """One row per variant, every cell a string as read; columns keep the file's order."""

    columns: tuple[str, ...]
    cells: Mapping[str, tuple[str, ...]] = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.columns:
            raise VariantFileError(f"{self.source or 'table'}: no columns")
        duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if duplicates:
            raise VariantFileError(f"{self.source}: duplicate column names {', '.join(duplicates)}")
        if set(self.cells) != set(self.columns):
            raise ValueError("cells must hold exactly the named columns")
        lengths = {len(v) for v in self.cells.values()}
        if len(lengths) > 1:
            raise ValueError("every column must have the same number of rows")
        if self.n_rows == 0:
            raise VariantFileError(f"{self.source or 'table'}: no variant rows (empty file?)")

    @property
    def n_rows(self) -> int:
        return len(self.cells[self.columns[0]])

    def column(self, name: str) -> tuple[str, ...]:
        """The cells of ``name``, or MissingColumn naming close matches and the choices."""
        if name not in self.cells:
            raise MissingColumn(_missing_message(name, self.columns, self.source))
        return self.cells[name]

    def has(self, name: str) -> bool:
        return name in self.cells


def _missing_message(name: str, columns: Sequence[str], source: str) -> str:
    close = difflib.get_close_matches(name, columns, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    shown = ", ".join(columns[:40]) + (" ..." if len(columns) > 40 else "")
    return f"column {name!r} not found in {source}{hint} (columns: {shown})"


def read_variants(path: Path) -> VariantTable:
    """Read one file; the format follows the extension (.csv, .tsv/.txt, .vcf, with .gz)."""
    name = path.name.lower().removesuffix(".gz")
    try:
        text = _read_text(path)
    except FileNotFoundError as exc:
        raise VariantFileError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise VariantFileError(f"{path}: cannot read ({exc})") from exc
    if not text.strip():
        raise VariantFileError(f"{path}: the file is empty")
    if name.endswith(".vcf"):
        return _parse_vcf(text, str(path))
    if name.endswith(".csv"):
        return _parse_delimited(text, ",", str(path))
    if name.endswith((".tsv", ".txt", ".tab")):
        return _parse_delimited(text, "\t", str(path))
    raise VariantFileError(
        f"{path}: unknown format; use a .csv, .tsv or .vcf extension (optionally .gz)"
    )


def _read_text(path: Path) -> str:
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8-sig") as handle:
            return handle.read()
    return path.read_text(encoding="utf-8-sig")


def _parse_delimited(text: str, delimiter: str, source: str) -> VariantTable:
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r]
    header, body = rows[0], rows[1:]
    if not body:
        raise VariantFileError(f"{source}: only a header line, no variant rows")
    header = [h.strip() or f"column{i + 1}" for i, h in enumerate(header)]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise VariantFileError(
                f"{source}: line {number} has {len(row)} cells, the header has {len(header)}"
            )
    return _from_rows(header, body, source)


def _from_rows(header: Sequence[str], body: Iterable[Sequence[str]], source: str) -> VariantTable:
    columns = list(zip(*body, strict=True))
    return VariantTable(
        tuple(header),
        {h: tuple(c.strip() for c in col) for h, col in zip(header, columns, strict=True)},
        source,
    )


def _parse_vcf(text: str, source: str) -> VariantTable:
    """Fixed VCF columns plus one column per INFO key (VCF 4.x, one ALT per record)."""
    records: list[dict[str, str]] = []
    keys: dict[str, None] = {}
    saw_header = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("##") or not line.strip():
            continue
        if line.startswith("#"):
            saw_header = True
            continue
        if not saw_header:
            raise VariantFileError(f"{source}: no #CHROM header line before the records")
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 8:
            raise VariantFileError(
                f"{source}: line {number} has {len(parts)} tab-separated fields, VCF needs 8"
            )
        if "," in parts[4]:
            raise VariantFileError(
                f"{source}: line {number} has several ALT alleles; split them first "
                "(bcftools norm -m-)"
            )
        record = dict(zip(_VCF_FIXED, parts[:7], strict=True))
        for item in parts[7].split(";"):
            if not item or item == ".":
                continue
            key, _, value = item.partition("=")
            record[key] = value if _ else "1"  # a Flag is present: "1"
            keys[key] = None
        records.append(record)
    if not records:
        raise VariantFileError(f"{source}: no variant records")
    header = [*_VCF_FIXED, *(k for k in keys if k not in _VCF_FIXED)]
    return _from_rows(header, ([r.get(h, "") for h in header] for r in records), source)


def concatenate(tables: Sequence[VariantTable], needed: Sequence[str]) -> VariantTable:
    """Stack tables on the ``needed`` columns, which every table must have."""
    if len(tables) == 1:
        table = tables[0]
        for name in needed:
            table.column(name)
        return table
    for table in tables:
        for name in needed:
            table.column(name)
    cells = {name: tuple(c for t in tables for c in t.cells[name]) for name in needed}
    return VariantTable(tuple(needed), cells, " + ".join(t.source for t in tables))

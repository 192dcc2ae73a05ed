"""The command line and the input checks: every bad input gives one clear line and exit 2;
an end-to-end run on small hand-made tables and on the real BRCA-ML data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from node.cli.variants import main
from node.errors import (
    MissingColumn,
    NonNumericScore,
    UnexpectedTruthValues,
    UnknownDirection,
    VariantFileError,
    VariantInputError,
)
from node.variants.dataset import build_dataset, resolve_tools
from node.variants.table import read_variants
from node.variants.thresholds import BUILTIN, lookup

DATA = Path(__file__).parent / "data" / "variants"
SMALL = DATA / "small.csv"
BRCA_ML = Path(__file__).parents[2] / "shared/data/brca-ml"
TOOL_KEYS = {"column", "n", "coverage", "auc", "auc_ci_low", "auc_ci_high"}


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args, "--out", str(tmp_path / "out"), "--bootstrap", "200"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- built-in table


def test_builtin_table_covers_every_brca_ml_column_with_a_source() -> None:
    columns = [
        "SiftScore",
        "Polyphen2HdivScore",
        "Polyphen2HvarScore",
        "LrtScore",
        "MutationtasterScore",
        "FathmmScore",
        "ProveanScore",
        "Vest3Score",
        "MetasvmScore",
        "MetalrScore",
        "MCapScore",
        "RevelScore",
        "MutpredScore",
        "CaddRaw",
        "DannScore",
        "FathmmMklCodingScore",
        "GenocanyonScore",
        "IntegratedFitconsScore",
        "Gm12878FitconsScore",
        "H1HescFitconsScore",
        "HuvecFitconsScore",
        "BayesDel",
        "AlignGVGDPrior",
        "EigenRaw",
        "EigenPcRaw",
    ]
    for column in columns:
        spec = lookup(column)
        assert spec is not None, column
        assert spec.source, column
    assert all(s.source for s in BUILTIN)
    assert lookup("SiftScore").direction == "lower"  # type: ignore[union-attr]
    assert lookup("FathmmScore").direction == "lower"  # type: ignore[union-attr]
    assert lookup("RevelScore").direction == "higher"  # type: ignore[union-attr]


def test_dbnsfp_field_names_match_the_table() -> None:
    assert lookup("dbNSFP_SIFT_score").column == "dbNSFP_SIFT_score"  # type: ignore[union-attr]
    assert lookup("Polyphen2_HDIV_score").threshold == 0.5  # type: ignore[union-attr]
    assert lookup("M-CAP_score").threshold == 0.025  # type: ignore[union-attr]
    assert lookup("BayesDel_noAF_score").threshold == -0.0570105  # type: ignore[union-attr]
    assert lookup("not_a_tool") is None


# ---------------------------------------------------------------- reading


def test_read_csv_and_dataset_exclusions() -> None:
    table = read_variants(SMALL)
    tools = resolve_tools(table, ["SiftScore", "RevelScore", "MyScore:higher"])
    data = build_dataset(
        table, "Call", "Damaging", tools, ignore=["Intermediate"], group_column="Gene"
    )
    assert data.n == 12 and data.n_input == 14
    assert data.negatives == ("Neutral",)
    assert {e.reason: e.count for e in data.excluded} == {
        "truth 'Call' empty or NA": 1,
        "truth 'Call' = 'Intermediate' (--ignore-truth)": 1,
    }
    assert int(np.isnan(data.scores[:, 0]).sum()) == 1  # v14 SIFT "."
    assert data.oriented(0)[0] == -0.01  # SIFT: lower is damaging, so flipped


def test_read_vcf_info_scores_and_multi_values(tmp_path: Path) -> None:
    table = read_variants(DATA / "small.vcf")
    assert table.n_rows == 4
    tools = resolve_tools(table, None)  # dbNSFP names found by the built-in table
    assert [t.column for t in tools] == ["dbNSFP_SIFT_score", "REVEL_score"]
    data = build_dataset(table, "Call", "Damaging", tools)
    # "0.3,0.02": of several transcripts' scores the most damaging (SIFT: lowest)
    assert data.scores[1, 0] == 0.02
    assert math.isnan(data.scores[3, 0])


def test_vcf_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, _ = _run(
        tmp_path,
        capsys,
        str(DATA / "small.vcf"),
        "--truth-column",
        "Call",
        "--positive",
        "Damaging",
        "--group-column",
        "genename",
    )
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {t["column"] for t in report["tools"]} == {"dbNSFP_SIFT_score", "REVEL_score"}
    assert report["tools"][0]["auc"] == 1.0


# ---------------------------------------------------------------- bad input -> exit 2


@pytest.mark.parametrize(
    ("content", "name", "args", "expected"),
    [
        ("", "empty.csv", [], "is empty"),
        ("Call,SiftScore\n", "header.csv", [], "only a header line"),
        (
            "Call,SiftScore\nDamaging,0.1\nNeutral,0.5\n",
            "nocol.csv",
            ["--tools", "RevelScore"],
            "column 'RevelScore' not found",
        ),
        (
            "Call,SiftScore\nDamaging,0.1\nNeutral,high\n",
            "text.csv",
            [],
            "'SiftScore' has 1 non-numeric score(s), e.g. row 2: 'high'",
        ),
        (
            "Call,SiftScore\nDamaging,0.1\nNeutral,0.5\nBenign,0.6\nVUS,0.2\n",
            "truth.csv",
            [],
            "neither positive ('Damaging') nor negative",
        ),
        (
            "Call,Foo\nDamaging,0.1\nNeutral,0.5\n",
            "unknown.csv",
            ["--tools", "Foo"],
            "no built-in direction for Foo",
        ),
        ("Call,SiftScore\nDamaging,0.1\nNeutral\n", "ragged.csv", [], "line 3 has 1 cells"),
        ("Call,SiftScore\nDamaging,0.1\n", "data.xlsx", [], "unknown format"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    name: str,
    args: list[str],
    expected: str,
) -> None:
    path = _write(tmp_path, name, content)
    code, _out, err = _run(
        tmp_path, capsys, str(path), "--truth-column", "Call", "--positive", "Damaging", *args
    )
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1 and err.startswith("mammo-node variants compare: error:")
    assert not (tmp_path / "out").exists()


def test_unexpected_truth_values_are_listed_with_counts(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.csv",
        "Call,SiftScore\nDamaging,0.1\nNeutral,0.5\nBenign,0.6\nBenign,0.7\nVUS,0.2\n",
    )
    table = read_variants(path)
    with pytest.raises(UnexpectedTruthValues, match=r"'Benign' \(2\).*'VUS' \(1\)"):
        build_dataset(table, "Call", "Damaging", resolve_tools(table, None), negatives=["Neutral"])
    with pytest.raises(UnexpectedTruthValues, match="never holds the positive value 'Pathogenic'"):
        build_dataset(table, "Call", "Pathogenic", resolve_tools(table, None))


def test_missing_truth_column_and_missing_file(tmp_path: Path) -> None:
    table = read_variants(SMALL)
    with pytest.raises(MissingColumn, match="did you mean Call"):
        build_dataset(table, "call", "Damaging", resolve_tools(table, None))
    with pytest.raises(VariantFileError, match="no such file"):
        read_variants(tmp_path / "absent.csv")
    with pytest.raises(NonNumericScore, match="inf"):
        path = _write(tmp_path, "inf.csv", "Call,SiftScore\nDamaging,inf\nNeutral,0.5\n")
        t = read_variants(path)
        build_dataset(t, "Call", "Damaging", resolve_tools(t, None))


def test_vcf_with_several_alt_alleles_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "multi.vcf",
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\t"
        "QUAL\tFILTER\tINFO\n1\t5\t.\tA\tG,T\t.\t.\tCall=Damaging;SIFT_score=0.1\n",
    )
    with pytest.raises(VariantFileError, match="bcftools norm"):
        read_variants(path)


def test_errors_are_invalid_input() -> None:
    from node.errors import InvalidInput

    for cls in (
        MissingColumn,
        NonNumericScore,
        UnexpectedTruthValues,
        UnknownDirection,
        VariantFileError,
    ):
        assert issubclass(cls, VariantInputError) and issubclass(cls, InvalidInput)


# ---------------------------------------------------------------- end to end


def test_small_table_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        tmp_path,
        capsys,
        str(SMALL),
        "--truth-column",
        "Call",
        "--positive",
        "Damaging",
        "--ignore-truth",
        "Intermediate",
        "--tools",
        "SiftScore",
        "RevelScore",
        "MyScore:higher",
        "--folds",
        "2",
    )
    assert code == 0, err
    assert "BRCA1" in out and "BRCA2" in out and "combined" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["input"]["n_analysed"] == 12 and report["input"]["group_column"] == "Gene"
    tools = {t["column"]: t for t in report["tools"]}
    # REVEL on the 12 labelled rows: positives .9 .8 .4 .95 .7 .85 vs negatives
    # .3 .6 .1 .2 .55 .05 -> only .4 loses, to .6 and .55: AUC = (36 - 2) / 36
    assert tools["RevelScore"]["auc"] == pytest.approx(34 / 36)
    assert tools["RevelScore"]["published_threshold"]["tp"] == 5  # >= 0.5 catches all but .4
    assert tools["SiftScore"]["n"] == 11 and tools["SiftScore"]["coverage"] == pytest.approx(
        11 / 12
    )
    assert tools["MyScore"]["published_threshold"] is None
    assert set(report["groups"]) == {"BRCA1", "BRCA2"}
    assert (tmp_path / "out" / "roc.png").stat().st_size > 1000
    assert "## Excluded" in (tmp_path / "out" / "report.md").read_text()


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--truth-column",
        "--positive",
        "--negative",
        "--ignore-truth",
        "--tools",
        "--group-column",
        "--out",
        "--folds",
        "--bootstrap",
        "--seed",
        "--cv-criterion",
        "--alpha",
        "--best-min-coverage",
        "--l2",
    ):
        assert option in text


@pytest.mark.skipif(not BRCA_ML.is_dir(), reason=f"BRCA-ML data not found at {BRCA_ML}")
def test_real_brca_ml_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run(
        tmp_path,
        capsys,
        str(BRCA_ML / "BRCA1_variants_24tools.csv"),
        str(BRCA_ML / "BRCA2_variants_24tools.csv"),
        "--truth-column",
        "Call",
        "--positive",
        "Damaging",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["input"]["n_analysed"] == 1673
    assert len(report["tools"]) == 25
    for tool in report["tools"]:
        assert TOOL_KEYS <= set(tool)
        assert 0 < tool["coverage"] <= 1
        assert tool["auc_ci_low"] <= tool["auc"] <= tool["auc_ci_high"]
    by_column = {t["column"]: t for t in report["tools"]}
    assert by_column["MutpredScore"]["n"] == 613
    assert by_column["SiftScore"]["auc"] > 0.8  # lower-is-damaging applied
    assert report["best"] in by_column
    assert report["comparisons"] and all("p_holm" in c for c in report["comparisons"])
    assert report["combined"]["auc"] > 0.85
    assert set(report["groups"]) == {"BRCA1", "BRCA2"}
    assert report["groups"]["BRCA2"]["n"] == 161

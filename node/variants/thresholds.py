"""Built-in table of score directions and published thresholds for dbNSFP-style tools.

Keys are the column names of the BRCA-ML tables (``tool_score_columns.txt``); the dbNSFP
field names (``SIFT_score``, ``Polyphen2_HDIV_score`` ...) and SnpSift's ``dbNSFP_`` prefix
match too, because lookups compare names with case and punctuation removed.

Sources, cited per entry below:
- dbNSFP README (Liu X et al., Hum Mutat 2011;32:894 and 2016;37:235; v3.x/v4.x field
  descriptions: ``*_pred`` rules and "the smaller/larger the score the more damaging").
- The tool's own paper where dbNSFP gives no cut-off.
A tool with no published cut-off on the score as stored (e.g. CADD raw: cut-offs are on the
PHRED scale) has ``threshold=None``: it is then only compared by AUC and a CV threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Direction = Literal["higher", "lower"]
Comparison = Literal[">", ">=", "<", "<="]

_DIRECTION_OF: dict[Comparison, Direction] = {
    ">": "higher",
    ">=": "higher",
    "<": "lower",
    "<=": "lower",
}


@dataclass(frozen=True)
class ToolSpec:
    """How to read one tool's score: which way is damaging and its published cut-off."""

    column: str
    tool: str
    direction: Direction
    threshold: float | None = None
    comparison: Comparison | None = None  # damaging if ``score <comparison> threshold``
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"{self.column}: direction must be 'higher' or 'lower'")
        if (self.threshold is None) != (self.comparison is None):
            raise ValueError(f"{self.column}: threshold and comparison go together")
        if self.comparison is not None and _DIRECTION_OF[self.comparison] != self.direction:
            raise ValueError(
                f"{self.column}: comparison {self.comparison!r} contradicts direction "
                f"{self.direction!r}"
            )

    @property
    def rule(self) -> str:
        """The published rule as text, e.g. ``< 0.05``; empty when there is none."""
        if self.threshold is None or self.comparison is None:
            return ""
        return f"{self.comparison} {self.threshold:g}"


_DBNSFP = "dbNSFP README (Liu et al. 2016, Hum Mutat 37:235)"

BUILTIN: tuple[ToolSpec, ...] = (
    # SIFT_pred: D if SIFTori < 0.05 (dbNSFP README; Ng & Henikoff 2003, NAR 31:3812).
    ToolSpec("SiftScore", "SIFT", "lower", 0.05, "<", f"{_DBNSFP}; Ng & Henikoff 2003"),
    # Polyphen2_*_pred: "Score cutoff for binary classification is 0.5" (dbNSFP README;
    # Adzhubei et al. 2010, Nat Methods 7:248).
    ToolSpec("Polyphen2HdivScore", "PolyPhen-2 HDIV", "higher", 0.5, ">", _DBNSFP),
    ToolSpec("Polyphen2HvarScore", "PolyPhen-2 HVAR", "higher", 0.5, ">", _DBNSFP),
    # LRT_score is the two-sided p-value; LRT_pred "is not solely determined by the score"
    # (also needs Omega < 1 and alignment depth; Chun & Fay 2009, Genome Res 19:1553).
    ToolSpec(
        "LrtScore",
        "LRT",
        "lower",
        source=_DBNSFP,
        note="score is a p-value; the published call also needs Omega, so no cut-off",
    ),
    # MutationTaster_score is the probability of MutationTaster's own call (disease or
    # polymorphism), so it is not monotone in damage without MutationTaster_pred; dbNSFP
    # flips it by the call for its rankscore. Read as "higher = damaging" with that caveat.
    ToolSpec(
        "MutationtasterScore",
        "MutationTaster",
        "higher",
        source=_DBNSFP,
        note="probability of the tool's own call; not monotone without MutationTaster_pred",
    ),
    # FATHMM_pred: D if FATHMMori <= -1.5 (dbNSFP README; Shihab et al. 2013, Hum Mutat 34:57).
    ToolSpec("FathmmScore", "FATHMM", "lower", -1.5, "<=", f"{_DBNSFP}; Shihab 2013"),
    # PROVEAN_pred: D if PROVEANori <= -2.5 (dbNSFP README; Choi et al. 2012, PLoS ONE 7:e46688).
    ToolSpec("ProveanScore", "PROVEAN", "lower", -2.5, "<=", f"{_DBNSFP}; Choi 2012"),
    # VEST3_score: "the larger the score the more likely ... functional change"; no cut-off
    # (Carter et al. 2013, BMC Genomics 14(S3):S3).
    ToolSpec("Vest3Score", "VEST3", "higher", source=_DBNSFP),
    # MetaSVM_pred cut-off 0, MetaLR_pred cut-off 0.5 (dbNSFP README; Dong et al. 2015,
    # Hum Mol Genet 24:2125).
    ToolSpec("MetasvmScore", "MetaSVM", "higher", 0.0, ">", f"{_DBNSFP}; Dong 2015"),
    ToolSpec("MetalrScore", "MetaLR", "higher", 0.5, ">", f"{_DBNSFP}; Dong 2015"),
    # M-CAP_pred: D if score > 0.025 (Jagadeesh et al. 2016, Nat Genet 48:1581).
    ToolSpec("MCapScore", "M-CAP", "higher", 0.025, ">", f"{_DBNSFP}; Jagadeesh 2016"),
    # REVEL: no *_pred in dbNSFP; the paper reports performance at 0.5 (Ioannidis et al.
    # 2016, Am J Hum Genet 99:877).
    ToolSpec("RevelScore", "REVEL", "higher", 0.5, ">=", "Ioannidis et al. 2016"),
    # MutPred (v1) score is the probability of a deleterious substitution; 0.5 is the
    # classification cut-off of the paper (Li et al. 2009, Bioinformatics 25:2744).
    ToolSpec("MutpredScore", "MutPred", "higher", 0.5, ">=", "Li et al. 2009"),
    # CADD raw: larger = more damaging; published cut-offs (e.g. 20) are on the PHRED scale
    # (Kircher et al. 2014, Nat Genet 46:310).
    ToolSpec(
        "CaddRaw",
        "CADD (raw)",
        "higher",
        source=_DBNSFP,
        note="cut-offs are published on the PHRED scale only",
    ),
    # DANN: larger = more damaging; no cut-off (Quang et al. 2015, Bioinformatics 31:761).
    ToolSpec("DannScore", "DANN", "higher", source=_DBNSFP),
    # fathmm-MKL_coding_pred: D if score >= 0.5 (dbNSFP README; Shihab et al. 2015,
    # Bioinformatics 31:1536).
    ToolSpec("FathmmMklCodingScore", "FATHMM-MKL", "higher", 0.5, ">=", f"{_DBNSFP}; Shihab 2015"),
    # GenoCanyon: posterior probability of being functional; no cut-off in dbNSFP
    # (Lu et al. 2015, Sci Rep 5:10576).
    ToolSpec("GenocanyonScore", "GenoCanyon", "higher", source=_DBNSFP),
    # fitCons: probability of fitness consequence, larger = more functional; no cut-off
    # (Gulko et al. 2015, Nat Genet 47:276).
    ToolSpec("IntegratedFitconsScore", "fitCons (integrated)", "higher", source=_DBNSFP),
    ToolSpec("Gm12878FitconsScore", "fitCons (GM12878)", "higher", source=_DBNSFP),
    ToolSpec("H1HescFitconsScore", "fitCons (H1-hESC)", "higher", source=_DBNSFP),
    ToolSpec("HuvecFitconsScore", "fitCons (HUVEC)", "higher", source=_DBNSFP),
    # BayesDel: larger = more damaging (Feng 2017, Hum Mutat 38:243). dbNSFP gives
    # 0.0692655 for BayesDel_addAF and -0.0570105 for BayesDel_noAF; the BRCA-ML column does
    # not say which one it is, so no cut-off for it (the explicit dbNSFP names have one).
    ToolSpec(
        "BayesDel",
        "BayesDel",
        "higher",
        source="Feng 2017",
        note="version (addAF/noAF) not stated, so no cut-off",
    ),
    ToolSpec(
        "BayesDelAddafScore", "BayesDel addAF", "higher", 0.0692655, ">", f"{_DBNSFP} v4; Feng 2017"
    ),
    ToolSpec(
        "BayesDelNoafScore", "BayesDel noAF", "higher", -0.0570105, ">", f"{_DBNSFP} v4; Feng 2017"
    ),
    # Align-GVGD prior probability of pathogenicity for BRCA1/2 (Tavtigian et al. 2008,
    # J Med Genet 45:425; values 0.03/0.29/0.66/0.81 by class C0 ... C65). A prior above 0.5
    # (classes C35-C65) means pathogenic is more likely than not.
    ToolSpec("AlignGVGDPrior", "Align-GVGD prior", "higher", 0.5, ">", "Tavtigian et al. 2008"),
    # Eigen / Eigen-PC raw: larger = more damaging; no cut-off (Ionita-Laza et al. 2016,
    # Nat Genet 48:214).
    ToolSpec("EigenRaw", "Eigen (raw)", "higher", source=_DBNSFP),
    ToolSpec("EigenPcRaw", "Eigen-PC (raw)", "higher", source=_DBNSFP),
)

# dbNSFP field names whose squashed form differs from the BRCA-ML column name.
_ALIASES: dict[str, str] = {
    "eigenrawcoding": "EigenRaw",
    "eigenpcrawcoding": "EigenPcRaw",
    "bayesdeladdafscore": "BayesDelAddafScore",
    "bayesdelnoafscore": "BayesDelNoafScore",
    "fathmmmklcodingscore": "FathmmMklCodingScore",
}


def squash(name: str) -> str:
    """Compare column names without case, punctuation or SnpSift's ``dbNSFP_`` prefix."""
    key = re.sub(r"[^0-9a-z]", "", name.lower())
    return key.removeprefix("dbnsfp")


_BY_KEY: dict[str, ToolSpec] = {squash(spec.column): spec for spec in BUILTIN}


def lookup(column: str) -> ToolSpec | None:
    """The built-in spec for a column (renamed to that column), or None if unknown."""
    key = squash(column)
    spec = _BY_KEY.get(key)
    if spec is None and key in _ALIASES:
        spec = _BY_KEY[squash(_ALIASES[key])]
    if spec is None:
        return None
    return ToolSpec(
        column,
        spec.tool,
        spec.direction,
        spec.threshold,
        spec.comparison,
        spec.source,
        spec.note,
    )

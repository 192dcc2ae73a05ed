"""Comparison of in-silico predictors of variant pathogenicity (e.g. BRCA1/BRCA2 missense).

Public API: read a table, build a labelled dataset, evaluate, write the report.
"""

from node.errors import (
    InsufficientData,
    MissingColumn,
    NonNumericScore,
    UnexpectedTruthValues,
    UnknownDirection,
    VariantFileError,
    VariantInputError,
)
from node.stats.delong import DelongResult, delong_test
from node.stats.roc import auc, bootstrap_auc_ci, mcc
from node.variants.dataset import Dataset, build_dataset, resolve_tools
from node.variants.evaluate import Evaluation, Settings, evaluate, evaluate_groups
from node.variants.table import VariantTable, read_variants
from node.variants.thresholds import BUILTIN, ToolSpec, lookup

__all__ = [
    "BUILTIN",
    "Dataset",
    "DelongResult",
    "Evaluation",
    "InsufficientData",
    "MissingColumn",
    "NonNumericScore",
    "Settings",
    "ToolSpec",
    "UnexpectedTruthValues",
    "UnknownDirection",
    "VariantFileError",
    "VariantInputError",
    "VariantTable",
    "auc",
    "bootstrap_auc_ci",
    "build_dataset",
    "delong_test",
    "evaluate",
    "evaluate_groups",
    "lookup",
    "mcc",
    "read_variants",
    "resolve_tools",
]

"""Errors for bad variant input; each says what is wrong and how to fix it in one line."""

from __future__ import annotations

from node.errors import InvalidInput


class VariantInputError(InvalidInput):
    """Base of every error the variant comparison raises about its input."""


class VariantFileError(VariantInputError):
    """The file cannot be read, is empty, or is in a format we do not read."""


class MissingColumn(VariantInputError):
    """A column named on the command line is not in the file."""


class NonNumericScore(VariantInputError):
    """A tool score cell holds something that is neither a number nor a missing marker."""


class UnexpectedTruthValues(VariantInputError):
    """The truth column holds values that are neither the positive nor a negative value."""


class UnknownDirection(VariantInputError):
    """A score column is not in the built-in table and no direction was given for it."""


class InsufficientData(VariantInputError):
    """Too few labelled variants (or only one class) to compute the comparison."""

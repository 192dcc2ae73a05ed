"""The exception tree: every error the node raises on purpose, in one place.

A job retries on ``RetryableError`` and fails for good on ``FinalError``; the API maps each
branch to one HTTP status (``node.api.errors``); the CLI prints the message and exits 1.
Foreign exceptions (httpx, pynetdicom, pydicom, SQLAlchemy) are translated once, where they
enter (``node.net``, ``node.dicom``, the stores), never caught broadly elsewhere.

    MammoNodeError
    ├── ConfigError                  settings invalid (start-up only)
    ├── InvalidTransition            a state move the transition table forbids
    ├── NotFound                     no such job, delivery, study, destination, model entry
    ├── Conflict                     the request contradicts the current state
    │   └── LeaseLost                another worker took the job over
    ├── RetryableError               transient: tried again with backoff
    │   └── PeerUnavailable          a DICOM/HTTP peer down, timed out, 5xx
    ├── FinalError                   can never succeed: fails for good, with the reason
    │   ├── InvalidInput             a DICOM object or image file the node cannot use
    │   ├── StageTimedOut            a job's stage ran past stage_timeout_seconds
    │   │   └── VariantInputError    variant comparison input (file, columns, scores, truth)
    │   │       ├── VariantFileError, MissingColumn, NonNumericScore,
    │   │       └── UnexpectedTruthValues, UnknownDirection, InsufficientData
    │   ├── ModelNotFound            no model folder matches id / version
    │   ├── DatasetError             a dataset folder, manifest or source unusable
    │   ├── TrainingError            a training config or run that cannot go on
    │   └── EvaluationRefused        an evaluation that would be dishonest or impossible
    ├── LifecycleError               a model lifecycle command that cannot be carried out
    │   ├── PromotionRefused         the candidate is worse, or not comparable
    │   └── InvalidRegistryFile      registry.yaml malformed (also a ValueError)
    ├── InvalidModelConfig           a model.yaml that does not describe a usable model (also a ValueError)
    └── InvalidFeedback              feedback that cannot be recorded (also a ValueError)
        └── JobNotReviewable         the job has no result to review
"""

from __future__ import annotations


class MammoNodeError(Exception):
    """Base of every error the node raises on purpose."""


class ConfigError(MammoNodeError):
    """The settings are invalid; raised at start-up, never later."""


class InvalidTransition(MammoNodeError):
    """A job or delivery was asked to move between states its transition table does not connect."""


class NotFound(MammoNodeError):
    """The named thing (job, delivery, study, destination) does not exist."""


class Conflict(MammoNodeError):
    """The request contradicts the current state (e.g. requeue of a running job)."""


class LeaseLost(Conflict):
    """Another worker took the job over (our lease expired): stop working on it."""


class RetryableError(MammoNodeError):
    """A transient fault (a peer down, a timeout): the job is tried again with backoff."""


class PeerUnavailable(RetryableError):
    """A DICOM or HTTP peer did not answer or answered with a server error."""


class FinalError(MammoNodeError):
    """The input can never succeed (corrupt file, unsupported image): the job fails for good."""


class InvalidInput(FinalError):
    """A DICOM object or image file the node cannot use, with the reason."""


class StageTimedOut(FinalError):
    """A stage of a job ran past its time limit: the job fails so others are not held up."""


class ModelNotFound(FinalError):
    """No model folder matches the requested model id / version."""


class DatasetError(FinalError):
    """A dataset folder, manifest or source that cannot be used, with the reason."""


class TrainingError(FinalError):
    """A training config or run that cannot go on, with the reason."""


class EvaluationRefused(FinalError):
    """The evaluation would be dishonest (images the model trained on) or impossible."""


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


class LifecycleError(MammoNodeError):
    """A lifecycle command that cannot be carried out; the message says why."""


class PromotionRefused(LifecycleError):
    """The candidate is worse than the live model, or the two cannot be compared."""


class InvalidRegistryFile(LifecycleError, ValueError):
    """registry.yaml is missing or malformed; the message names the file and field."""


class InvalidModelConfig(MammoNodeError, ValueError):
    """A model.yaml that does not describe a usable model; the message names file and field."""


class InvalidFeedback(MammoNodeError, ValueError):
    """Feedback that cannot be recorded; the message names the field and what is allowed."""


class JobNotReviewable(InvalidFeedback):
    """The job has no result to give feedback on (not done)."""

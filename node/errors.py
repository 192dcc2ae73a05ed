"""The exception tree. A job retries on RetryableError and fails for good on FinalError."""

from __future__ import annotations


class MammoNodeError(Exception):
    """Base of every error the node raises on purpose."""


class ConfigError(MammoNodeError):
    """The settings are invalid; raised at start-up, never later."""


class RetryableError(MammoNodeError):
    """A transient fault (a peer down, a timeout): the job is tried again with backoff."""


class FinalError(MammoNodeError):
    """The input can never succeed (corrupt file, unsupported image): the job fails for good."""


class InvalidTransition(MammoNodeError):
    """A job was asked to move between states the state machine does not connect."""


class PeerUnavailable(RetryableError):
    """A DICOM or HTTP peer did not answer or answered with a server error."""


class InvalidInput(FinalError):
    """A DICOM object or image file the node cannot use, with the reason."""


class ModelNotFound(FinalError):
    """No model folder matches the requested model id / version."""

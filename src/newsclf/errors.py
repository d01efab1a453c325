"""Exceptions that carry a message meant for the person at the terminal.

The library raises these; only the CLI turns them into exit codes.
"""

from __future__ import annotations


class NewsclfError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = 1


class InputError(NewsclfError):
    """A data file is missing, malformed or lacks what was asked for."""

    exit_code = 2


class ModelError(NewsclfError):
    """A model or export folder is missing, incomplete or of the wrong kind."""

    exit_code = 3


class OfflineError(NewsclfError):
    """The model hub (or the dataset hub) cannot be reached."""

    exit_code = 4


class ParityError(NewsclfError):
    """An ONNX export disagrees with the PyTorch model it came from."""

    exit_code = 5


class ProviderError(NewsclfError):
    """An execution provider that was asked for does not really work here."""

    exit_code = 6


class SearchError(NewsclfError):
    """A hyperparameter search in which no trial completed (all pruned or failed)."""

    exit_code = 7

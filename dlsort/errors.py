"""Errors dlsort raises for bad input, and small checks shared by every stage."""

from __future__ import annotations

from collections.abc import Iterable

# The values of ``peak_sign`` every stage accepts.
PEAK_SIGNS = ("neg", "pos", "both")


class DlsortInputError(ValueError):
    """The input (recording, parameters, device) cannot be sorted; the message says why and how to fix it."""


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """Raise :class:`DlsortInputError` unless ``value`` is one of ``choices``.

    Parameters
    ----------
    name : str
        Parameter name used in the message.
    value : object
        Given value.
    choices : iterable of str
        Allowed values.
    """
    allowed = list(choices)
    if value not in allowed:
        raise DlsortInputError(f"{name}={value!r} is not available; choose one of {allowed}")

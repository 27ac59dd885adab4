"""The signal-type abstraction: one class per kind of signal, in the manner of python-threatexchange's
``SignalType`` (``threatexchange/signal_type/signal_base.py``).

Where it sits: the base of :mod:`vmatch.signals.registry`, which holds the concrete types (md5,
sha1, pdq, vpdq, cnn) and the name -> class mapping. A signal type is never instantiated: it is a
namespace of class attributes (its name, its role, the numbers of its match rule) and classmethods
(validate a value, compare two, compute one from a file), so there is no state to share or mutate.
Code elsewhere asks the registry for the type instead of branching on its name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vmatch.errors import UsageError

__all__ = ["HashComparison", "SignalType"]


@dataclass(frozen=True)
class HashComparison:
    """Result of :meth:`SignalType.compare` (python-threatexchange's ``HashComparisonResult``).

    Attributes:
        match: whether the two values match by the type's rule.
        score: the score a :class:`~vmatch.types.Match` of this signal carries: 1.0 for equal
            exact digests, ``1 - distance / 256`` for PDQ, the query match percent / 100 for vPDQ.
        details: what a match report shows of the comparison (``{"distance": ...}`` for PDQ, the
            two match percentages for vPDQ), empty when there is nothing more.
    """

    match: bool
    score: float
    details: Mapping[str, Any] = field(default_factory=dict)


class SignalType:
    """One kind of signal; subclasses set the class attributes and override what they support.

    Attributes:
        name: the signal type's name in hash lists, the CLI, the service and match reports
            (``Match.signal_type``), python-threatexchange's where it has one.
        label: how messages name it (``"SHA-1"``, ``"vPDQ"``).
        exact: a digest of the file's bytes: equal values are the same file, so a match covers
            the whole video on both sides.
        in_lists: one value per line of the ``<signal_type> <value> <id>`` hash lists that
            ``vmatch import`` / ``export`` / ``lookup`` and the service read and write.
        stored: a bank keeps its values (``import`` / ``export --signal-type``); the CNN signal is
            kept as the bank's frame index instead.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    exact: ClassVar[bool] = False
    in_lists: ClassVar[bool] = False
    stored: ClassVar[bool] = False

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is a signal type: use its class attributes and classmethods")

    @classmethod
    def normalize(cls, value: Any) -> Any:
        """The canonical form of a user-supplied value (python-threatexchange's
        ``validate_signal_str``); :class:`~vmatch.errors.UsageError` naming the value otherwise."""
        raise UsageError(f"{cls.label} values cannot be given as a value")

    @classmethod
    def compare(cls, a: Any, b: Any) -> HashComparison:
        """Compare two values of this type by its match rule."""
        raise UsageError(f"{cls.label} signals are not compared value to value")

    @classmethod
    def hash_file(cls, path: str | os.PathLike[str], **options: Any) -> Any:
        """This signal of a file."""
        raise UsageError(f"{cls.label} signals are not computed from a file alone")

"""Vertebra names and the VerSe label numbers every part of the package uses.

VerSe 2019/2020 numbers vertebrae 1-7 = C1-C7, 8-19 = T1-T12, 20-25 = L1-L6 and 28 = T13 (a thirteenth
thoracic vertebra; 26 and 27, sacrum and coccyx, are not labelled in VerSe). The RSNA-2022 segmentations use
the same numbers for C1-T12 and the phantom generator draws T4 (11) ... L5 (24) with them, so vertebra maps
from every source can be read with this one table.
"""
from __future__ import annotations

from typing import Union

VERTEBRA_LABELS: dict[str, int] = {
    **{f"C{i}": i for i in range(1, 8)},
    **{f"T{i}": 7 + i for i in range(1, 13)},
    **{f"L{i}": 19 + i for i in range(1, 7)},
    "T13": 28,
}
"""Vertebra name (upper case) -> VerSe label number."""

LABEL_NAMES: dict[int, str] = {label: name for name, label in VERTEBRA_LABELS.items()}
"""VerSe label number -> vertebra name."""


def vertebra_name(label: int) -> str:
    """Return the name of a VerSe label number.

    Args:
        label: a VerSe label number, e.g. 20.

    Returns:
        The vertebra name, e.g. ``"L1"``.

    Raises:
        ValueError: if ``label`` is not a VerSe vertebra label.
    """
    try:
        return LABEL_NAMES[int(label)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"{label!r} is not a VerSe vertebra label (1-25 or 28)") from None


def vertebra_label(name: str) -> int:
    """Return the VerSe label number of a vertebra name (case-insensitive, surrounding spaces ignored).

    Args:
        name: a vertebra name such as ``"L1"``, ``"t13"`` or ``" c2 "``.

    Returns:
        The VerSe label number, e.g. 20 for L1.

    Raises:
        ValueError: if ``name`` is not a known vertebra name.
    """
    key = str(name).strip().upper()
    if key not in VERTEBRA_LABELS:
        raise ValueError(f"{name!r} is not a vertebra name (C1-C7, T1-T13, L1-L6)")
    return VERTEBRA_LABELS[key]


def parse_vertebra(value: Union[str, int]) -> int:
    """Read a vertebra given either as a VerSe label number (``20``, ``"20"``) or as a name (``"L1"``).

    Args:
        value: the label number or the name.

    Returns:
        The VerSe label number.

    Raises:
        ValueError: if ``value`` is neither a known label number nor a known name.
    """
    text = str(value).strip()
    if text.isdigit():
        label = int(text)
        if label not in LABEL_NAMES:
            raise ValueError(f"{value!r} is not a VerSe vertebra label (1-25 or 28)")
        return label
    try:
        return vertebra_label(text)
    except ValueError:
        raise ValueError(f"{value!r} is neither a VerSe vertebra label (1-25, 28) nor a vertebra name "
                         "(C1-C7, T1-T13, L1-L6)") from None

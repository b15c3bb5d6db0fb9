"""Resource quantities (``100m``, ``1.5Gi``, ``2``, ``1e3``), parsed to exact decimals.

Manifests keep quantities as written (a string, or a number in YAML); this module turns
one into a number for comparisons, scheduling and cgroup limits.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
QUANTITY_ERROR = f"quantities must match the regular expression '{QUANTITY_PATTERN}'"

_QUANTITY = re.compile(QUANTITY_PATTERN)
_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_EXPONENT = re.compile(r"^[eE]([-+]?[0-9]+)$")


def parse_quantity(value: str | int | float) -> Decimal:
    """The value of a quantity in base units: ``"100m"`` -> 0.1, ``"1Ki"`` -> 1024.

    Raises ``ValueError`` with Kubernetes' message when ``value`` is not a quantity.
    """
    if isinstance(value, bool):
        raise ValueError(QUANTITY_ERROR)
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = value.strip() if isinstance(value, str) else ""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(QUANTITY_ERROR)
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation:
        raise ValueError(QUANTITY_ERROR) from None
    if suffix in _SUFFIXES:
        return base * _SUFFIXES[suffix]
    exponent = _EXPONENT.match(suffix)
    if exponent:
        return base * (Decimal(10) ** int(exponent.group(1)))
    raise ValueError(QUANTITY_ERROR)


def is_quantity(value: object) -> bool:
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False
    return True


__all__ = ["QUANTITY_ERROR", "is_quantity", "parse_quantity"]

"""The ``conformance()`` method of the built-in controllers, in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def scenarios(function: str) -> Callable[[Any], list[Any]]:
    """A controller's ``conformance()``: the scenarios ``function`` of
    :mod:`kcore.plugins.controllers.conformance` makes, imported only when the controller
    conformance suite asks (that module needs pytest)."""

    def conformance(self: Any) -> list[Any]:
        """Scenarios for the controller conformance suite (:mod:`kcore.conformance`)."""
        from kcore.plugins.controllers import conformance as module

        return getattr(module, function)()

    return conformance


__all__ = ["scenarios"]

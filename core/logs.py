"""Logging set-up. Only the ``kcore`` command calls :func:`configure`; libraries and
plugins just ``structlog.get_logger()`` and bind context (``pod``, ``namespace``, ``plugin``)."""

from __future__ import annotations

import logging
import sys

import msgspec
import structlog


def configure(fmt: str = "auto", level: str = "info") -> None:
    """Render JSON when not on a terminal (or ``fmt="json"``), readable lines otherwise.

    Standard-library loggers (aiohttp, grpc, ...) go through the same renderer.
    """
    json_out = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer(serializer=lambda o, **_: msgspec.json.encode(o).decode())
        if json_out
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

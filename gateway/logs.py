"""Structured logging: structlog configured once, JSON or console.

Request ids are bound into contextvars by the request middleware, so every line logged while
handling a request carries it. Tracebacks never include local variables (they may hold keys
or card data), and every rendered line, ours and the libraries', has anything that looks like
a card number masked (13 to 19 digits, spaces or dashes between, passing the Luhn check): a
caller can put one anywhere, even in a URL path."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from gateway.settings import LogFormat


def configure_logging(
    fmt: LogFormat | None, level: str = "info", *, process: int | None = None
) -> None:
    """Configure structlog and the stdlib root logger to one format. Idempotent. `process`:
    this serving process's index, on every line, when several serve one port."""
    if fmt is None:
        fmt = LogFormat.CONSOLE if sys.stderr.isatty() else LogFormat.JSON
    level_no = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process is not None:
        shared.append(_add_process(process))
    renderer: structlog.types.Processor
    if fmt is LogFormat.JSON:
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: structlog's rich formatter would print local variables.
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(
        processors=[*shared, renderer, _mask_rendered_card_numbers],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        # One write() per line (message and newline together): with unbuffered stdio
        # (PYTHONUNBUFFERED) print() writes them separately, and the lines of processes
        # sharing one stderr (GATEWAY_PROCESSES) would interleave.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aiohttp, alembic) go through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
                _mask_rendered_card_numbers,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level_no, logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # we log one line ourselves
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per processor call: metrics
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # logs every pg_ctl call at INFO


def _add_process(index: int) -> structlog.types.Processor:
    def add(
        _logger: object, _method: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event.setdefault("process", index)
        return event

    return add


_CARD_NUMBER = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)", re.ASCII)


def mask_card_numbers(text: str) -> str:
    """`text` with every Luhn-valid run of 13 to 19 digits replaced by `[CARD]` (the check
    spares most ids, amounts and timestamps of that length)."""
    return _CARD_NUMBER.sub(_mask_if_card, text)


def _mask_if_card(found: re.Match[str]) -> str:
    digits = [int(c) for c in found.group() if c.isdigit()]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "[CARD]" if total % 10 == 0 else found.group()


def _mask_rendered_card_numbers(_logger: object, _method: str, line: Any) -> Any:
    """The last processor: it gets the rendered line (a str)."""
    return mask_card_numbers(line) if isinstance(line, str) else line

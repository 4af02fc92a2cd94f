"""Logging that costs nothing when a level is off: ``self.debug(lambda: f"...")``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

Loggable = str | Callable[[], str]

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str, service_id: str | None = None) -> None:
    root = logging.getLogger("aiperf")
    root.setLevel(level.upper())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    root.propagate = False


class AIPerfLoggerMixin:
    """Gives a class ``debug/info/warning/error`` that accept a string or a lambda."""

    logger_name: str = "aiperf"

    @property
    def logger(self) -> logging.Logger:
        logger = self.__dict__.get("_logger")
        if logger is None:
            logger = self.__dict__["_logger"] = logging.getLogger(self.logger_name)
        return logger

    def _log(self, level: int, message: Loggable) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, message() if callable(message) else message)

    def debug(self, message: Loggable) -> None:
        self._log(logging.DEBUG, message)

    def info(self, message: Loggable) -> None:
        self._log(logging.INFO, message)

    def warning(self, message: Loggable) -> None:
        self._log(logging.WARNING, message)

    def error(self, message: Loggable) -> None:
        self._log(logging.ERROR, message)

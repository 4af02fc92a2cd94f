"""Secrets never reach a report. The API key is a ``SecretStr`` from the moment it is read,
so reprs show ``'**********'``; this is the last line: any report text that still carries
a raw secret (a traceback with ``-l`` showing an engine frame's locals, captured output)
has it replaced before pytest prints or stores the report."""

from __future__ import annotations

import pytest

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter "secrets" would mask ordinary words


def scrub(text: str, secrets: set[str]) -> str:
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, MASK)
    return text


def scrub_report(report: pytest.TestReport, secrets: set[str]) -> None:
    if not secrets:
        return
    if report.longrepr is not None:
        text = str(report.longrepr)
        if any(s in text for s in secrets):
            report.longrepr = scrub(text, secrets)
    report.sections = [(title, scrub(content, secrets)) for title, content in report.sections]
    report.user_properties = [(name, scrub(value, secrets) if isinstance(value, str) else value)
                              for name, value in report.user_properties]

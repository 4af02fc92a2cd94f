"""Secrets never reach a report. The API key is a ``SecretStr`` from the moment it is read,
so reprs show ``'**********'``; this is the last line: any report text that still carries
a raw secret (a traceback with ``-l`` showing an engine frame's locals, captured output)
has it replaced before pytest prints or stores the report."""

from __future__ import annotations

import pytest


def scrub_report(report: pytest.TestReport, secrets: set[str]) -> None:
    if not secrets:
        return
    from aiperf.transports.redact import ordered, scrub

    values = ordered(secrets)
    if report.longrepr is not None:
        text = str(report.longrepr)
        scrubbed = scrub(text, values)
        if scrubbed != text:  # else keep pytest's own (coloured) representation
            report.longrepr = scrubbed
    report.sections = [(title, scrub(content, values)) for title, content in report.sections]
    report.user_properties = [(name, scrub(value, values) if isinstance(value, str) else value)
                              for name, value in report.user_properties]

"""The exception tree of pytest-aiperf, and ``ErrorDetails``, its picklable form.

    AIPerfError
    ├── ConfigError                 a setting is wrong: names the key and the allowed values
    │   └── PluginError             unknown plugin, or a manifest entry that does not validate
    ├── EndpointError               the endpoint cannot be used (unreachable, every request failed)
    ├── MeshError                   the service mesh failed
    │   ├── ServiceFailedError      a service raised or died; carries its id and traceback/signal
    │   └── MeshTimeoutError        a named deadline passed
    └── RunError                    a profile run finished but broke an invariant

An error that crosses a process boundary travels as ``ErrorDetails`` (code, type, message,
traceback) and is raised again on the host as the matching class, so ``except ConfigError``
works whether the mistake was found in the host or inside a service.
"""

from __future__ import annotations

import traceback as _traceback
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AIPerfError(Exception):
    """Root of every error pytest-aiperf raises on purpose."""


class ConfigError(AIPerfError, ValueError):
    """A configuration value is wrong. The message names the key and what is allowed."""


class PluginError(ConfigError):
    """An unknown plugin name, or a manifest entry that does not validate."""


class EndpointError(AIPerfError):
    """The endpoint under test could not be used at all (unreachable, every request failed)."""


class MeshError(AIPerfError):
    """The service mesh failed to start, run or stop."""


class ServiceFailedError(MeshError):
    """A service raised or its process died. ``service_id`` names it."""

    def __init__(self, message: str, service_id: str = "", details: str = "") -> None:
        super().__init__(message)
        self.service_id = service_id
        self.details = details


class MeshTimeoutError(MeshError, TimeoutError):
    """A named deadline of the mesh passed."""


class RunError(AIPerfError):
    """A profile run finished but its result cannot be trusted (e.g. a lost record)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run that was asked to keep its partial results: ``result`` holds
    them (``was_cancelled`` is true). Still a ``KeyboardInterrupt``, so whatever does not
    expect it stops as it would on Ctrl-C."""

    def __init__(self, result: Any) -> None:
        super().__init__("the run was interrupted; partial results kept")
        self.result = result


_BY_NAME: dict[str, type[AIPerfError]] = {
    cls.__name__: cls
    for cls in (
        AIPerfError,
        ConfigError,
        PluginError,
        EndpointError,
        MeshError,
        ServiceFailedError,
        MeshTimeoutError,
        RunError,
    )
}


class ErrorDetails(BaseModel):
    """An error as data: what crosses process boundaries and lands in records and artifacts."""

    model_config = ConfigDict(frozen=True)

    code: int | None = Field(default=None, description="HTTP status or other numeric code")
    type: str = Field(description="Class name of the error, e.g. 'ConfigError' or 'HTTP 500'")
    message: str = Field(description="Human-readable message")
    traceback: str | None = Field(default=None, description="Formatted traceback, if any")
    service_id: str | None = Field(default=None, description="Service that raised, if any")

    @classmethod
    def from_exception(cls, exc: BaseException, service_id: str | None = None) -> ErrorDetails:
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(
            type=type(exc).__name__, message=str(exc), traceback=tb, service_id=service_id
        )

    def to_exception(self) -> AIPerfError:
        """Rebuild the error on this side; unknown types become ``ServiceFailedError``."""
        cls = _BY_NAME.get(self.type)
        if cls is ServiceFailedError:
            return ServiceFailedError(self.message, self.service_id or "", self.traceback or "")
        if cls is None:
            where = f" in service {self.service_id}" if self.service_id else ""
            return ServiceFailedError(
                f"{self.type}{where}: {self.message}",
                service_id=self.service_id or "",
                details=self.traceback or "",
            )
        return cls(self.message)

"""Control-plane messages: pydantic models framed as ``[message_type, json]`` on the wire.

These are the rare, structured messages (register, configure, start, results). The per-
request traffic (credits, records) does not go through here: see ``aiperf.common.codec``.
Every subclass registers itself by its ``message_type`` so ``decode_message`` can rebuild it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field

from aiperf.errors import ErrorDetails


class MessageType(StrEnum):
    REGISTER = "register"
    SERVICE_ERROR = "service_error"
    COMMAND_ACK = "command_ack"
    CONFIGURE_PROFILE = "configure_profile"
    START_PROFILE = "start_profile"
    CREDITS_COMPLETE = "credits_complete"
    CANCEL_REQUESTS = "cancel_requests"
    PROFILE_RESULTS = "profile_results"
    RUN_PROGRESS = "run_progress"
    CANCEL_RUN = "cancel_run"
    LOAD_REPORT_REQUEST = "load_report_request"
    WORKER_LOAD_REPORT = "worker_load_report"
    PROCESSOR_BACKLOG_REPORT = "processor_backlog_report"  # STEADY: record processors
    SHUTDOWN = "shutdown"
    SERVICE_HEARTBEAT = "service_heartbeat"
    # host <-> controller
    HOST_HELLO = "host_hello"
    MESH_READY = "mesh_ready"
    RUN_PROFILE = "run_profile"
    RUN_REPLY = "run_reply"
    RUN_HEARTBEAT = "run_heartbeat"
    HOST_CANCEL_RUN = "host_cancel_run"
    HOST_SHUTDOWN = "host_shutdown"


_CLASSES: dict[MessageType, type[Message]] = {}


class Message(BaseModel):
    """Base of every control message; subclasses set a default ``message_type``."""

    model_config = ConfigDict(extra="forbid")
    message_type: MessageType
    service_id: str | None = Field(default=None, description="Sender, when a service")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        field = cls.model_fields.get("message_type")
        if field is not None and isinstance(field.default, MessageType):
            _CLASSES[field.default] = cls

    def encode(self) -> list[bytes]:
        return [self.message_type.value.encode(), self.model_dump_json().encode()]


def decode_message(frames: list[bytes]) -> Message:
    message_type = MessageType(frames[0].decode())
    return _CLASSES[message_type].model_validate_json(frames[1])


class Command(Message):
    """A message that expects a ``CommandAck`` from each service it is sent to."""

    command_id: str


class RegisterMessage(Message):
    message_type: MessageType = MessageType.REGISTER
    service_type: str
    pid: int


class ServiceHeartbeat(Message):
    """A remote service is alive: sent every ``heartbeat_interval``. The controller fails
    the run when one goes quiet for ``worker_silence_timeout`` (a frozen host)."""

    message_type: MessageType = MessageType.SERVICE_HEARTBEAT


class ServiceErrorMessage(Message):
    message_type: MessageType = MessageType.SERVICE_ERROR
    error: ErrorDetails
    fatal: bool = True


class CommandAck(Message):
    message_type: MessageType = MessageType.COMMAND_ACK
    command_id: str
    error: ErrorDetails | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class ConfigureProfileCommand(Command):
    """Prepare for one run. ``user_config`` is a dumped ``UserConfig`` (secrets included:
    it only travels inside the mesh's private sockets)."""

    message_type: MessageType = MessageType.CONFIGURE_PROFILE
    run_id: str
    user_config: dict[str, Any]
    dataset_path: str | None = None
    dataset_size: int = 0
    # The dataset file's bytes, for services on other hosts (remote workers), which cannot
    # read the run dir: set by the controller when the mesh has any.
    dataset_inline: Base64Bytes | None = Field(default=None, repr=False)


class StartProfileCommand(Command):
    message_type: MessageType = MessageType.START_PROFILE
    run_id: str


class ShutdownCommand(Command):
    message_type: MessageType = MessageType.SHUTDOWN


class CreditsCompleteMessage(Message):
    """Published by the timing manager when it will issue no more credits for a run."""

    message_type: MessageType = MessageType.CREDITS_COMPLETE
    run_id: str
    issued_ranges: list[tuple[int, int]] = Field(
        default_factory=list, description="(first id, count) of every block of issued credits"
    )
    warmup_credits: int = 0

    @property
    def credits_issued(self) -> int:
        return sum(count for _, count in self.issued_ranges)


class CancelRequestsMessage(Message):
    """Published by the timing manager when a duration run's grace period ends: workers
    cancel what is still in flight and record it as cancelled."""

    message_type: MessageType = MessageType.CANCEL_REQUESTS
    run_id: str


class CancelRunCommand(Command):
    """Sent by the controller to every service when a run must end early.

    ``keep_results`` False (the run timed out): each service drops the run (the timing
    manager stops issuing and forgets its schedule, the records manager discards what it
    collected), so the next run starts clean. True (the host cancelled, e.g. Ctrl-C): the
    timing manager stops issuing and publishes the credits it did issue, and the records
    manager computes results from them (in-flight requests become cancellation errors)."""

    message_type: MessageType = MessageType.CANCEL_RUN
    run_id: str
    keep_results: bool = False


class ProfileResultsMessage(Message):
    message_type: MessageType = MessageType.PROFILE_RESULTS
    run_id: str
    results: dict[str, Any]


class RunProgress(Message):
    """Sent by the records manager about once a second while a run goes on, and passed on
    by the controller to the host (the CLI draws a progress line from it)."""

    message_type: MessageType = MessageType.RUN_PROGRESS
    run_id: str
    records: int
    errors: int
    elapsed_s: float
    # The current time slice (``slice_duration``, else 10 s, by when records arrived since
    # the run began): its bounds in s, its successful profiling requests, and the p99 of
    # each latency kept live (``request_latency``, ``time_to_first_token``) in ms. A slice
    # just begun and still empty leaves the last one's figures in place.
    slice_start_s: float | None = None
    slice_end_s: float | None = None
    slice_requests: int = 0
    slice_p99_ms: dict[str, float] = Field(default_factory=dict)


class LoadReportRequest(Message):
    """Published by the records manager once a run's records are in: every worker answers
    with a ``WorkerLoadReport`` of its own load during the run (``aiperf.validity``)."""

    message_type: MessageType = MessageType.LOAD_REPORT_REQUEST
    run_id: str


class WorkerLoadReport(Message):
    """A worker's event-loop lag ticks and CPU samples during a run (``LoadProbe.report``):
    int64 arrays as bytes, base64 in the JSON frame. One per worker per run, so its size
    (16 bytes a 10 ms tick) never touches the per-request path."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64",
                              val_json_bytes="base64")
    message_type: MessageType = MessageType.WORKER_LOAD_REPORT
    run_id: str
    tick_ns: bytes = b""
    lag_ns: bytes = b""
    cpu_at_ns: bytes = b""
    cpu_ns: bytes = b""
    period_ns: int = 0
    # With clock sync (remote workers): the worker's clock estimate for this run
    # (services/clock.py; reference = local + offset) and the host it ran on. The probe's
    # stamps above are then already on the reference clock.
    clock_offset_ns: int | None = None
    clock_uncertainty_ns: int | None = None
    clock_round_trip_ns: int | None = None
    clock_samples: int | None = None
    host: str | None = None


class ProcessorBacklogReport(Message):
    """A record processor's answer to ``LoadReportRequest``: the largest backlog it found
    in its raw-records queue during the run (batches, records and bytes queued at once, and
    the longest a record waited between its request's end and its parsing)."""

    message_type: MessageType = MessageType.PROCESSOR_BACKLOG_REPORT
    run_id: str
    backlog: dict[str, float] = Field(default_factory=dict)


class RunHeartbeat(Message):
    """Sent by the controller to the host every ``heartbeat_interval`` while it serves a run:
    the host's only deadline is the controller's silence, the run's own deadlines are kept
    by the controller."""

    message_type: MessageType = MessageType.RUN_HEARTBEAT
    run_id: str


class HostCancelRun(Message):
    """The host asks the controller to cancel a run and reply with what it has."""

    message_type: MessageType = MessageType.HOST_CANCEL_RUN
    run_id: str


class HostHello(Message):
    message_type: MessageType = MessageType.HOST_HELLO


class MeshReady(Message):
    message_type: MessageType = MessageType.MESH_READY
    services: dict[str, int] = Field(default_factory=dict, description="service id -> pid")
    locations: dict[str, str] = Field(
        default_factory=dict, description="remote service id -> where it runs (node, host, "
        "pid, Ray actor)")
    error: ErrorDetails | None = None


class RunProfileRequest(Message):
    message_type: MessageType = MessageType.RUN_PROFILE
    run_id: str
    user_config: dict[str, Any]


class RunProfileReply(Message):
    message_type: MessageType = MessageType.RUN_REPLY
    run_id: str
    results: dict[str, Any] | None = None
    error: ErrorDetails | None = None
    mesh_failed: bool = Field(default=False, description="The mesh is shutting down")


class HostShutdown(Message):
    message_type: MessageType = MessageType.HOST_SHUTDOWN

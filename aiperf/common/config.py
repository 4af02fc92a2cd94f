"""Configuration: ``UserConfig`` (what to measure) and ``ServiceConfig`` (how the mesh runs).

Both are pydantic models that reject unknown keys. ``format_validation_error`` turns a
pydantic error into one line per problem that names the key, the bad value and what is
allowed; the CLI and the pytest plugin show that text as it is.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from aiperf.common.curve import MeshKeys
from aiperf.errors import ConfigError

ArrivalPattern = Literal["constant", "poisson", "gamma"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|m|min|h)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
                     None: 1.0}
# Header names whose values are credentials, matched as substrings of the lower-cased name.
_SECRET_HEADER_PARTS = ("auth", "key", "token", "secret", "cookie")
MASK = "***"
_USERINFO = re.compile(r"(://)[^/@\s'\"]*@")


def parse_duration(value: Any) -> Any:
    """Seconds from ``3``, ``2.5``, ``"3"``, ``"3s"``, ``"500ms"``, ``"2m"`` or ``"1h"``: the
    one spelling of a duration shared by the CLI, the pytest marker and ini keys. Anything
    else is returned as it is, for the field's own validation to refuse by name."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration: a number of seconds, or one with a unit "
                "ms, s, m or h ('500ms', '3s', '2m')"
            )
        return float(match.group(1)) * _DURATION_FACTORS[match.group(2)]
    return value


def mask_url(url: str) -> str:
    """``url`` with any user:password replaced by the mask."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_HEADER_PARTS)


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], where: str = "",
    name_of: Callable[[str], str] = str,
) -> str:
    """One line per problem, naming the key (as ``name_of`` spells it: a CLI flag, a marker
    keyword) and what is allowed."""
    lines = []
    allowed = ", ".join(sorted(name_of(k) for k in model.model_fields))
    for err in exc.errors():
        key = name_of(".".join(str(p) for p in err["loc"])) if err["loc"] else "(config)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}; allowed keys: {allowed}")
        else:
            value = err.get("input")
            lines.append(f"{key}: {err['msg']}{_shown_input(err['loc'], value)}")
    prefix = f"{where}: " if where else ""
    return prefix + "; ".join(lines)


def _shown_input(loc: tuple[Any, ...], value: Any) -> str:
    """The rejected value as an error message may show it: never a credential."""
    if isinstance(value, dict | SecretStr):
        return ""
    names = [str(part) for part in loc]
    if "api_key" in names or any(is_secret_header(n) for n in names[1:] if names[0] == "headers"):
        return f" (got {MASK})"
    shown = _USERINFO.sub(rf"\g<1>{MASK}@", repr(value))
    return f" (got {shown})"


class UserConfig(BaseModel):
    """One load profile: the endpoint, the load, the dataset. Keys match the pytest marker's;
    the CLI flag of each is its name with dashes (``--request-count``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- endpoint
    url: str = Field(default="http://127.0.0.1:8000", description="Base URL of the server")
    model: str = Field(default="mock-model", description="Model name sent in each request")
    endpoint_type: str = Field(default="chat", description="Endpoint plugin name")
    streaming: bool = False
    api_key: SecretStr | None = Field(default=None, description="Sent as a Bearer token")
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    extra_inputs: dict[str, Any] = Field(default_factory=dict)
    request_timeout_seconds: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    request_first_byte_timeout_seconds: float | None = Field(
        default=None, gt=0,
        description="Fail a request whose first response byte has not arrived by then "
        "(a server that accepts and never answers); None waits up to the request timeout",
    )
    transport: str | None = Field(
        default=None,
        description="Transport plugin by name (AIPerf's --transport): None takes the one "
        "serving the URL's scheme, 'http' (a lean HTTP/1.1 client, a quarter of aiohttp's CPU "
        "per request); 'aiohttp' (follows redirects)",
    )
    # -- load
    timing_strategy: str | None = Field(
        default=None, description="Timing plugin; derived from the other keys when unset"
    )
    concurrency: int | None = Field(default=None, ge=1)
    request_rate: float | None = Field(default=None, gt=0)
    arrival_pattern: ArrivalPattern = "poisson"
    arrival_smoothness: float = Field(default=1.0, gt=0)
    request_count: int | None = Field(default=None, ge=1)
    benchmark_duration: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Seconds of load: 3, '3s', '500ms', '2m'",
    )
    benchmark_grace_period: float = Field(
        default=30.0, ge=0, allow_inf_nan=False,
        description="Seconds in-flight requests may finish after the duration: 30, '30s', '1m'",
    )
    warmup_request_count: int = Field(default=0, ge=0)
    fixed_schedule: bool = False
    # -- dataset
    dataset: str | None = Field(default=None, description="Dataset loader; derived if unset")
    input_file: str | None = None
    custom_dataset_type: str | None = None
    isl: int = Field(default=128, ge=1)
    isl_stddev: float = Field(default=0.0, ge=0)
    osl: int | None = Field(default=64, ge=1)
    osl_stddev: float = Field(default=0.0, ge=0)
    tokenizer: str | None = Field(default=None, description="Path to a tokenizer.json")
    random_seed: int = 0
    # -- results
    goodput: dict[str, float] = Field(default_factory=dict)
    failed_request_threshold: float | None = Field(default=None, ge=0, le=100)
    slice_duration: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Export per-slice metrics over consecutive slices this long: 5, '5s', '1m'",
    )
    sketch: bool = Field(
        default=False,
        description="Keep each metric's distribution in a relative-error quantile sketch "
        "instead of every value: memory stays flat however long the run; percentiles carry "
        "the sketch's relative error into their intervals",
    )
    sketch_relative_accuracy: float = Field(
        default=0.01, gt=0, lt=0.5,
        description="The sketch's relative error bound on every quantile (0.01: 1 %)",
    )
    export_records: bool | None = Field(
        default=None,
        description="Write the per-request table (profile_export.jsonl), streamed to disk: "
        "default on, off in sketch mode",
    )
    # --- parity: command line and metrics (fields added below this line) ---
    custom_endpoint: str | None = Field(
        default=None,
        description="AIPerf --custom-endpoint / --endpoint: the request path used instead of "
        "the endpoint plugin's own (/v1/custom); the base URL stays in url",
    )
    wait_for_model_timeout: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="Seconds to wait, before the run, for the endpoint to answer (GET "
        "/v1/models, then a one-token request): 0 skips the wait, as in AIPerf",
    )
    wait_for_model_mode: Literal["models", "inference", "both"] = Field(
        default="inference",
        description="What the wait checks, as AIPerf's --wait-for-model-mode: 'models' "
        "the model's id in GET /v1/models, 'inference' a one-token request answered, "
        "'both' one then the other",
    )
    wait_for_model_interval: float = Field(
        default=0.5, gt=0, allow_inf_nan=False,
        description="Seconds between two attempts of the wait (AIPerf: 5)",
    )

    @field_validator("url", mode="after")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        """``localhost:8000`` is ``http://localhost:8000``, as AIPerf reads it."""
        from aiperf.common.net import with_http_scheme

        return with_http_scheme(value)

    @field_validator("custom_endpoint", mode="after")
    @classmethod
    def _custom_endpoint_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if "://" in value:
            raise ValueError("is a request path such as /v1/custom, not a URL (the base URL "
                             "goes in url)")
        if not value.strip("/"):
            raise ValueError("is empty; give a path such as /v1/custom")
        return "/" + value.lstrip("/")

    @field_validator("wait_for_model_timeout", "wait_for_model_interval", mode="before")
    @classmethod
    def _wait_for_model_duration(cls, value: Any) -> Any:
        return parse_duration(value)
    # --- parity: endpoints (fields added below this line) ---
    # Rankings endpoints: each request is one query and passages; AIPerf 0.13's defaults.
    rankings_passages_mean: int = Field(
        default=1, ge=1, description="Mean number of passages per rankings request")
    rankings_passages_stddev: int = Field(default=0, ge=0)
    rankings_passages_prompt_token_mean: int = Field(
        default=550, ge=1, description="Mean tokens of each rankings passage")
    rankings_passages_prompt_token_stddev: int = Field(default=0, ge=0)
    rankings_query_prompt_token_mean: int = Field(
        default=550, ge=1, description="Mean tokens of each rankings query")
    rankings_query_prompt_token_stddev: int = Field(default=0, ge=0)
    # The template endpoint: any JSON API without writing a plugin.
    payload_template: str | None = Field(
        default=None, description="template endpoint: a Jinja template of the request "
        "body (inline, or the path of a file holding it)")
    response_field: str | None = Field(
        default=None, description="template endpoint: JMESPath or dotted path (choices.0.text) "
        "of the answer text in a response body or a streamed event")
    usage_field: str | None = Field(
        default=None, description="template endpoint: path of the usage object "
        "(prompt_tokens/completion_tokens or input_tokens/output_tokens); none: no usage")
    stream_end_field: str | None = Field(
        default=None, description="template endpoint: path whose true value marks a "
        "stream's last event, for an API that sends no [DONE] (llama.cpp /completion: stop)")

    @field_validator("payload_template", "response_field", "usage_field", "stream_end_field")
    @classmethod
    def _template_setting_compiles(cls, value: str | None, info: Any) -> str | None:
        """Refused here (at collection, for a marker), naming the key: a template that does
        not compile or a file that is not there, a path that is not one."""
        if value is None:
            return None
        from aiperf.endpoints.template import compile_path, compile_template, template_source

        if info.field_name == "payload_template":
            # A file's template is read here, once: every process (a remote worker too)
            # then renders the same text, and never needs the file.
            source = template_source(value)
            compile_template(source)
            return source
        else:
            compile_path(value, info.field_name)
        return value

    @model_validator(mode="after")
    def _template_endpoint_has_a_template(self) -> UserConfig:
        if self.endpoint_type.replace("-", "_").lower() != "template":
            return self
        if self.payload_template is None and "payload_template" not in self.extra_inputs:
            raise ValueError("endpoint 'template' needs payload_template: a Jinja template "
                             "of the request body, or the path of a file holding one")
        # Settings given AIPerf's way, in extra_inputs, are checked as their own keys are.
        from aiperf.endpoints.template import check_settings

        check_settings(self)
        return self
    # --- parity: server metrics (fields added below this line) ---
    server_metrics: list[str] | None = Field(
        default=None, repr=False,  # a URL may carry user:password
        description="Prometheus /metrics URLs to scrape before, during and after the run "
        "(AIPerf --server-metrics): None off; [] or True the endpoint's base URL + /metrics",
    )
    server_metrics_interval: float = Field(
        default=1.0, gt=0, allow_inf_nan=False,
        description="Seconds between two scrapes during the run: 1, '500ms'",
    )

    @field_validator("server_metrics", mode="before")
    @classmethod
    def _server_metrics_urls(cls, value: Any) -> Any:
        """True -> [], False -> None, one URL -> [URL]; each URL as AIPerf normalises it
        (http:// when it has no scheme, /metrics appended when its path lacks it)."""
        if value is None or value is False:
            return None
        if value is True:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value  # the field's own check refuses it by name
        from aiperf.server_metrics.urls import normalize_metrics_url

        return [normalize_metrics_url(url) if isinstance(url, str) else url for url in value]

    @field_validator("server_metrics_interval", mode="before")
    @classmethod
    def _server_metrics_interval(cls, value: Any) -> Any:
        return parse_duration(value)
    # --- capacity (fields added below this line) ---
    # --- parity: sessions and load shaping (fields added below this line) ---
    conversation_num: int | None = Field(
        default=None, ge=1,
        description="Multi-turn sessions: the synthetic pool's size, and the run's length "
        "(every session to its last turn) when neither request_count nor "
        "benchmark_duration is set")
    conversation_turn_mean: float = Field(default=1.0, ge=1, le=1000, allow_inf_nan=False,
                                          description="Mean turns per synthetic session")
    conversation_turn_stddev: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    conversation_turn_delay_mean: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="Mean think time in ms before each turn after a session's first")
    conversation_turn_delay_stddev: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    conversation_turn_delay_ratio: float = Field(
        default=1.0, ge=0, allow_inf_nan=False,
        description="Every turn delay (synthetic or a file's) is multiplied by this")
    session_header: str | None = Field(
        default=None, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        description="HTTP header carrying each session's id (AIPerf: X-Correlation-ID "
        "when unset)")
    request_cancellation_rate: float | None = Field(
        default=None, gt=0, le=100, allow_inf_nan=False,
        description="Percent of requests the client cancels request_cancellation_delay "
        "seconds after sending them")
    request_cancellation_delay: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    concurrency_ramp_duration: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Seconds over which the closed loop grows from 1 to concurrency")
    request_rate_ramp_duration: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Seconds over which the request rate grows to request_rate")
    prompt_prefix_pool_size: int = Field(
        default=0, ge=0, le=100_000,
        description="Distinct prefixes, one prepended to each prompt (prefix caching)")
    prompt_prefix_length: int = Field(default=0, ge=0, le=1_000_000,
                                      description="Tokens of each pooled prefix")
    shared_system_prompt_length: int = Field(
        default=0, ge=0, le=1_000_000,
        description="Tokens of one system prompt shared by every request")
    urls: list[str] = Field(
        default_factory=list, repr=False,
        description="Several servers, requests spread over them by url_strategy (url is "
        "the first); a URL may carry credentials, hence out of the repr")
    url_strategy: Literal["round_robin"] = "round_robin"

    @field_validator("url_strategy", mode="before")
    @classmethod
    def _underscored_strategy(cls, value: Any) -> Any:
        # AIPerf 0.13 spells it round-robin.
        return value.replace("-", "_") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _url_of_urls(self) -> UserConfig:
        """Several URLs without ``url``: ``url`` (the readiness wait, server metrics, the
        endpoint path) is the first of them, not the default."""
        if self.urls and "url" not in self.model_fields_set:
            from aiperf.common.net import with_http_scheme

            self.__dict__["url"] = with_http_scheme(self.urls[0])
        return self

    @field_validator("benchmark_duration", "benchmark_grace_period", "slice_duration",
                     mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("goodput", mode="before")
    @classmethod
    def _parse_goodput(cls, value: Any) -> Any:
        """Accept AIPerf's string form ``"time_to_first_token:200 request_latency:1000"``."""
        if isinstance(value, str):
            pairs = {}
            for item in value.split():
                name, sep, number = item.partition(":")
                if not sep:
                    raise ValueError(f"goodput item {item!r} is not of the form metric:value")
                pairs[name] = float(number)
            return pairs
        return value

    @field_validator("goodput", mode="after")
    @classmethod
    def _check_goodput(cls, value: dict[str, float], info: Any) -> dict[str, float]:
        """Each threshold names one per-request value this profile measures: a list-valued
        metric, or TTFT without streaming, would make no request good (or crash)."""
        if not value or "endpoint_type" not in info.data:
            return value
        from aiperf.metrics.definitions import goodput_metrics, goodput_problem
        from aiperf.plugin import PluginType, plugins

        metadata = plugins.get_metadata(PluginType.ENDPOINT, info.data["endpoint_type"])
        streams = bool(info.data.get("streaming")) and bool(
            getattr(metadata, "supports_streaming", False))
        tokens = bool(getattr(metadata, "produces_tokens", True))
        for tag in value:
            problem = goodput_problem(tag, streams, tokens)
            if problem is not None:
                usable = ", ".join(goodput_metrics(streams, tokens))
                raise ValueError(f"goodput metric {tag!r} {problem}; usable here: {usable}")
        return value

    @field_validator("endpoint_type", "timing_strategy", "dataset", "custom_dataset_type",
                     "transport")
    @classmethod
    def _known_plugin(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return None
        from aiperf.plugin import PluginType, plugins

        category = {
            "endpoint_type": PluginType.ENDPOINT,
            "timing_strategy": PluginType.TIMING_STRATEGY,
            "transport": PluginType.TRANSPORT,
        }.get(info.field_name, PluginType.DATASET_LOADER)
        names = plugins.names(category)
        from aiperf.plugin import normalize_name

        if normalize_name(value) not in names:
            raise ValueError(f"unknown {category.value} {value!r}; allowed: {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> UserConfig:
        if self.input_file is None and self.custom_dataset_type:
            raise ValueError("custom_dataset_type needs input_file")
        if self.fixed_schedule and self.input_file is None:
            raise ValueError("fixed_schedule needs input_file with timestamps")
        return self

    # The derived choices are computed on demand rather than written back, so a copy with
    # other keys (``with_overrides``) never keeps a choice derived from the old ones.
    def resolved_export_records(self) -> bool:
        """Whether the per-request table is written: as asked, else not in sketch mode."""
        return self.export_records if self.export_records is not None else not self.sketch

    def resolved_concurrency(self) -> int | None:
        """Requests in flight: the closed loop's size, or the cap of an open loop (None:
        no cap). One when nothing else says how to pace requests, as AIPerf does."""
        if self.concurrency is not None:
            return self.concurrency
        if self.request_rate is None and not self.fixed_schedule:
            return 1
        return None

    def resolved_timing_strategy(self) -> str:
        if self.timing_strategy:
            return self.timing_strategy
        if self.fixed_schedule:
            return "fixed_schedule"
        if self.request_rate is not None:
            return "request_rate"
        return "concurrency"

    def resolved_dataset(self) -> str:
        if self.dataset:
            return self.dataset
        if self.input_file:
            if self.custom_dataset_type:
                return self.custom_dataset_type
            return "mooncake_trace" if self.fixed_schedule else "single_turn"
        return "synthetic"

    def resolved_request_count(self) -> int | None:
        """Requests of the profiling phase; 10 x concurrency by default, as AIPerf does."""
        if self.request_count is not None:
            return self.request_count
        if self.benchmark_duration is not None:
            return None
        return max(10, 10 * (self.resolved_concurrency() or 1))

    def safe_dump(self) -> dict[str, Any]:
        """The config for artifacts and logs: the api key, URL userinfo and every header
        whose name looks like a credential (auth, key, token, secret, cookie) masked."""
        data = self.model_dump(mode="json", exclude_none=True)
        if self.api_key is not None:
            data["api_key"] = MASK
        data["url"] = mask_url(self.url)
        if self.server_metrics:
            data["server_metrics"] = [mask_url(url) for url in self.server_metrics]
        if self.urls:
            data["urls"] = [mask_url(url) for url in self.urls]
        data["headers"] = {
            k: (MASK if is_secret_header(k) else v) for k, v in self.headers.items()
        }
        return data

    def __repr_args__(self) -> Any:
        # The default repr shows the URL as given; a URL may carry user:password.
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "url" and isinstance(value, str) else value)

    def with_overrides(
        self, where: str = "", name_of: Callable[[str], str] = str, **overrides: Any
    ) -> UserConfig:
        """A copy with ``overrides`` applied and everything validated again (``model_copy``
        validates nothing); a bad key or value is a ``ConfigError`` naming it."""
        values = self.model_dump(exclude_unset=True)
        if self.api_key is not None:
            values["api_key"] = self.api_key
        values.update(overrides)
        return type(self).build(where, name_of, **values)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> UserConfig:
        """Validate a config that travelled into the mesh. pydantic's own error text
        repeats the whole input, api key included; this error names keys only."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, cls)) from None

    @classmethod
    def build(
        cls, where: str = "", name_of: Callable[[str], str] = str, **values: Any
    ) -> UserConfig:
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, cls, where, name_of)) from None


CommBackend = Literal["ipc", "tcp"]
# Where workers run: forked on this host (local), as Ray actors over a cluster (ray), or
# started by someone else, who connects them to the mesh's TCP addresses (external: the
# controller-scaling simulation in the tests).
MeshBackend = Literal["local", "ray", "external"]

def default_workers() -> int:
    """Half the cores, at least one: the other half goes to record processing and, on a
    benchmarking box, often to the server under test. On 2 cores two workers drive no more
    requests than one and spend more CPU (benchmarks/client_throughput.py --workers N)."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


ADDRESS_NAMES = ("control", "host", "bus_in", "bus_out", "credits", "records")


class ServiceConfig(BaseModel):
    """Infrastructure of one mesh: addresses, process counts, log level, deadlines."""

    model_config = ConfigDict(extra="forbid")

    backend: MeshBackend = Field(
        default="local",
        description="Where workers run: local (forked on this host), ray (Ray actors spread "
        "over a cluster's nodes; needs pytest-aiperf[ray]) or external (started by someone "
        "else: the mesh waits for `workers` of them to join)",
    )
    ray_address: str | None = Field(
        default=None,
        description="The Ray cluster to join (backend=ray): 'auto' (the local node's "
        "cluster) or the head's host:port. Default: auto",
    )
    workers_per_node: int | None = Field(
        default=None, ge=1, le=256,
        description="backend=ray: this many workers on every alive node (instead of "
        "`workers` in all)",
    )
    ray_worker_resources: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1.0},
        description="backend=ray: the Ray resources each worker actor reserves (its "
        "placement-group bundle), e.g. {'CPU': 1, 'loadgen': 1} to pin workers to nodes "
        "that offer a custom resource",
    )
    mesh_keys: MeshKeys | None = Field(
        default=None,
        description="CURVE keys of a mesh reachable over the network (generated for the "
        "ray and external backends); never set by hand",
    )
    clock_sync: bool = Field(
        default=False,
        description="Workers estimate their clock's offset from the timing manager's at "
        "hello (set for the ray and external backends: their hosts' clocks differ)",
    )
    worker_silence_timeout: float = Field(
        default=5.0, gt=0,
        description="Seconds a remote worker may go without a heartbeat before the run in "
        "progress fails, naming it (a frozen node)",
    )
    comm_backend: CommBackend = "ipc"
    run_dir: str = Field(default="", description="Private temp dir: IPC sockets, datasets")
    tcp_host: str = "127.0.0.1"
    tcp_ports: dict[str, int] = Field(default_factory=dict)
    workers: int = Field(default_factory=lambda: default_workers(), ge=1, le=256)
    record_processors: int = Field(default=1, ge=1, le=64)
    background_nice: int = Field(
        default=10, ge=0, le=19,
        description="Niceness added to services off the request path (record processors, "
        "records manager): on a short-cored box they yield to workers and to a local "
        "server, and catch up in the gaps (measured: benchmarks/client_throughput.py). "
        "0 keeps every service at the host's priority",
    )
    log_level: str = Field(default="WARNING", pattern=r"(?i)^(debug|info|warning|error)$")
    # Named deadlines (seconds): every wait in the mesh uses one of these.
    startup_timeout: float = Field(default=20.0, gt=0)
    shutdown_timeout: float = Field(default=3.0, gt=0)
    command_timeout: float = Field(default=30.0, gt=0)
    heartbeat_interval: float = Field(default=1.0, gt=0)
    result_timeout_margin: float = Field(
        default=30.0, gt=0,
        description="Seconds added to a run's deadlines for dispatch, late records and "
        "computing the results",
    )
    max_run_seconds: float | None = Field(
        default=None, gt=0,
        description="A hard cap on one run, whatever its profile; a run that reaches it is "
        "cancelled in every service and fails with MeshTimeoutError",
    )
    max_connections_per_worker: int = Field(default=1024, ge=1)
    record_hwm: int = Field(
        default=128, ge=0,
        description="Messages (record batches) queued at each end of a record-path socket "
        "before the sender waits: a record processor that falls behind for good slows the "
        "workers down instead of growing without bound. Generous, so the ordinary lag of "
        "a niced processor during a run never binds. 0 is unbounded "
        "(benchmarks/backpressure.py measures both)",
    )
    runtime_plugins: dict[str, Any] = Field(
        default_factory=dict,
        description="Plugins registered at run time in the host, as a manifest mapping; the "
        "controller registers them before it starts the services",
    )

    def address(self, name: str, index: int | None = None) -> str:
        key = name if index is None else f"{name}_{index}"
        if self.comm_backend == "ipc":
            return f"ipc://{os.path.join(self.run_dir, key)}.sock"
        return f"tcp://{self.tcp_host}:{self.tcp_ports[key]}"

    def address_keys(self) -> list[str]:
        raw = [f"raw_records_{i}" for i in range(self.record_processors)]
        return [*ADDRESS_NAMES, *raw]

    def prepared(self) -> ServiceConfig:
        """A copy with a fresh private run dir and, for TCP, free ports picked for each
        address. Two meshes started at once (two xdist workers) never share either."""
        run_dir = tempfile.mkdtemp(prefix="aiperf-mesh-")
        ports = dict(self.tcp_ports)
        update: dict[str, Any] = {}
        if self.backend != "local":
            # Workers on other hosts: TCP, keys of this mesh's own, and clocks to align.
            update = {"comm_backend": "tcp", "clock_sync": True,
                      "mesh_keys": self.mesh_keys or MeshKeys.generate()}
        if self.comm_backend == "tcp" or update:
            from aiperf.common.net import free_tcp_ports

            missing = [k for k in self.address_keys() if k not in ports]
            ports.update(zip(missing, free_tcp_ports(self.tcp_host, len(missing)), strict=True))
        return self.model_copy(update={**update, "run_dir": run_dir, "tcp_ports": ports})

    def remote_workers(self) -> bool:
        """Workers are not this host's forked children (ray, external)."""
        return self.backend != "local"


def run_deadline(config: UserConfig, service_config: ServiceConfig) -> float | None:
    """Seconds a run may take from its start, or None when only the stall rule bounds it.

    A duration run ends by construction: load for ``benchmark_duration``, then in-flight
    requests get ``benchmark_grace_period`` before they are cancelled, then the results are
    computed (``result_timeout_margin``). A count run has no such end (a slow server makes
    it legitimately long), so it is bounded by ``stall_timeout`` instead: it never grows
    with the request count. ``max_run_seconds`` caps both."""
    cap = service_config.max_run_seconds
    deadline = None
    if config.benchmark_duration is not None:
        deadline = (config.benchmark_duration + config.benchmark_grace_period
                    + service_config.result_timeout_margin)
    if cap is not None:
        deadline = cap if deadline is None else min(deadline, cap)
    return deadline


def stall_timeout(
    config: UserConfig, service_config: ServiceConfig, idle_gap_s: float = 0.0
) -> float:
    """Seconds a run may go without a new record before it is declared hung.

    Every request ends, as a success or an error record, within ``request_timeout_seconds``
    of being sent (the first-byte timeout, when set, only ends dead requests sooner), so
    while anything is in flight a record arrives at least that often. ``idle_gap_s`` is the
    longest pause the schedule itself asks for (rate and trace modes: the timing manager
    reports it when the run starts), during which nothing is in flight."""
    return config.request_timeout_seconds + idle_gap_s + service_config.result_timeout_margin

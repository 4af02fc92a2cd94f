"""Per-category metadata schemas for plugin manifest entries.

Every schema forbids unknown keys, so a typo in a manifest (``suports_streaming``) is an
error when the manifest loads, not a silently ignored flag.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from aiperf.plugin.enums import PluginType


class PluginMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceMetadata(PluginMetadata):
    required: bool = Field(default=True, description="The mesh cannot run without it")
    auto_start: bool = Field(default=True, description="Started by the service manager")
    replicable: bool = Field(default=False, description="May run as several processes")
    count_setting: str | None = Field(
        default=None, description="ServiceConfig field holding the replica count"
    )
    off_request_path: bool = Field(
        default=False,
        description="Its work follows the requests instead of driving them (parsing, "
        "aggregating): it runs at lower CPU priority (ServiceConfig.background_nice), so "
        "when cores are short the request path and the server under test win them",
    )
    remote_capable: bool = Field(
        default=False,
        description="May run on another host: the ray and external backends place it "
        "there. It must read nothing from the run dir (its configure command carries the "
        "dataset inline) and talk to the mesh only through its sockets",
    )
    configure_stage: int = Field(
        default=1,
        description="Services are configured stage by stage, lowest first; what a stage's "
        "acks return (e.g. the dataset's path) is passed to the later stages",
    )


class EndpointMetadata(PluginMetadata):
    endpoint_path: str = Field(description="URL path appended to the base URL")
    supports_streaming: bool = False
    produces_tokens: bool = True
    tokenizes_input: bool = True
    metrics_title: str = "LLM Metrics"


class TransportMetadata(PluginMetadata):
    schemes: list[str] = Field(default_factory=lambda: ["http", "https"])


class TimingStrategyMetadata(PluginMetadata):
    needs_rate: bool = False
    needs_schedule: bool = False


class DatasetLoaderMetadata(PluginMetadata):
    needs_file: bool = False
    provides_timestamps: bool = False


class ExporterMetadata(PluginMetadata):
    file_name: str | None = Field(default=None, description="Artifact it writes, if any")


class EmptyMetadata(PluginMetadata):
    pass


METADATA_SCHEMAS: dict[PluginType, type[PluginMetadata]] = {
    PluginType.SERVICE: ServiceMetadata,
    PluginType.ENDPOINT: EndpointMetadata,
    PluginType.TRANSPORT: TransportMetadata,
    PluginType.TIMING_STRATEGY: TimingStrategyMetadata,
    PluginType.ARRIVAL_PATTERN: EmptyMetadata,
    PluginType.DATASET_LOADER: DatasetLoaderMetadata,
    PluginType.EXPORTER: ExporterMetadata,
    PluginType.TOKENIZER: EmptyMetadata,
}

"""Dataset manager: builds each run's dataset once and shares it as a file in the run dir.

Workers and record processors read the file when they configure, so no request ever waits
on a dataset round trip. It configures first (stage 0); the path and size it returns are
handed to every other service's configure command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_message
from aiperf.common.messages import ConfigureProfileCommand, MessageType
from aiperf.common.service import BaseComponentService
from aiperf.dataset.models import write_dataset
from aiperf.dataset.rankings import dataset_name
from aiperf.dataset.tokenizer import make_tokenizer
from aiperf.plugin import PluginType, plugins


class DatasetManager(BaseComponentService):
    service_type = "dataset_manager"

    @on_message(MessageType.CONFIGURE_PROFILE)
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        config = UserConfig.from_wire(command.user_config)
        # The rankings endpoints get query + passages instead of synthetic prompts.
        loader_class = plugins.get_class(PluginType.DATASET_LOADER, dataset_name(config))
        turns = loader_class(config, make_tokenizer(config.tokenizer)).load()
        path = Path(self.service_config.run_dir) / f"dataset-{command.run_id}.msgpack"
        write_dataset(path, turns)
        self.debug(lambda: f"dataset of {len(turns)} entries at {path}")
        return {"dataset_path": str(path), "dataset_size": len(turns)}

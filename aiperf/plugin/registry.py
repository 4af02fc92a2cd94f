"""The plugin registry: manifests in, classes out.

A manifest is YAML: top-level keys are categories (``PluginType`` values), under each a name
maps to ``class: module:Class``, ``description``, optional ``priority`` and ``metadata``.
Manifests are validated completely when they load: a bad class path, a missing field or an
unknown metadata key raises ``PluginError`` naming the file, the entry and the field. Classes
are imported lazily, on the first ``get_class``.

Precedence when two manifests define the same category and name:

1. a run-time ``register(...)`` always wins, until undone;
2. otherwise the higher ``priority`` wins (default 0);
3. at equal priority a third-party manifest (entry-point group ``aiperf.plugins``) replaces
   the built-in one, and between two third-party manifests the first loaded wins (entry
   points are loaded in order of their names) and a warning names both.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aiperf.errors import PluginError
from aiperf.plugin.enums import PluginType
from aiperf.plugin.metadata import METADATA_SCHEMAS, PluginMetadata

_CLASS_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_ENTRY_KEYS = {"class", "description", "metadata", "priority"}
BUILTIN = "builtin"
RUNTIME = "runtime"


def normalize_name(name: str) -> str:
    """``My-Endpoint`` and ``my_endpoint`` are the same plugin."""
    return name.strip().lower().replace("-", "_")


def to_category(category: PluginType | str) -> PluginType:
    if isinstance(category, PluginType):
        return category
    try:
        return PluginType(normalize_name(str(category)))
    except ValueError:
        allowed = ", ".join(p.value for p in PluginType)
        raise PluginError(f"unknown plugin category {category!r}; allowed: {allowed}") from None


@dataclass(frozen=True)
class PluginEntry:
    """One plugin: where its class lives, what it says of itself, and where it came from."""

    category: PluginType
    name: str
    class_path: str
    description: str
    metadata: PluginMetadata
    source: str
    origin: str = BUILTIN
    priority: int = 0
    loaded_class: type | None = field(default=None, compare=False)


def _load_class(entry: PluginEntry) -> type:
    if entry.loaded_class is not None:
        return entry.loaded_class
    module_name, _, attr_path = entry.class_path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"{entry.source}: {entry.category.value}.{entry.name}: cannot import "
            f"class {entry.class_path!r}: {exc}"
        ) from exc
    return obj


class Registry:
    """Holds every known plugin; ``plugins`` in ``aiperf.plugin`` is the process-wide one."""

    def __init__(self) -> None:
        self._entries: dict[PluginType, dict[str, PluginEntry]] = {p: {} for p in PluginType}
        self._classes: dict[tuple[PluginType, str], type] = {}
        self._loaded = False

    # -- loading ---------------------------------------------------------------------------

    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from aiperf.plugin.discovery import builtin_manifest_path, third_party_manifests

        self.load_manifest(builtin_manifest_path(), origin=BUILTIN)
        for path in third_party_manifests():
            self.load_manifest(path, origin=str(path))

    def load_manifest(self, path: Path | str, origin: str = BUILTIN) -> list[PluginEntry]:
        """Validate and add every entry of the manifest at ``path``."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PluginError(f"{path}: cannot read plugins manifest: {exc}") from exc
        return self.load_mapping(data, source=str(path), origin=origin)

    def load_mapping(
        self, data: dict[str, Any], source: str, origin: str = BUILTIN
    ) -> list[PluginEntry]:
        if not isinstance(data, dict):
            raise PluginError(f"{source}: a plugins manifest must be a mapping of categories")
        entries = [
            self._parse_entry(category_key, name, body, source, origin)
            for category_key, block in data.items()
            if category_key != "schema_version"
            for name, body in self._category_block(category_key, block, source).items()
        ]
        for entry in entries:
            self._add(entry)
        return entries

    @staticmethod
    def _category_block(key: str, block: Any, source: str) -> dict[str, Any]:
        try:
            to_category(key)
        except PluginError as exc:
            raise PluginError(f"{source}: {exc}") from None
        if not isinstance(block, dict):
            raise PluginError(f"{source}: {key}: expected a mapping of plugin names")
        return block

    @staticmethod
    def _parse_entry(
        category_key: str, name: str, body: Any, source: str, origin: str
    ) -> PluginEntry:
        category = to_category(category_key)
        where = f"{source}: {category.value}.{name}"
        if not isinstance(body, dict):
            raise PluginError(f"{where}: expected a mapping with 'class' and 'description'")
        unknown = set(body) - _ENTRY_KEYS
        if unknown:
            raise PluginError(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}"
            )
        for required in ("class", "description"):
            if required not in body:
                raise PluginError(f"{where}: missing field {required!r}")
        class_path = str(body["class"])
        if not _CLASS_PATH.match(class_path):
            raise PluginError(
                f"{where}: field 'class': {class_path!r} is not of the form 'module:Class'"
            )
        module_name = class_path.partition(":")[0]
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise PluginError(f"{where}: field 'class': module {module_name!r} is not importable")
        schema = METADATA_SCHEMAS[category]
        try:
            metadata = schema.model_validate(body.get("metadata") or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"metadata.{'.'.join(map(str, err['loc']))}: {err['msg']}"
                for err in exc.errors()
            )
            allowed = ", ".join(schema.model_fields)
            raise PluginError(f"{where}: {problems} (allowed metadata keys: {allowed})") from None
        return PluginEntry(
            category=category,
            name=normalize_name(name),
            class_path=class_path,
            description=str(body["description"]),
            metadata=metadata,
            source=source,
            origin=origin,
            priority=int(body.get("priority", 0)),
        )

    def _add(self, entry: PluginEntry) -> None:
        existing = self._entries[entry.category].get(entry.name)
        if existing is not None and not self._replaces(entry, existing):
            return
        self._entries[entry.category][entry.name] = entry
        self._classes.pop((entry.category, entry.name), None)

    @staticmethod
    def _replaces(new: PluginEntry, old: PluginEntry) -> bool:
        if new.origin == RUNTIME or old.origin == RUNTIME:
            return new.origin == RUNTIME
        if new.priority != old.priority:
            return new.priority > old.priority
        if old.origin == BUILTIN or new.origin == BUILTIN:
            return new.origin != BUILTIN
        warnings.warn(
            f"plugin {new.category.value}.{new.name} is defined by {old.source} and "
            f"{new.source}; keeping {old.source} (set 'priority' to choose)",
            stacklevel=4,
        )
        return False

    # -- lookup ----------------------------------------------------------------------------

    def get_entry(self, category: PluginType | str, name: str) -> PluginEntry:
        self.ensure_loaded()
        cat = to_category(category)
        entry = self._entries[cat].get(normalize_name(name))
        if entry is None:
            available = ", ".join(sorted(self._entries[cat])) or "(none)"
            raise PluginError(f"unknown {cat.value} plugin {name!r}; available: {available}")
        return entry

    def get_class(self, category: PluginType | str, name: str) -> type:
        entry = self.get_entry(category, name)
        key = (entry.category, entry.name)
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = _load_class(entry)
        return cls

    def get_metadata(self, category: PluginType | str, name: str) -> PluginMetadata:
        return self.get_entry(category, name).metadata

    def entries(self, category: PluginType | str) -> list[PluginEntry]:
        self.ensure_loaded()
        return sorted(self._entries[to_category(category)].values(), key=lambda e: e.name)

    def names(self, category: PluginType | str) -> list[str]:
        return [entry.name for entry in self.entries(category)]

    # -- run-time registration -------------------------------------------------------------

    def register(
        self,
        category: PluginType | str,
        name: str,
        cls: type,
        description: str = "",
        metadata: PluginMetadata | dict[str, Any] | None = None,
    ) -> PluginEntry | None:
        """Register ``cls`` under ``name``; returns what it replaced (for ``unregister``)."""
        self.ensure_loaded()
        cat = to_category(category)
        key = normalize_name(name)
        previous = self._entries[cat].get(key)
        if metadata is None:
            meta = previous.metadata if previous else METADATA_SCHEMAS[cat].model_validate({})
        elif isinstance(metadata, PluginMetadata):
            meta = metadata
        else:
            meta = METADATA_SCHEMAS[cat].model_validate(metadata)
        self._entries[cat][key] = PluginEntry(
            category=cat,
            name=key,
            class_path=f"{cls.__module__}:{cls.__qualname__}",
            description=description or (cls.__doc__ or "").strip().split("\n")[0],
            metadata=meta,
            source=RUNTIME,
            origin=RUNTIME,
            loaded_class=cls,
        )
        self._classes[(cat, key)] = cls
        return previous

    def unregister(
        self, category: PluginType | str, name: str, restore: PluginEntry | None = None
    ) -> None:
        """Undo ``register``: put back ``restore`` (what it replaced) or drop the name."""
        cat = to_category(category)
        key = normalize_name(name)
        self._classes.pop((cat, key), None)
        if restore is None:
            self._entries[cat].pop(key, None)
        else:
            self._entries[cat][key] = restore

    @contextmanager
    def registered(
        self,
        category: PluginType | str,
        name: str,
        cls: type,
        metadata: PluginMetadata | dict[str, Any] | None = None,
    ) -> Iterator[PluginEntry]:
        previous = self.register(category, name, cls, metadata=metadata)
        try:
            yield self.get_entry(category, name)
        finally:
            self.unregister(category, name, restore=previous)

    def runtime_manifest(self) -> dict[str, Any]:
        """Run-time registrations as a manifest mapping, so a child process (the mesh's
        controller) can register the same classes by import path."""
        out: dict[str, Any] = {}
        for category, entries in self._entries.items():
            for entry in entries.values():
                if entry.origin != RUNTIME:
                    continue
                out.setdefault(category.value, {})[entry.name] = {
                    "class": entry.class_path,
                    "description": entry.description or entry.name,
                    "metadata": entry.metadata.model_dump(exclude_defaults=True),
                }
        return out

    def reset(self) -> None:
        """Forget everything; the next lookup loads the manifests again."""
        self._entries = {p: {} for p in PluginType}
        self._classes.clear()
        self._loaded = False

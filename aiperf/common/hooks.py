"""Lifecycle and message hooks for services.

A decorator only tags the function; ``collect_hooks`` finds the tags along the class's MRO
when the class is defined, so a service's hooks are known before any instance exists and a
subclass inherits (and can add to) its base's hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from aiperf.common.messages import MessageType

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__aiperf_hooks__"


class HookKind(StrEnum):
    ON_INIT = "on_init"
    ON_START = "on_start"
    ON_STOP = "on_stop"
    ON_MESSAGE = "on_message"
    BACKGROUND_TASK = "background_task"


@dataclass(frozen=True)
class HookSpec:
    kind: HookKind
    message_types: tuple[MessageType, ...] = ()
    interval: float | None = None


def _tag(spec: HookSpec) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        specs = list(getattr(func, _ATTR, ()))
        specs.append(spec)
        setattr(func, _ATTR, tuple(specs))
        return func

    return decorate


def on_init(func: F) -> F:
    """Runs once after the service's sockets are connected, before it registers."""
    return _tag(HookSpec(HookKind.ON_INIT))(func)


def on_start(func: F) -> F:
    """Runs once after the service has registered with the controller."""
    return _tag(HookSpec(HookKind.ON_START))(func)


def on_stop(func: F) -> F:
    """Runs once when the service stops, before its sockets close."""
    return _tag(HookSpec(HookKind.ON_STOP))(func)


def on_message(*message_types: MessageType) -> Callable[[F], F]:
    """Handle these message types, from the controller or the bus (subscribed during init).
    A handler of a ``Command`` may return a dict: it travels back in the ``CommandAck``."""
    return _tag(HookSpec(HookKind.ON_MESSAGE, message_types=tuple(message_types)))


def background_task(interval: float) -> Callable[[F], F]:
    """Run every ``interval`` seconds from start until stop."""
    return _tag(HookSpec(HookKind.BACKGROUND_TASK, interval=interval))


@dataclass(frozen=True)
class BoundHook:
    spec: HookSpec
    name: str


def collect_hooks(cls: type) -> list[BoundHook]:
    """Hooks of ``cls`` in definition order, bases first; an override replaces its base's."""
    seen: dict[str, BoundHook] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            for spec in getattr(value, _ATTR, ()):
                seen[f"{name}:{spec.kind.value}:{spec.message_types}"] = BoundHook(spec, name)
    return list(seen.values())

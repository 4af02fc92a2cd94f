from __future__ import annotations

from aiperf.common.hooks import HookKind, background_task, collect_hooks, on_init, on_message
from aiperf.common.messages import MessageType


class Base:
    @on_init
    async def setup(self) -> None: ...

    @on_message(MessageType.CONFIGURE_PROFILE)
    async def configure(self, msg: object) -> None: ...


class Child(Base):
    @on_init
    async def setup_more(self) -> None: ...

    @background_task(interval=0.5)
    async def tick(self) -> None: ...


def test_hooks_are_collected_bases_first() -> None:
    hooks = collect_hooks(Child)
    inits = [h.name for h in hooks if h.spec.kind is HookKind.ON_INIT]
    assert inits == ["setup", "setup_more"]


def test_message_hooks_carry_their_types_and_tasks_their_interval() -> None:
    hooks = {h.name: h.spec for h in collect_hooks(Child)}
    assert hooks["configure"].message_types == (MessageType.CONFIGURE_PROFILE,)
    assert hooks["tick"].interval == 0.5


def test_an_override_without_the_decorator_keeps_the_base_hook_name() -> None:
    class Override(Base):
        async def configure(self, msg: object) -> None: ...

    names = [h.name for h in collect_hooks(Override)]
    assert names.count("configure") == 1

"""Follows the definitions topic: every worker switches pattern files, no restart."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..patternstore import follow

if TYPE_CHECKING:
    from ..app import Runtime


def register_definitions_follower(runtime: Runtime) -> None:
    stopping = asyncio.Event()

    @runtime.app.task
    async def follow_definitions() -> None:
        await follow(
            runtime.bootstrap,
            runtime.settings.definitions_topic,
            runtime.use_definitions,
            stopping,
        )

    @runtime.app.on_before_shutdown.connect
    async def _stop_following(app: object, **_: object) -> None:
        stopping.set()

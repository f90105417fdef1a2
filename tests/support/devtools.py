"""The few Chrome DevTools protocol calls the browser tests need, over aiohttp's websocket client (no new
dependency: MLflow already brings aiohttp)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

PAGE_TIMEOUT = 180.0  # seconds for a page to render on a loaded 2-core machine


class DevTools:
    """The few DevTools protocol calls these tests need: navigate, evaluate, wait for a condition."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.n = ws, 0

    async def call(self, method: str, **params: Any) -> dict:
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    async def until(self, expression: str, what: str = "the expected page", timeout: float = PAGE_TIMEOUT) -> Any:
        """The first truthy value of ``expression``, polled; on timeout, says ``what`` and what the page shows."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                shown = await self.js("document.title + ' | ' + location.hash + ' | ' + document.body.innerText")
                raise AssertionError(f"never saw {what} within {timeout:.0f}s; the page shows: {shown[:1500]}")
            await asyncio.sleep(0.5)

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

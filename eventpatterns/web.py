"""The worker's HTTP endpoints (SPEC section 8), on Faust's web server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View

if TYPE_CHECKING:
    from .app import Runtime


def register_web(runtime: Runtime) -> None:
    app = runtime.app

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body: Any = runtime.metrics.render()
            return self.bytes(body, content_type="text/plain; version=0.0.4")

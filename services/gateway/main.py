"""Gateway process: build settings, serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from libs.common.logs import configure_logging
from libs.common.metrics import serve_metrics
from libs.common.settings import GatewaySettings
from libs.common.telemetry import setup_tracing
from services.gateway.app import StartupError, create_app
from services.gateway.http_limits import HttpLimits, limited_http_protocol


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level, "gateway", settings.log_format)
    setup_tracing("documind-gateway", settings.traces_exporter)
    try:
        app = create_app(settings)
    except StartupError as exc:
        raise SystemExit(f"gateway: {exc}") from None
    serve_metrics("gateway", settings.metrics_port, settings.metrics_host)
    uvicorn.run(
        app,
        log_config=None,  # uvicorn's lines go through the process's (JSON) logging
        host=settings.host,
        port=settings.port,
        # httptools with bounds on header size and count and on slow clients.
        http=limited_http_protocol(
            HttpLimits(
                max_header_bytes=settings.max_header_bytes,
                max_headers=settings.max_headers,
                header_timeout_s=settings.header_timeout_s,
                body_timeout_s=settings.body_timeout_s,
            )
        ),
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

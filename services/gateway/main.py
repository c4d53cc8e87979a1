"""Gateway process: build settings, serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from libs.common.logs import configure_logging
from libs.common.metrics import serve_metrics
from libs.common.settings import GatewaySettings
from libs.common.telemetry import setup_tracing
from services.gateway.app import StartupError, create_app


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
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

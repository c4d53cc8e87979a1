"""Gateway process: build settings, serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from libs.common.service import configure_logging
from libs.common.settings import GatewaySettings
from services.gateway.app import create_app


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level, "gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

"""What routes take from the application's state."""

from __future__ import annotations

from fastapi import Request

from libs.common.settings import GatewaySettings
from services.gateway.submit import Submitter


def submitter(request: Request) -> Submitter:
    sub: Submitter = request.app.state.submitter
    return sub


def settings(request: Request) -> GatewaySettings:
    s: GatewaySettings = request.app.state.settings
    return s

"""Every typed key of the application and of requests."""

from __future__ import annotations

from aiohttp import web

from .config import Settings
from .services import Services
from .visibility import Viewer

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
VIEWER: web.RequestKey[Viewer | None] = web.RequestKey("viewer")  # None is the public
# The request body as read (api/common.read_body), kept so a request that lost a write race can run again.
BODY: web.RequestKey[bytes] = web.RequestKey("body")

"""Every typed key of the application and of requests."""

from __future__ import annotations

from aiohttp import web

from .config import Settings
from .services import Services
from .visibility import Viewer

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
VIEWER: web.RequestKey[Viewer | None] = web.RequestKey("viewer")  # None is the public

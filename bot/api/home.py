"""``/``: a plain home page that tells a newcomer what is running and where to go next."""

from __future__ import annotations

import html
from importlib.resources import files

from aiohttp import web

from bot import __version__
from bot.api.keys import SETTINGS
from bot.api.routes import Route

_PAGE = files("bot").joinpath("static/home.html").read_text(encoding="utf-8")


async def home(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    base = html.escape(settings.server.base_url)
    voice = settings.media.url().replace("http", "ws", 1) + "/media/browser"
    page = (
        _PAGE.replace("__VERSION__", __version__)
        .replace("__BASE__", base)
        .replace("__VOICE_URL__", html.escape(voice) if settings.media.manage else "")
    )
    return web.Response(text=page, content_type="text/html")


ROUTES = [Route("GET", "/", home, "Home page", tag="ops")]

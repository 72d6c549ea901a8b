"""The station's web app (Starlette): the HTTP + WebSocket API and the two pages.

Routes (all JSON unless noted; docs/station.md has curl examples):

========================  =====================================================================
``GET  /``                the technician console (static HTML)
``GET  /runner``          the runner display (static HTML)
``GET  /static/...``      the pages' scripts and styles (package data; no CDN)
``GET  /data/...``        the runner folders' reports (``…_report/index.html``)
``GET  /api/state``       everything the pages show (:meth:`Station.state`)
``GET  /api/health``      the devices' health
``POST /api/runner``      register/select the runner ``{"id", "body_mass_kg", "leg_length_mm"}``
``GET|PUT /api/feedback`` the runner display's settings (cues, bands, window, fading, metronome)
``POST /api/tare``        re-measure the force plate's zero (belt unloaded) ``{"seconds"}``
``GET  /api/trials``      every trial of every runner
``POST /api/trials``      start a trial ``{"kind", "speed_m_s", "duration_s", "note"}``
``POST /api/trials/stop`` stop the recording trial
``WS   /ws``              pushed messages ``state`` (2/s), ``plot`` (10/s), ``step`` (toe off);
                          ``?streams=state,step`` picks some; the page sends
                          ``{"type": "shown", "n", "t_ms", "trial"}`` after drawing a step
========================  =====================================================================

Errors are ``{"error": "<field>: <why>", "field": ...}`` with 400 (bad value), 404, 409 (refused
now: no runner, a trial recording, a device unhealthy) or 401 (token).

Access: with a ``token`` every request needs it — ``Authorization: Bearer <token>``, ``?token=``
(which also sets a cookie, so a browser opened at ``/?token=…`` keeps working) or that cookie.
:func:`treadlab.pipeline.station.server.run_station` requires a token for any address other than
loopback.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from treadlab.pipeline.station.store import RequestError

log = logging.getLogger(__name__)

__all__ = ["create_app", "STATIC_DIR"]

STATIC_DIR = Path(str(resources.files("treadlab.pipeline.station").joinpath("static")))
STREAMS = ("state", "plot", "step")
COOKIE = "treadlab_station_token"


def dumps(msg) -> str:
    """JSON with NaN and infinities as ``null`` (browsers reject bare NaN)."""
    try:
        return json.dumps(msg, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(msg), allow_nan=False, separators=(",", ":"))


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json(data, status: int = 200) -> JSONResponse:
    return JSONResponse(_finite(data), status_code=status)


def _error(exc: RequestError) -> JSONResponse:
    return _json({"error": str(exc), "field": exc.field}, exc.status)


class _Hub:
    """Fans the station's messages out to the WebSocket clients (one queue per client)."""

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: dict = {}          # queue → set of streams
        self.dropped = 0

    def publish(self, kind: str, message: dict) -> None:
        """Station thread → event loop; returns at once."""
        loop = self.loop
        if loop is None or not self.clients:
            return
        text = dumps(message)
        try:
            loop.call_soon_threadsafe(self._dispatch, kind, text)
        except RuntimeError:  # the loop is closing
            pass

    def _dispatch(self, kind: str, text: str) -> None:
        for q, streams in list(self.clients.items()):
            if kind not in streams:
                continue
            if q.full() and kind == "plot":
                self.dropped += 1        # a slow console misses plot points, never steps
                continue
            if q.full():
                try:
                    q.get_nowait()
                    self.dropped += 1
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait(text)


class _TokenGate:
    """ASGI middleware: every HTTP request and WebSocket needs the token (when one is set)."""

    def __init__(self, app, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if self.token is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        given = None
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        from_query = conn.query_params.get("token")
        given = given or from_query or conn.cookies.get(COOKIE)
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            resp = JSONResponse({"error": "token: missing or wrong (Authorization: Bearer "
                                          "<token>, ?token= or the cookie)", "field": "token"},
                                status_code=401)
            await resp(scope, receive, send)
            return
        if from_query and scope["type"] == "http":
            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers.append((b"set-cookie", f"{COOKIE}={self.token}; Path=/; HttpOnly; "
                                                   f"SameSite=Strict".encode()))
                    message = dict(message, headers=headers)
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        await self.app(scope, receive, send)


def create_app(station, token: str | None = None, *, start_station: bool = True) -> Starlette:
    """The Starlette app around ``station`` (a :class:`~treadlab.pipeline.station.core.Station`).

    With ``start_station`` the app's lifespan starts the station (devices, pump, worker) and
    stops it on shutdown (SIGTERM under uvicorn).
    """
    hub = _Hub()

    async def body(request: Request) -> dict:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RequestError("body", f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RequestError("body", "expected a JSON object")
        return data

    def handler(fn):
        async def wrapped(request: Request):
            try:
                return await fn(request)
            except RequestError as exc:
                return _error(exc)
        return wrapped

    @handler
    async def state(request):
        return _json(station.state())

    @handler
    async def health(request):
        return _json(station.health())

    @handler
    async def runner(request):
        if request.method == "GET":
            return _json(station.runner or {})
        data = await body(request)
        return _json(await run_in_threadpool(station.set_runner, data))

    @handler
    async def feedback(request):
        if request.method == "GET":
            return _json(station.feedback.as_dict())
        data = await body(request)
        return _json(station.set_feedback(data))

    @handler
    async def tare(request):
        data = await body(request)
        unknown = set(data) - {"seconds"}
        if unknown:
            raise RequestError(f"tare.{sorted(unknown)[0]}", "unknown field; known: seconds")
        return _json(await run_in_threadpool(station.tare, data.get("seconds")))

    @handler
    async def trials(request):
        if request.method == "GET":
            return _json(station.state()["trials"])
        data = await body(request)
        return _json(await run_in_threadpool(station.start_trial, data), 201)

    @handler
    async def stop(request):
        await body(request)
        return _json(await run_in_threadpool(station.stop_trial))

    @handler
    async def one_trial(request):
        tid = f"{request.path_params['runner']}/{request.path_params['stem']}"
        for t in station.state()["trials"]:
            if t["id"] == tid:
                return _json(t)
        raise RequestError("trial", f"no trial {tid!r}", 404)

    async def page(name: str):
        path = STATIC_DIR / name
        return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

    async def console(request):
        return await page("console.html")

    async def runner_page(request):
        return await page("runner.html")

    async def favicon(request):
        return Response(status_code=204)

    async def ws(websocket: WebSocket):
        wanted = websocket.query_params.get("streams")
        streams = set(STREAMS)
        if wanted:
            streams = {s.strip() for s in wanted.split(",") if s.strip()}
            bad = streams - set(STREAMS)
            if bad:
                await websocket.close(code=4400, reason=f"streams: unknown {sorted(bad)[0]!r}")
                return
        await websocket.accept()
        q: asyncio.Queue = asyncio.Queue(maxsize=500)
        hub.clients[q] = streams
        await websocket.send_text(dumps(station.state()))

        async def sender():
            try:
                while True:
                    await websocket.send_text(await q.get())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the page reconnects when its socket closes
                log.warning("WebSocket send failed (%s: %s); closing it",
                            type(exc).__name__, exc)
                hub.clients.pop(q, None)
                try:
                    await websocket.close(code=1011)
                except Exception:  # already closed
                    pass

        task = asyncio.create_task(sender())
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    msg = json.loads(text)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("type") == "shown":
                    try:
                        station.shown_on_page(int(msg["n"]), float(msg["t_ms"]),
                                              msg.get("trial"))
                    except (KeyError, TypeError, ValueError):
                        log.debug("ignoring a malformed 'shown' message: %s", text[:200])
        except WebSocketDisconnect:
            pass
        finally:
            hub.clients.pop(q, None)
            task.cancel()

    async def not_found(request, exc):
        if request.url.path.startswith("/api/"):
            return _json({"error": f"{request.url.path}: no such endpoint", "field": "path"}, 404)
        return PlainTextResponse("not found", status_code=404)

    async def not_allowed(request, exc):
        return _json({"error": f"{request.method} {request.url.path}: method not allowed",
                      "field": "method"}, 405)

    @asynccontextmanager
    async def lifespan(app):
        hub.loop = asyncio.get_running_loop()
        station.subscribe(hub.publish)
        if start_station:
            await run_in_threadpool(station.start)
        try:
            yield
        finally:
            station.unsubscribe(hub.publish)
            if start_station:
                await run_in_threadpool(station.stop)

    routes = [
        Route("/", console),
        Route("/runner", runner_page),
        Route("/favicon.ico", favicon),
        Route("/api/state", state),
        Route("/api/health", health),
        Route("/api/runner", runner, methods=["GET", "POST"]),
        Route("/api/feedback", feedback, methods=["GET", "PUT"]),
        Route("/api/tare", tare, methods=["POST"]),
        Route("/api/trials", trials, methods=["GET", "POST"]),
        Route("/api/trials/stop", stop, methods=["POST"]),
        Route("/api/trials/{runner}/{stem}", one_trial),
        WebSocketRoute("/ws", ws),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        Mount("/data", app=StaticFiles(directory=station.store.root, html=True), name="data"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: not_found, 405: not_allowed})
    app.state.hub = hub
    app.state.station = station
    app.add_middleware(_TokenGate, token=token)
    return app

"""The FastAPI application: one route per page, each answering HTML or its JSON twin.

A page's data comes from :mod:`monitor.queries` as a plain dict; the same dict is rendered by a
Jinja2 template or returned as JSON (when the URL has ``?json`` or the request prefers
``application/json``). Handlers are plain functions, so FastAPI runs them in its thread pool and
the blocking database reads never stall the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ailuro.display import printable
from ailuro.errors import InvalidArgument, NotFound, ResourceExhausted
from ddm.locations import StorageLocations
from monitor import logs, svg
from monitor.config import MonitorConfig
from monitor.db import MonitorDatabase
from monitor.filters import ANONYMOUS_ADMIN, FACETS, JobFilter, Viewer, parse_filter, parse_page
from monitor.metrics import make_registry, render
from monitor.queries import ddm as ddmq
from monitor.queries import jobs as jobq
from monitor.queries import plots as plotq
from monitor.queries import summary

HERE = Path(__file__).parent
STATE_COLORS = {
    "defined": "#a0aec0",
    "assigned": "#b7791f",
    "activated": "#d69e2e",
    "sent": "#63b3ed",
    "starting": "#4299e1",
    "running": "#2b6cb0",
    "holding": "#6b46c1",
    "transferring": "#805ad5",
    "finished": "#38a169",
    "failed": "#c53030",
    "cancelled": "#718096",
    "closed": "#4a5568",
}
NAV = (
    ("jobs", "/jobs/", "Jobs"),
    ("tasks", "/tasks/", "Tasks"),
    ("sites", "/sites/", "Sites"),
    ("pilots", "/pilots/", "Pilots"),
    ("errors", "/errors/", "Errors"),
    ("users", "/users/", "Users"),
    ("datasets", "/datasets/", "Datasets"),
    ("transfers", "/transfers/", "Transfers"),
    ("plots", "/plots/", "Plots"),
)


def wants_json(request: Request) -> bool:
    """``?json`` in the URL, or an Accept header asking for JSON rather than HTML."""
    if "json" in request.query_params:
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def viewer_of(_request: Request) -> Viewer:
    """Who is asking. Authentication is a later issue: until then every viewer sees everything."""
    return ANONYMOUS_ADMIN


def fmt_time(value: float | None) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` UTC (empty for None)."""
    if value is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))


def fmt_bytes(value: int) -> str:
    """Bytes in binary units."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def visible_text(value: Any) -> Any:
    """Jinja's ``finalize`` hook: every ``{{ value }}`` a page prints goes through
    :func:`ailuro.display.printable`, so control characters in stored text (ESC sequences, bidi
    overrides) show as ``\x1b``-style escapes; HTML escaping still follows. Markup built by the
    monitor itself stays markup (``printable`` only touches control characters, never HTML)."""
    if isinstance(value, Markup):
        return Markup(printable(str(value)))
    if isinstance(value, str):
        return printable(value)
    return value


def make_templates() -> Environment:
    """The Jinja2 environment (autoescaping on: every value from the database is untrusted; control
    characters are made visible by :func:`visible_text`)."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        finalize=visible_text,
    )
    env.filters["ts"] = fmt_time
    env.filters["bytes"] = fmt_bytes
    env.globals["STATE_COLORS"] = STATE_COLORS
    env.globals["NAV"] = NAV
    env.globals["FACETS"] = list(FACETS)
    env.globals["link"] = link
    return env


def link(path: str, params: Mapping[str, Any]) -> str:
    """``path?params`` with empty values dropped."""
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(clean)}" if clean else path


def create_app(config: MonitorConfig, *, db: MonitorDatabase | None = None) -> FastAPI:
    """The monitor application over ``config.db_url`` (or an already opened ``db``)."""
    database = db or MonitorDatabase(config.db_url, pool_size=config.pool_size)
    templates = make_templates()
    registry = make_registry(database)
    app = FastAPI(title="Ailuro monitor", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = database
    locations = StorageLocations.from_config(config.storage, roots=config.log_roots)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def respond(request: Request, page: str, data: dict[str, Any], template: str, **extra: Any) -> Response:
        body = {"page": page, "generated": time.time(), **data}
        if wants_json(request):
            return JSONResponse(body)
        html = templates.get_template(template).render(
            request_path=request.url.path,
            query=dict(request.query_params),
            current=page,
            data=body,
            refresh_s=config.refresh_s,
            **extra,
        )
        return HTMLResponse(html)

    def page_of(
        request: Request, page: str, template: str, build: Callable[[Any, JobFilter, Viewer], dict[str, Any]]
    ) -> Response:
        flt = parse_filter(request.query_params)
        with database.read() as conn:
            data = build(conn, flt, viewer_of(request))
        return respond(request, page, data, template, flt=flt)

    @app.exception_handler(InvalidArgument)
    def _bad_request(request: Request, exc: InvalidArgument) -> Response:
        return _error(request, 400, f"{exc.field}: {exc}" if exc.field else str(exc), field=exc.field or "")

    @app.exception_handler(NotFound)
    def _not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(ResourceExhausted)
    def _too_large(request: Request, exc: ResourceExhausted) -> Response:
        return _error(request, 413, str(exc), field=exc.field or "")

    def _error(request: Request, status: int, message: str, *, field: str = "") -> Response:
        if wants_json(request):
            return JSONResponse({"error": message, "field": field}, status_code=status)
        html = templates.get_template("error.html").render(
            current="",
            data={"error": message},
            status=status,
            refresh_s=0,
            query={},
            request_path=request.url.path,
        )
        return HTMLResponse(html, status_code=status)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return RedirectResponse("/jobs/")

    @app.get("/jobs", include_in_schema=False)
    @app.get("/jobs/")
    def jobs_view(request: Request) -> Response:
        flt = parse_filter(request.query_params)
        page = parse_page(request.query_params)
        with database.read() as conn:
            data = jobq.jobs_page(conn, flt, page, viewer_of(request))
        return respond(request, "jobs", data, "jobs.html", flt=flt, pg=page)

    @app.get("/job/{panda_id}")
    def job_view(request: Request, panda_id: int) -> Response:
        with database.read() as conn:
            data = jobq.job_detail(conn, panda_id, viewer_of(request))
            if data is None:
                raise NotFound(f"job {panda_id} not found")
            log = logs.find_log(conn, panda_id, locations)
            data["ddm"] = ddmq.job_requests(conn, panda_id, now=time.time())
        data["log"] = None if log is None else log.as_dict()
        return respond(request, "job", data, "job.html")

    def _log_of(request: Request, panda_id: int) -> logs.LogFile:
        with database.read() as conn:
            if jobq.job_detail(conn, panda_id, viewer_of(request)) is None:
                raise NotFound(f"job {panda_id} not found")
            log = logs.find_log(conn, panda_id, locations)
        if log is None:
            raise NotFound(f"job {panda_id} has no log file")
        if log.location is None:
            raise NotFound(f"log of job {panda_id} cannot be served: {log.reason}")
        return log

    @app.get("/job/{panda_id}/log")
    def job_log(request: Request, panda_id: int) -> Response:
        log = _log_of(request, panda_id)
        assert log.location is not None
        # percent-encoded as FileResponse does: an lfn is submitter data and must not shape the header
        headers = {"Content-Disposition": f"attachment; filename*=utf-8''{quote(log.lfn)}"}
        return StreamingResponse(logs.iter_file(log.location), media_type="application/gzip", headers=headers)

    @app.get("/job/{panda_id}/{view}")
    def job_log_member(request: Request, panda_id: int, view: str) -> Response:
        if view not in logs.MEMBERS:
            raise NotFound(f"no page {view!r} (one of: {', '.join(logs.MEMBERS)}, log)")
        log = _log_of(request, panda_id)
        assert log.location is not None
        found = logs.read_member(log.location, view)
        if found is None:
            raise NotFound(f"{logs.MEMBERS[view]} is not in {log.lfn}")
        text, truncated = found
        data = {
            "pandaid": panda_id,
            "view": view,
            "member": logs.MEMBERS[view],
            "lfn": log.lfn,
            "truncated": truncated,
            "text": text,
        }
        return respond(request, "joblog", data, "joblog.html")

    @app.get("/tasks", include_in_schema=False)
    @app.get("/tasks/")
    def tasks_view(request: Request) -> Response:
        def build(conn: Any, flt: JobFilter, viewer: Viewer) -> dict[str, Any]:
            return {**summary.tasks_page(conn, flt, viewer), "ddm_tasks": ddmq.ddm_tasks_of(conn, flt)}

        return page_of(request, "tasks", "tasks.html", build)

    @app.get("/sites", include_in_schema=False)
    @app.get("/sites/")
    def sites_view(request: Request) -> Response:
        return page_of(request, "sites", "sites.html", summary.sites_page)

    @app.get("/pilots", include_in_schema=False)
    @app.get("/pilots/")
    def pilots_view(request: Request) -> Response:
        return page_of(request, "pilots", "pilots.html", lambda conn, flt, _v: summary.pilots_page(conn, flt))

    @app.get("/errors", include_in_schema=False)
    @app.get("/errors/")
    def errors_view(request: Request) -> Response:
        return page_of(request, "errors", "errors.html", summary.errors_page)

    @app.get("/users", include_in_schema=False)
    @app.get("/users/")
    def users_view(request: Request) -> Response:
        return page_of(request, "users", "users.html", summary.users_page)

    @app.get("/datasets", include_in_schema=False)
    @app.get("/datasets/")
    def datasets_view(request: Request) -> Response:
        params = request.query_params
        return page_of(
            request, "datasets", "datasets.html", lambda conn, flt, v: ddmq.datasets_page(conn, params, flt, v)
        )

    @app.get("/dataset/{did:path}")
    def dataset_view(request: Request, did: str) -> Response:
        with database.read() as conn:
            data = ddmq.dataset_detail(conn, did, request.query_params, now=time.time())
        return respond(request, "dataset", data, "dataset.html")

    @app.get("/transfers", include_in_schema=False)
    @app.get("/transfers/")
    def transfers_view(request: Request) -> Response:
        tf = ddmq.parse_transfer_filter(request.query_params)
        with database.read() as conn:
            data = ddmq.transfers_page(conn, tf, request.query_params)
        return respond(request, "transfers", data, "transfers.html", tf=tf)

    @app.get("/plots", include_in_schema=False)
    @app.get("/plots/")
    def plots_view(request: Request) -> Response:
        flt = parse_filter(request.query_params)
        with database.read() as conn:
            data = plotq.plots_data(conn, flt, viewer_of(request))
        charts = {
            "transitions": svg.stacked_bars(
                "State transitions per hour", data["hours"], data["transitions_per_hour"], STATE_COLORS
            ),
            "completions": svg.lines("Finished jobs per hour per site", data["hours"], data["completions_per_hour"]),
            "failure_rate": svg.lines(
                "Failure rate per hour",
                data["hours"],
                {"failed / (finished + failed)": data["failure_rate_per_hour"]},
                percent=True,
                fixed_colors={"failed / (finished + failed)": STATE_COLORS["failed"]},
            ),
        }
        return respond(request, "plots", data, "plots.html", flt=flt, charts=charts)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(render(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/healthz")
    def healthz() -> Response:
        with database.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        return JSONResponse({"ok": True})

    return app

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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from ailuro.display import printable
from ailuro.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, Unauthenticated
from ddm.locations import StorageLocations
from dispatcher.shares import tree_from_config
from monitor import fmt, logs, svg
from monitor.auth import SESSION_COOKIE, Authenticator, LoginRequired, Session, bearer, queue_view
from monitor.config import MonitorConfig
from monitor.db import MonitorDatabase
from monitor.filters import (
    FACETS,
    FILTER_PARAMS,
    PAGE_PARAMS,
    WINDOW_PARAMS,
    JobFilter,
    Viewer,
    check_params,
    parse_filter,
    parse_page,
)
from monitor.login import add_login_routes, login_url
from monitor.metrics import RequestMetrics, make_registry, render
from monitor.oidc import OidcClient
from monitor.queries import audit as auditq
from monitor.queries import ddm as ddmq
from monitor.queries import entities, placement, summary
from monitor.queries import jobs as jobq
from monitor.queries import plots as plotq

HERE = Path(__file__).parent
STATE_COLORS = {
    "defined": "#64748b",
    "assigned": "#8c5a0b",
    "activated": "#a14a00",
    "sent": "#0f6e7a",
    "starting": "#4338ca",
    "running": "#1d4ed8",
    "holding": "#6b21a8",
    "transferring": "#7c3aed",
    "finished": "#276738",
    "failed": "#b91c1c",
    "cancelled": "#6b5a4e",
    "closed": "#374151",
}
"""State badge and plot colours; the same values as ``.st-<state>`` in ``static/monitor.css``."""
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


fmt_time = fmt.utc
fmt_bytes = fmt.human_bytes

KNOWN_SEGMENTS = frozenset(
    {"", "jobs", "job", "tasks", "task", "sites", "site", "pilots", "pilot", "worker", "errors", "users"}
    | {"datasets", "dataset", "transfers", "plots", "search", "metrics", "healthz", "static", "audit"}
    | {"login", "logout"}
)
"""First path segments counted as themselves in the request metrics (anything else is ``other``)."""
PLOT_CACHE_S = 30.0
"""Rendered plots are reused this long per URL (plots summarize hours; a refresh need not recount)."""
PLOT_CACHE_SIZE = 64
TOP_USERS = 3
"""Users shown per error row (the rest are folded into "+N more")."""
JOB_FILTERS = FILTER_PARAMS
"""Pages over jobs apply every job filter (facets, task, error, window)."""
NO_ERROR_FILTERS = FILTER_PARAMS - {"errorcode", "errorcomponent"}
"""Pages whose counts come from per-state counters or events, which have no error filter."""
PAGE_FILTERS: dict[str, frozenset[str]] = {
    "jobs": JOB_FILTERS | PAGE_PARAMS,
    "tasks": NO_ERROR_FILTERS | {"page"},
    "sites": WINDOW_PARAMS | {"computingsite"},
    "pilots": WINDOW_PARAMS | {"computingsite", "page"},
    "errors": JOB_FILTERS,
    "users": NO_ERROR_FILTERS,
    "datasets": WINDOW_PARAMS | {"scope", "page", "limit"},
    "dataset": frozenset({"page", "limit"}),
    "transfers": WINDOW_PARAMS | {"state", "kind", "source", "dest", "task", "job", "code", "dataset", "page", "limit"},
    "plots": NO_ERROR_FILTERS,
    "job": frozenset(),
    "joblog": frozenset(),
    "site": WINDOW_PARAMS,
    "task": frozenset({"page"}),
    "pilot": frozenset({"page"}),
    "worker": frozenset(),
    "search": frozenset({"q"}),
    "audit": auditq.PARAMS,
}
"""URL parameters each page applies; any other one is refused with a 400 naming it."""


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
    env.filters["dur"] = fmt.duration_html
    env.filters["size"] = fmt.bytes_html
    env.filters["t"] = fmt.time_html
    env.filters["ts_short"] = fmt.short_time_html
    env.filters["age"] = fmt.age_html
    env.globals["STATE_COLORS"] = STATE_COLORS
    env.globals["NAV"] = NAV
    env.globals["FACETS"] = list(FACETS)
    env.globals["link"] = link
    return env


def link(path: str, params: Mapping[str, Any]) -> str:
    """``path?params`` with empty values dropped."""
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(clean)}" if clean else path


def _charts(data: dict[str, Any], width: int) -> dict[str, str]:
    """The three plots as SVG, in ``width``-hour bins."""
    b = plotq.binned(data, width)
    per = "day" if width == 24 else "hour"
    rate_name = "failed / (finished + failed)"
    return {
        "transitions": svg.stacked_bars(
            f"State transitions per {per}", b["starts"], b["transitions"], STATE_COLORS, bin_hours=width
        ),
        "completions": svg.lines(f"Finished jobs per {per} per site", b["starts"], b["completions"], bin_hours=width),
        "failure_rate": svg.lines(
            f"Failure rate per {per}",
            b["starts"],
            {rate_name: b["failure_rate"]},
            percent=True,
            fixed_colors={rate_name: STATE_COLORS["failed"]},
            bin_hours=width,
        ),
    }


def create_app(config: MonitorConfig, *, db: MonitorDatabase | None = None) -> FastAPI:
    """The monitor application over ``config.db_url`` (or an already opened ``db``)."""
    database = db or MonitorDatabase(config.db_url, pool_size=config.pool_size)
    templates = make_templates()
    registry = make_registry(database)
    request_metrics = RequestMetrics(registry)
    app = FastAPI(title="Ailuro monitor", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def _timed(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        # the page's first path segment: a bounded label set, never a client's id or query
        first = request.url.path.strip("/").split("/", 1)[0]
        page = first if first in KNOWN_SEGMENTS else "other"
        request_metrics.observe(page, response.status_code, time.perf_counter() - started)
        return response

    app.state.db = database
    locations = StorageLocations.from_config(config.storage, roots=config.log_roots)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    authn = Authenticator(config.auth, config.queues)
    oidc = OidcClient(config.oidc, config.auth.tokens) if config.oidc is not None else None
    app.state.authn = authn
    queue_configs = {q.name: q for q in config.queues}
    share_tree = tree_from_config(config.shares, ())

    def current(request: Request) -> tuple[Viewer | None, Session | None]:
        """Who sent ``request``: a bearer token, else the session cookie, else the public view, else nobody."""
        if hasattr(request.state, "who"):
            return request.state.who  # type: ignore[no-any-return]
        token = bearer(request.headers.get("authorization", ""))
        who: tuple[Viewer | None, Session | None] = (authn.public_viewer, None)
        if token is not None:
            if not token:
                raise Unauthenticated("the Authorization header is not 'Bearer <token>'")
            who = (authn.validate(token)[0], None)
        else:
            session = authn.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
            if session is not None:
                who = (session.viewer, session)
        request.state.who = who
        return who

    def viewer_of(request: Request) -> Viewer:
        """The viewer of ``request``; LoginRequired (to the login page, or 401) when there is none."""
        viewer = current(request)[0]
        if viewer is None:
            raise LoginRequired("log in to see this monitor")
        return viewer

    def signed_in(request: Request) -> Viewer:
        """A viewer who logged in (not the anonymous ``--public`` view): logs need one."""
        viewer = viewer_of(request)
        if viewer.public:
            raise LoginRequired("log in to see job logs (the public view shows none)")
        return viewer

    def admin_of(request: Request) -> Viewer:
        """An admin viewer, or LoginRequired/PermissionDenied (HTTP 403)."""
        viewer = signed_in(request)
        if not viewer.is_admin:
            raise PermissionDenied("this page is for admins")
        return viewer

    def render_page(request: Request, template: str, **context: Any) -> str:
        try:
            viewer, session = current(request)
        except Unauthenticated:  # a bad bearer token on an error page: render it as anonymous
            viewer, session = None, None
        context.setdefault("current", "")
        context.setdefault("refresh_s", 0)
        context.setdefault("query", dict(request.query_params))
        return templates.get_template(template).render(
            request_path=request.url.path,
            viewer=viewer,
            csrf=session.csrf if session is not None else "",
            **context,
        )

    add_login_routes(app, authn, oidc, render_page)

    def respond(request: Request, page: str, data: dict[str, Any], template: str, **extra: Any) -> Response:
        check_params(request.query_params, PAGE_FILTERS[page])
        body = {"page": page, "generated": time.time(), **data}
        if wants_json(request):
            return JSONResponse(body)
        html = render_page(request, template, current=page, data=body, refresh_s=config.refresh_s, **extra)
        return HTMLResponse(html)

    def page_of(
        request: Request,
        page: str,
        template: str,
        build: Callable[[Any, JobFilter, Viewer], dict[str, Any]],
        **extra: Any,
    ) -> Response:
        check_params(request.query_params, PAGE_FILTERS[page])
        flt = parse_filter(request.query_params)
        with database.read() as conn:
            data = build(conn, flt, viewer_of(request))
        return respond(request, page, data, template, flt=flt, **extra)

    @app.exception_handler(InvalidArgument)
    def _bad_request(request: Request, exc: InvalidArgument) -> Response:
        return _error(request, 400, f"{exc.field}: {exc}" if exc.field else str(exc), field=exc.field or "")

    @app.exception_handler(NotFound)
    def _not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(ResourceExhausted)
    def _too_large(request: Request, exc: ResourceExhausted) -> Response:
        return _error(request, 413, str(exc), field=exc.field or "")

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "no such page" if exc.status_code == 404 else str(exc.detail)
        return _error(request, exc.status_code, f"{message}: {request.url.path}")

    @app.exception_handler(LoginRequired)
    def _login_required(request: Request, exc: LoginRequired) -> Response:
        if wants_json(request) or request.method != "GET":
            return _error(request, 401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="ailuro-monitor"'})
        return RedirectResponse(login_url(request), status_code=302)

    @app.exception_handler(Unauthenticated)
    def _unauthenticated(request: Request, exc: Unauthenticated) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="ailuro-monitor", error="invalid_token"'}
        return _error(request, 401, str(exc), headers=headers)

    @app.exception_handler(PermissionDenied)
    def _forbidden(request: Request, exc: PermissionDenied) -> Response:
        return _error(request, 403, str(exc))

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = first.get("loc", ())
        name = str(where[-1]) if where else ""
        return _error(request, 422, f"{name}: {first.get('msg', 'invalid value')}", field=name)

    def _error(
        request: Request, status: int, message: str, *, field: str = "", headers: dict[str, str] | None = None
    ) -> Response:
        if wants_json(request):
            return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)
        html = render_page(request, "error.html", data={"error": message}, status=status, query={})
        return HTMLResponse(html, status_code=status, headers=headers)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        query = request.url.query
        return RedirectResponse(f"/jobs/?{query}" if query else "/jobs/")

    @app.get("/jobs", include_in_schema=False)
    @app.get("/jobs/")
    def jobs_view(request: Request) -> Response:
        check_params(request.query_params, PAGE_FILTERS["jobs"])
        flt = parse_filter(request.query_params)
        page = parse_page(request.query_params)
        with database.read() as conn:
            data = jobq.jobs_page(conn, flt, page, viewer_of(request))
        return respond(request, "jobs", data, "jobs.html", flt=flt, pg=page)

    @app.get("/job", include_in_schema=False)
    @app.get("/job/", include_in_schema=False)
    def job_by_query(request: Request) -> Response:
        """BigPanDA's ``/job?pandaid=N`` form: redirect to ``/job/N``."""
        check_params(request.query_params, frozenset({"pandaid"}))
        raw = request.query_params.get("pandaid", "").strip()
        if not raw.isdigit():
            raise InvalidArgument(f"must be a PandaID (digits), got {raw!r}", field="pandaid")
        return RedirectResponse(f"/job/{int(raw)}", status_code=303)

    @app.get("/job/{panda_id}")
    def job_view(request: Request, panda_id: int) -> Response:
        viewer = viewer_of(request)
        with database.read() as conn:
            data = jobq.job_detail(conn, panda_id, viewer)
            if data is None:
                raise NotFound(f"job {panda_id} not found")
            log = None if viewer.public else logs.find_log(conn, panda_id, locations)
            data["ddm"] = ddmq.job_requests(conn, panda_id, now=time.time())
            # a waiting job: ``ailuro job why``'s answer, from the same function ExplainJob calls
            data["why"] = placement.why(
                conn, panda_id, queue_configs, share_tree, now=time.time(), max_ranked=config.why_max_ranked
            )
        data["log"] = None if log is None else log.as_dict()
        data["log_hidden"] = viewer.public  # logs may name hosts, paths, credentials: signed-in viewers only
        return respond(request, "job", data, "job.html")

    def _log_of(request: Request, panda_id: int) -> logs.LogFile:
        viewer = signed_in(request)
        with database.read() as conn:
            if jobq.job_detail(conn, panda_id, viewer) is None:
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
            page = parse_page(request.query_params).page
            return {**summary.tasks_page(conn, flt, viewer, page), "ddm_tasks": ddmq.ddm_tasks_of(conn, flt, viewer)}

        return page_of(request, "tasks", "tasks.html", build)

    @app.get("/sites", include_in_schema=False)
    @app.get("/sites/")
    def sites_view(request: Request) -> Response:
        return page_of(request, "sites", "sites.html", summary.sites_page)

    @app.get("/pilots", include_in_schema=False)
    @app.get("/pilots/")
    def pilots_view(request: Request) -> Response:
        page = parse_page(request.query_params).page
        return page_of(request, "pilots", "pilots.html", lambda conn, flt, v: summary.pilots_page(conn, flt, v, page))

    @app.get("/errors", include_in_schema=False)
    @app.get("/errors/")
    def errors_view(request: Request) -> Response:
        return page_of(request, "errors", "errors.html", summary.errors_page, top_users=TOP_USERS)

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
        check_params(request.query_params, PAGE_FILTERS["dataset"])
        viewer = viewer_of(request)
        with database.read() as conn:
            data = ddmq.dataset_detail(conn, did, request.query_params, viewer, now=time.time())
        return respond(request, "dataset", data, "dataset.html")

    @app.get("/transfers", include_in_schema=False)
    @app.get("/transfers/")
    def transfers_view(request: Request) -> Response:
        check_params(request.query_params, PAGE_FILTERS["transfers"])
        tf = ddmq.parse_transfer_filter(request.query_params)
        viewer = viewer_of(request)
        with database.read() as conn:
            data = ddmq.transfers_page(conn, tf, request.query_params, viewer)
        return respond(request, "transfers", data, "transfers.html", tf=tf)

    plot_cache: dict[tuple[Viewer, tuple[tuple[str, str], ...]], tuple[float, dict[str, Any], dict[str, str]]] = {}

    @app.get("/plots", include_in_schema=False)
    @app.get("/plots/")
    def plots_view(request: Request) -> Response:
        check_params(request.query_params, PAGE_FILTERS["plots"])
        flt = parse_filter(request.query_params)
        viewer = viewer_of(request)
        # per viewer too: one VO's plots must never be served from another's cache entry
        key = (viewer, tuple(sorted((k, v) for k, v in request.query_params.items() if k != "json")))
        cached = plot_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < PLOT_CACHE_S:
            _, data, charts = cached
        else:
            with database.read() as conn:
                data = plotq.plots_data(conn, flt, viewer)
            charts = _charts(data, plotq.bin_hours_for(flt))
            if len(plot_cache) >= PLOT_CACHE_SIZE:
                plot_cache.clear()  # bounded: a burst of distinct URLs cannot grow memory
            plot_cache[key] = (time.monotonic(), data, charts)
        return respond(request, "plots", data, "plots.html", flt=flt, charts=charts, bin_hours=plotq.bin_hours_for(flt))

    @app.get("/site/{site}")
    def site_view(request: Request, site: str) -> Response:
        check_params(request.query_params, PAGE_FILTERS["site"])
        flt = parse_filter(request.query_params)
        viewer = viewer_of(request)
        with database.read() as conn:
            data = entities.site_detail(conn, site, flt, viewer)
        if data is None:
            raise NotFound(f"no site {site!r}: no jobs, pilots or workers name it")
        queue = queue_configs.get(site)
        data["queue"] = queue_view(queue) if queue is not None and (viewer.is_admin or site in viewer.queues) else None
        return respond(request, "site", data, "site.html", flt=flt)

    @app.get("/task/{task_id}")
    def task_view(request: Request, task_id: int) -> Response:
        check_params(request.query_params, PAGE_FILTERS["task"])
        page = parse_page(request.query_params)
        with database.read() as conn:
            data = entities.task_detail(conn, task_id, page, viewer_of(request))
        if data is None:
            raise NotFound(f"no task {task_id}: it has no jobs")
        return respond(request, "task", data, "task.html", pg=page)

    @app.get("/pilot/{pilot_id}")
    def pilot_view(request: Request, pilot_id: str) -> Response:
        with database.read() as conn:
            data = entities.pilot_detail(conn, pilot_id, viewer_of(request))
        if data is None:
            raise NotFound(f"no pilot {pilot_id!r}")
        return respond(request, "pilot", data, "pilot.html")

    @app.get("/worker/{worker_id}")
    def worker_view(request: Request, worker_id: str) -> Response:
        with database.read() as conn:
            data = entities.worker_detail(conn, worker_id, viewer_of(request))
        if data is None:
            raise NotFound(f"no worker {worker_id!r}")
        return respond(request, "worker", data, "pilot.html")

    @app.get("/search", include_in_schema=False)
    @app.get("/search/")
    def search_view(request: Request) -> Response:
        check_params(request.query_params, PAGE_FILTERS["search"])
        query = request.query_params.get("q", "")
        if len(query) > 255:
            raise InvalidArgument("at most 255 characters", field="q")
        with database.read() as conn:
            data = entities.search(conn, query, viewer_of(request))
        if data["go"] and not wants_json(request):
            return RedirectResponse(data["go"], status_code=303)
        return respond(request, "search", data, "search.html")

    @app.get("/audit", include_in_schema=False)
    @app.get("/audit/")
    def audit_view(request: Request) -> Response:
        admin_of(request)
        check_params(request.query_params, PAGE_FILTERS["audit"])
        with database.read() as conn:
            data = auditq.audit_page(conn, request.query_params)
        return respond(request, "audit", data, "audit.html")

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        admin_of(request)  # counts of every VO: for admins (Prometheus sends an admin token)
        return Response(render(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/healthz")
    def healthz() -> Response:
        with database.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        return JSONResponse({"ok": True})

    return app

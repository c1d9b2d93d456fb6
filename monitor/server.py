"""Run the monitor with uvicorn: in the foreground (``ailuro monitor``) or in a thread (tests)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from monitor.app import create_app
from monitor.config import MonitorConfig
from monitor.db import MonitorDatabase

log = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    # binding here (not in uvicorn) lets port 0 work: the caller learns the real port before serving
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class RunningMonitor:
    """A monitor served by uvicorn on a bound socket; :meth:`stop` shuts it down."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.db = MonitorDatabase(config.db_url, pool_size=config.pool_size)
        self.db.check_schema()
        self.sock = _bind(config.host, config.port)
        self.port: int = self.sock.getsockname()[1]
        app = create_app(config, db=self.db)
        tls = (
            {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
            if config.tls_cert is not None and config.tls_key is not None
            else {}
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **tls)  # type: ignore[arg-type]
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43121``."""
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        scheme = "https" if self.config.tls_cert is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (uvicorn installs the handlers)."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.db.dispose()
            self.sock.close()

    def start(self, timeout: float = 15.0) -> RunningMonitor:
        """Serve in a daemon thread; return once uvicorn accepts connections."""

        def run() -> None:
            # uvicorn installs signal handlers only in the main thread, so this one just serves
            self.server.run(sockets=[self.sock])

        self._thread = threading.Thread(target=run, name="ailuro-monitor", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the monitor did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, close the socket and the database pool."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()
        self.db.dispose()


def run_in_thread(config: MonitorConfig) -> RunningMonitor:
    """Start a monitor in a background thread (port 0 picks a free port: see ``.port``/``.url``)."""
    return RunningMonitor(config).start()


def serve(config: MonitorConfig) -> None:
    """Run the monitor in the foreground."""
    running = RunningMonitor(config)
    log.info("monitor on %s reading %s", running.url, running.db.engine.url.render_as_string(hide_password=True))
    print(f"Ailuro monitor: {running.url}/jobs/", flush=True)
    running.serve_forever()

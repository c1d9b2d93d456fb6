"""Scraping the dispatchers' ``/metrics`` during a benchmark (``bench --scrape-metrics``)."""

from __future__ import annotations

import socket
import threading
import urllib.request
from contextlib import ExitStack


def free_port_block(n: int) -> int:
    """A port P with P..P+n-1 free now (metrics ports of ``n`` workers)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65536:
            continue
        try:
            with ExitStack() as held:
                for i in range(1, n):
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no block of {n} free ports")


class Scraper:
    """GETs every ``/metrics`` endpoint every ``period_s`` from a thread (as Prometheus would)."""

    def __init__(self, ports: list[int], period_s: float) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ports, period_s), daemon=True)
        self._thread.start()

    def _run(self, ports: list[int], period_s: float) -> None:
        while not self._stop.wait(period_s):
            for port in ports:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                        r.read()
                    self.count += 1
                except OSError as exc:
                    print(f"  scrape of port {port} failed: {exc}", flush=True)

    def stop(self) -> int:
        """Stop scraping; the number of successful scrapes."""
        self._stop.set()
        self._thread.join(15)
        return self.count

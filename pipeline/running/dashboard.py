"""The dashboard of a local cluster, made when it is first asked for.

Dask's scheduler builds its dashboard (bokeh's server and every page's application) as it
starts: 0.5-1 s of imports and set-up before a worker can start, and again in the process's
exit, in every run, mostly for runs nobody watches. A local cluster's scheduler starts without
it here, but with its HTTP server on the dashboard's address, so the link is known and printed
at once; the first request to a page of that server that is not one of its own routes
(health, metrics, ...) makes the dashboard, then is redirected to the same address, which the
dashboard answers from then on.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from tornado import web

log = logging.getLogger("pipeline")

#: Where the dashboard's pages are under the scheduler's HTTP server (Dask's default prefix).
PREFIX = "/"


def scheduler_options(address: str | None) -> dict[str, Any]:
    """Keyword arguments of a LocalCluster (or LocalCUDACluster) for a dashboard at
    ``address`` (None: no dashboard) that :func:`install` makes on first use. Without a
    dashboard the scheduler's HTTP server (health, metrics) still starts, on a free port (on
    8787 otherwise: two runs on one host would collide, or warn)."""
    if not address:
        return {"dashboard_address": None, "scheduler_kwargs": {"dashboard_address": ":0"}}
    return {"dashboard_address": address, "scheduler_kwargs": {"dashboard": False}}


def install(cluster: Any) -> None:
    """Make ``cluster``'s dashboard when its HTTP server is first asked for a page (the
    cluster was started with :func:`scheduler_options` of an address)."""
    cluster.sync(_install, cluster.scheduler)


async def _install(scheduler: Any) -> None:
    routing = scheduler.http_application
    lock = asyncio.Lock()

    async def make() -> None:
        async with lock:
            if lazy not in routing.applications:
                return  # made by a request that came first
            routing.applications.remove(lazy)
            try:  # bokeh's imports are slow: not on the scheduler's event loop
                module = await asyncio.get_running_loop().run_in_executor(
                    None, importlib.import_module, "distributed.dashboard.scheduler"
                )
            except ImportError:  # no bokeh, or one Dask does not support: Dask's page says so
                from distributed.http.utils import get_handlers

                missing = ["distributed.http.scheduler.missing_bokeh"]
                routing.add_handlers(r".*", get_handlers(scheduler, missing, PREFIX))
                return
            module.connect(routing, scheduler.http_server, scheduler, prefix=PREFIX)
            log.debug("the dashboard is made (first request)")

    lazy = web.Application([(r"/.*", _FirstRequest, {"make": make})])
    routing.add_application(lazy)


def served() -> Any:
    """A function for ``Client.run_on_scheduler``: whether the scheduler serves a dashboard
    page (bokeh's applications, this module's lazy one, or Dask's page saying bokeh is
    missing, at ``status``). Dask's scheduler starts its HTTP server and names its port as
    the dashboard's whether or not it serves one (``dask scheduler --no-dashboard``), so the
    link a client gives is no proof: a run had printed ``dashboard: http://HOST:8787/status``
    for a scheduler where that page is a 404. Made here, so that cloudpickle sends it by value
    (a scheduler's Python may have no pipeline); True where the scheduler's server is not
    one this can read (the link is printed, as before)."""

    def serves_a_dashboard(dask_scheduler: Any) -> bool:
        app = getattr(dask_scheduler, "http_application", None)
        router = getattr(app, "wildcard_router", None)
        if app is None or router is None or not hasattr(app, "applications"):
            return True
        if app.applications:
            return True
        for rule in getattr(router, "rules", []):
            regex = getattr(getattr(rule, "matcher", None), "regex", None)
            if regex is not None and regex.pattern.rstrip("$").endswith("status"):
                return True
        return False

    return serves_a_dashboard


class _FirstRequest(web.RequestHandler):
    """A page the dashboard serves, asked for before the dashboard was made: make it, then
    send the browser to the same address again."""

    def initialize(self, make: Any) -> None:
        self.make = make

    async def get(self) -> None:
        await self.make()
        self.redirect(self.request.uri or PREFIX)

"""The web app: a Starlette application of HTML pages and the JSON API they use.

Pages (rendered from ``templates/``, their scripts and styles served from ``static/``):

- ``/``: the runs, live; ``/runs/{id}``: a run (graph, timeline, failures, how to resume);
  ``/runs/{id}/nodes/{node}``: a node (attempts and logs, key components, explain, outputs);
  ``/cache``: cache sizes and hit rates.

API (JSON; documented in ``docs/ui.md``): ``/api/runs``, ``/api/runs/{id}``,
``/api/runs/{id}/status``, ``/api/runs/{id}/nodes``, ``/api/runs/{id}/graph`` (and ``.svg``),
``/api/runs/{id}/plan``, ``/api/runs/{id}/nodes/{node}`` and its parts (``attempts``, ``logs``,
``components``, ``explain``, ``preview``, a map's ``items``), ``/api/cache``, ``/api/health``.

Every request opens the journal read-only and closes it before answering: the UI never writes
the journal, never holds a lock a run waits for, and always sees the latest commit. Handlers
are plain functions, which Starlette runs in its thread pool, so a slow query never stalls the
server. Every request first passes the checks of ``_gates``: the Host (on loopback), cross-site
requests, the token, a damaged journal.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from ..config import Settings
from ..errors import DamagedJournalError, EtherealFabricError
from ..journal import Journal, browse
from ..observe._export import STATUS_COLOURS
from ..states import NodeStatus
from . import _queries as q
from . import _views as views
from ._gates import TokenGate, damaged, guarded
from ._hosts import is_loopback
from ._layout import CANVAS_FROM, STATUS_MARKS
from ._plan import PlanFailed, plan_for

__all__ = ["TokenGate", "create_app"]

HERE = Path(__file__).parent


class Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=str, separators=(",", ":")).encode()


def _status_css() -> str:
    """CSS for each status's colours: the same as ``etherealfabric graph --run``."""
    rules = []
    # (a node of an ended run that never started: not a node status, drawn as pending is)
    colours = {**STATUS_COLOURS, q.NOT_RUN: STATUS_COLOURS[NodeStatus.PENDING]}
    for status, (fill, stroke) in colours.items():
        rules.append(f"svg.graph rect.n.st-{status}{{fill:{fill};stroke:{stroke}}}")
        rules.append(f".badge.st-{status}{{background:{fill};border-color:{stroke}}}")
        rules.append(f".bar.st-{status}{{fill:{fill};stroke:{stroke}}}")
    return "\n".join(rules)


@dataclass(frozen=True)
class Site:
    """What every handler needs: where the journal is, and how to name the home in commands."""

    journal_path: Path
    home: Path
    home_option: str  # " --home H" when the UI was given a home, so commands shown work as typed
    settings: Settings  # the home's: its store holds the index of a map's cached items

    def answer(self, fn: Callable[[Journal, Request], Any]) -> Callable[[Request], Response]:
        """A handler that answers ``fn(journal, request)`` as JSON (404, 400 on errors)."""

        def handler(request: Request) -> Response:
            try:
                journal = q.open_journal(self.journal_path)
            except DamagedJournalError:
                raise
            except (browse.BrowseError, EtherealFabricError) as exc:
                return Json({"error": f"cannot read the journal now: {exc}"}, status_code=503)
            if journal is None:
                return Json({"error": f"no journal at {self.journal_path} yet"}, status_code=404)
            try:
                result = fn(journal, request)
            except views.NotFound as exc:  # (not_yet: a node a live run may still start)
                yet = {"not_yet": True} if isinstance(exc, views.NotYet) else {}
                return Json({"error": str(exc), **yet}, status_code=404)
            except DamagedJournalError:
                raise
            except PlanFailed as exc:  # the planner's own failure, with its status
                return Json({"error": str(exc)}, status_code=exc.status)
            except (ValueError, EtherealFabricError) as exc:
                return Json({"error": str(exc)}, status_code=400)
            except browse.BrowseError as exc:  # e.g. a journal being created or migrated right now
                return Json({"error": f"cannot read the journal now: {exc}"}, status_code=503)
            finally:
                journal.close()
            return result if isinstance(result, Response) else Json(result)

        return handler

    def page(self, fn: Callable[[Journal, Request], Response]) -> Callable[[Request], Response]:
        """A page's handler: ``fn(journal, request)``; an unknown run or node is a 404 page (a
        node a live run has not reached yet: one that reloads itself until it starts), a
        journal that cannot be read now a 503 (a damaged one: the app's 503 naming it)."""

        def handler(request: Request) -> Response:
            try:
                journal = q.open_journal(self.journal_path)
            except DamagedJournalError:
                raise
            except (browse.BrowseError, EtherealFabricError) as exc:
                return _text(f"cannot read the journal now: {exc}", 503)
            if journal is None:
                return _text(f"no journal at {self.journal_path} yet", 404)
            try:
                return fn(journal, request)
            except DamagedJournalError:
                raise
            except views.NotYet as exc:
                return _text(str(exc), 404, refresh=True)
            except EtherealFabricError as exc:  # an unknown or ambiguous run id, a node
                return _text(str(exc), 404)
            except browse.BrowseError as exc:  # e.g. a journal being created or migrated
                return _text(f"cannot read the journal now: {exc}", 503)
            finally:
                journal.close()

        return handler

    def answer_empty(
        self, fn: Callable[[Journal | None, Request], Any]
    ) -> Callable[[Request], Response]:
        """Like :meth:`answer`, for lists that are simply empty before the first run."""

        def handler(request: Request) -> Response:
            journal = None
            try:
                journal = q.open_journal(self.journal_path)
                return Json(fn(journal, request))
            except DamagedJournalError:
                raise
            except (ValueError, EtherealFabricError) as exc:
                return Json({"error": str(exc)}, status_code=400)
            except browse.BrowseError as exc:
                return Json({"error": f"cannot read the journal now: {exc}"}, status_code=503)
            finally:
                if journal is not None:
                    journal.close()

        return handler


def _text(text: str, status: int, *, refresh: bool = False) -> HTMLResponse:
    """``text`` (escaped) as a page with the site's header and a way back to the runs;
    ``refresh``: the page reloads itself every 2 seconds."""
    head = '<meta http-equiv="refresh" content="2">' if refresh else ""
    title = {404: "Not found", 503: "Unavailable"}.get(status, "Error")
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{head}'
        f'<title>{title} · EtherealFabric</title><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/app.css"></head><body>'
        '<header class="top"><a class="brand" href="/">EtherealFabric</a>'
        '<nav><a href="/">Runs</a><a href="/cache">Cache</a></nav></header>'
        f'<main><h1>{title}</h1><p class="page-error" role="alert">{html.escape(text)}</p>'
        '<p><a href="/">Back to the runs</a></p></main></body></html>'
    )
    return HTMLResponse(page, status_code=status)


async def _no_route(request: Request, exc: Exception) -> Response:
    """An address no route answers (``/nope``, ``/runs/ID/foo``): the site's 404 page, or for
    the API the JSON error every API answer gives (starlette's bare "Not Found" before)."""
    status = getattr(exc, "status_code", 404)
    path = request.url.path
    what = "no such address" if status == 404 else f"{request.method} is not allowed at"
    if path.startswith("/api/"):
        return Json({"error": f"{what} {path}: the API is described in docs/ui.md"}, status)
    return _text(f"{what} {path}", status)


def _arg(request: Request, name: str) -> str | None:
    return request.query_params.get(name) or None


def _limit(text: str | None) -> int:
    """The ``limit`` of runs asked for (100 when not given); ValueError (a 400) when it is not
    a whole number of at least 1."""
    if text is None:
        return 100
    if not text.strip().isdecimal() or int(text) < 1:
        raise ValueError(f"limit={text!r} is not a whole number of runs of at least 1")
    return int(text)


def _run_id(request: Request) -> str:
    return str(request.path_params["run_id"])


def create_app(
    home: str | None = None, *, token: str | None = None, host: str = "127.0.0.1"
) -> ASGIApp:
    """The UI over the journal of ``home`` (default: ``$ETHEREALFABRIC_HOME`` or
    ``./.etherealfabric``), behind ``token`` when one is given; served on ``host`` (on
    loopback, only requests addressed to loopback are answered: see ``_gates``)."""
    settings = Settings.resolve(home=home)
    option = f" --home {_shell_word(settings.home)}" if home else ""
    site = Site(settings.journal_path, settings.home, option, settings)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["status_marks"] = STATUS_MARKS
    templates.env.globals["journal"] = _utf8(site.journal_path)
    templates.env.globals["error_cut"] = views.ERROR_CUT
    templates.env.globals["traceback_open"] = views.TRACEBACK_OPEN
    templates.env.globals["canvas_from"] = CANVAS_FROM

    def page(name: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            context = {"params": dict(request.path_params)}
            return templates.TemplateResponse(request, name, context)

        return handler

    def run_page(journal: Journal, request: Request) -> Response:
        run_id = journal.get_run(_run_id(request))["id"]  # a prefix: the full id
        href = f"/runs/{quote(run_id)}/nodes/"
        view = views.page_view(journal, run_id, home_option=site.home_option, href=href)
        run = view["run"]
        context = {"params": {"run_id": run["run"]["id"]}, "run": run, "svg": view["svg"],
                   "state": view["state_json"], "graph": view["graph_json"]}  # fmt: skip
        return templates.TemplateResponse(request, "run.html", context)

    def node_page(journal: Journal, request: Request) -> Response:
        node = str(request.path_params["node"])
        data = views.node_view(journal, _run_id(request), node)
        # the run's full id, not the address's (`latest`, a prefix): the page's links, and
        # what its script asks, stay on this run when another starts
        context = {"params": {"run_id": data["run"]["id"], "node": node}}
        return templates.TemplateResponse(request, "node.html", context)

    def runs(journal: Journal | None, request: Request) -> Any:
        return views.runs_view(
            journal,
            workflow=_arg(request, "workflow"),
            status=_arg(request, "status"),
            since=_arg(request, "since"),
            limit=_limit(_arg(request, "limit")),
            before=_arg(request, "before"),
        )

    def health(request: Request) -> Response:
        path = site.journal_path
        return Json({"ok": True, "journal": str(path), "exists": path.exists()})

    status_css = _status_css()
    routes = [
        Route("/", page("runs.html")),
        Route("/cache", page("cache.html")),
        Route("/runs/{run_id}", site.page(run_page)),
        Route("/runs/{run_id}/nodes/{node:path}", site.page(node_page)),
        Route("/api/health", health),
        Route("/api/runs", site.answer_empty(runs)),
        Route("/api/cache", site.answer_empty(_cache)),
        Route("/api/runs/{run_id}", site.answer(lambda j, r: _run(j, r, site.home_option))),
        Route("/api/runs/{run_id}/status", site.answer(_status)),
        Route("/api/runs/{run_id}/nodes", site.answer(_nodes)),
        Route("/api/runs/{run_id}/graph", site.answer(_graph)),
        Route("/api/runs/{run_id}/graph.svg", site.answer(_graph_svg)),
        Route("/api/runs/{run_id}/plan", site.answer(lambda j, r: _plan(j, r, site.home))),
        Route("/api/runs/{run_id}/nodes/{node:path}", site.answer(_node_part(None, settings))),
        *[
            Route(f"/api/runs/{{run_id}}/{part}/{{node:path}}", site.answer(_node_part(part)))
            for part in ("attempts", "logs", "components", "explain")
        ],
        Route("/api/runs/{run_id}/items/{node:path}", site.answer(_items(settings))),
        Route(
            "/api/runs/{run_id}/preview/{output}/{node:path}",
            site.answer(lambda j, r: _preview(j, r, site.home)),
        ),
        # the status colours: a stylesheet of their own (the CSP allows no inline <style>)
        Route("/static/status.css", lambda _: Response(status_css, media_type="text/css")),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers: dict[Any, Any] = {DamagedJournalError: damaged, 404: _no_route, 405: _no_route}
    app = Starlette(routes=routes, exception_handlers=handlers)
    return guarded(app, journal=site.journal_path, token=token, loopback=is_loopback(host))


def _run(journal: Journal, request: Request, home_option: str) -> Any:
    return views.run_view(journal, _run_id(request), home_option=home_option)


def _cache(journal: Journal | None, request: Request) -> Any:
    return views.cache_view(journal, workflow=_arg(request, "workflow"))


def _status(journal: Journal, request: Request) -> Any:
    return views.status_view(journal, _run_id(request), version=_arg(request, "version"))


def _nodes(journal: Journal, request: Request) -> Any:
    run = views.run_view(journal, _run_id(request))["run"]
    attempts = q.attempts_light(journal, run["id"])
    return q.interrupted_attempts(attempts) if run["status"] == "interrupted" else attempts


def _items(settings: Settings) -> Callable[[Journal, Request], Any]:
    def answer(journal: Journal, request: Request) -> Any:
        def number(name: str, default: int) -> int:
            text = _arg(request, name)
            if text is None:
                return default
            if not text.strip().lstrip("-").isdecimal() or len(text.strip()) > 20:  # no 5000 digits
                raise ValueError(f"{name}={text[:40]!r} is not a whole number below 2**63")
            return int(text)  # items_view checks its range

        return views.items_view(
            journal, _run_id(request), str(request.path_params["node"]),
            offset=number("offset", 0), limit=number("limit", views.ITEMS_PAGE),
            status=_arg(request, "status"), settings=settings,
        )  # fmt: skip

    return answer


def _graph(journal: Journal, request: Request) -> Any:
    form = "compact" if _arg(request, "compact") else "nodes"
    return views.graph_view(journal, _run_id(request), form=form)


def _plan(journal: Journal, request: Request, home: Path) -> Any:
    return plan_for(views.run_view(journal, _run_id(request))["run"]["params"], home)


def _graph_svg(journal: Journal, request: Request) -> Response:
    run_id = request.path_params["run_id"]
    full = views.run_view(journal, run_id)["run"]["id"]
    graph = views.graph_view(journal, run_id, href=f"/runs/{quote(full)}/nodes/", form="svg")
    return Response(graph["svg"], media_type="image/svg+xml")


def _node_part(
    part: str | None, settings: Settings | None = None
) -> Callable[[Journal, Request], Any]:
    def answer(journal: Journal, request: Request) -> Any:
        run_id, node = request.path_params["run_id"], request.path_params["node"]
        data = views.node_view(journal, run_id, node, settings if part is None else None)
        if part is None:
            return data
        if part == "logs":
            keys = ("attempt", "status", "output")
            return [{k: a[k] for k in keys} for a in data["attempts"]]
        return data[part]

    return answer


def _preview(journal: Journal, request: Request, home: Path) -> dict[str, Any]:
    """A small view of one output (loaded from the store, digest-verified)."""
    from ..run._reopen import open_run

    run_id, node = request.path_params["run_id"], request.path_params["node"]
    output = request.path_params["output"]
    data = views.node_view(journal, run_id, node)
    found = [o for o in data["outputs"] if o["name"] == output]
    if not found:
        raise views.NotFound(f"node {node!r} has no stored output {output!r} in this run")
    if (found[0]["size"] or 0) > views.PREVIEW_BYTES:
        return {"kind": "none", "text": f"too large to preview ({found[0]['size']} bytes)"}
    try:
        value = open_run(data["run"]["id"], home=home, item=node)[node][output]  # (or an item)
    except Exception as exc:  # a missing artifact, a serializer not installed here: say so
        return {"kind": "none", "text": f"cannot load it here: {type(exc).__name__}: {exc}"}
    return views.preview(value)


def _shell_word(path: Path) -> str:
    """``path`` as a shell word in the commands the pages show: quoted if need be, and as
    UTF-8 text (a name that is not valid UTF-8 shows its bytes escaped, not a server error)."""
    import shlex

    return shlex.quote(_utf8(path))


def _utf8(path: Path) -> str:
    """``path`` as UTF-8 text, the bytes of a name that is not valid UTF-8 escaped."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")

"""``etherealfabric ui``: serve the web UI (needs the ``ui`` extra: starlette, uvicorn, jinja2).

Only click is imported with the command line; the web framework is imported when the command
runs, so ``etherealfabric --help`` and every other command stay as fast as before.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

import click

from ..config import UI_TOKEN_ENV
from ._hosts import is_loopback

__all__ = ["is_loopback", "ui"]

DEFAULT_PORT = 8450


@click.command("ui", short_help="Serve a read-only web UI over the run journal.")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Home folder (journal and store). Default: $ETHEREALFABRIC_HOME or ./.etherealfabric",
)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback serves other machines.")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on; 0 picks a free one (the address printed says which).")  # fmt: skip
@click.option("--token", default=None,
              help=f"Require this token on every request (default: ${UI_TOKEN_ENV}).")  # fmt: skip
def ui(home: str | None, host: str, port: int, token: str | None) -> None:
    """Serve a read-only web UI over the run journal: runs, graphs, logs, explain, cache.

    Open the printed address in a browser. The UI only reads the journal (it never writes it
    and never holds up a run). With a token, open http://HOST:PORT/?token=TOKEN once.
    """
    if token is not None and not token.strip():  # (an unset shell variable, `--token "$T"`)
        click.echo(
            "error: --token is empty: give the token every request must carry, or leave the "
            "option out",
            err=True,
        )
        sys.exit(2)
    token = token or os.environ.get(UI_TOKEN_ENV) or None
    try:
        import uvicorn

        from ._app import create_app
    except ImportError as exc:
        click.echo(
            f"error: the web UI needs the ui extra ({exc.name} is missing): "
            "pip install 'etherealfabric[ui]'",
            err=True,
        )
        sys.exit(2)
    sock = _bind(host, port)
    port = int(sock.getsockname()[1])  # the port really bound (--port 0: a free one)
    if not is_loopback(host):
        click.echo(
            f"warning: serving on {host}: anyone who can reach this machine on port {port} can "
            "read your runs (logs, parameters, outputs)"
            + ("" if token else f"; protect it with --token or ${UI_TOKEN_ENV}"),
            err=True,
        )
    app = create_app(home, token=token, host=host)
    shown = f"[{host}]" if ":" in host else host
    suffix = "/?token=…" if token else "/"
    click.echo(f"EtherealFabric UI on http://{shown}:{port}{suffix} (Ctrl-C to stop)", err=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds one), or a one-line error and exit 2.

    Bound here rather than by uvicorn so that a port in use is said plainly (uvicorn logs
    ``[Errno 98]`` and exits 1 after the address was already printed) and so that ``--port 0``
    prints the port the system picked, not ``:0``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = (
                f"port {port} on {host} is already in use (another program, or another "
                "`etherealfabric ui`): pick another with --port N, or --port 0 for any free port"
            )
        elif exc.errno == errno.EACCES:
            message = (
                f"not allowed to listen on port {port} on {host} (ports below 1024 need "
                "privileges): pick another with --port N, or --port 0 for any free port"
            )
        else:
            message = f"cannot listen on {host} port {port}: {exc.strerror or exc}: check --host"
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
    sock.set_inheritable(True)
    return sock

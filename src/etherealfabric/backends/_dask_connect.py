"""Reaching a Dask scheduler by address: a client, or within the connect timeout a
:class:`~etherealfabric.errors.ConfigError` naming the setting (:func:`connect`,
:func:`unreachable`), never a wait without end."""

from __future__ import annotations

from typing import Any

from ..config import DASK_ADDRESS_ENV as ADDRESS_ENV
from ..errors import ConfigError

__all__ = ["connect", "connect_seconds", "unreachable"]


def connect_seconds() -> float:
    """Dask's own connect timeout (``distributed.comm.timeouts.connect``, 30 s by default)."""
    import dask
    from dask.utils import parse_timedelta

    return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s"))


def connect(distributed: Any, address: str) -> Any:
    """A client of the scheduler at ``address``; what does not answer as one raises within
    the connect timeout (:func:`connect_seconds`).

    ``distributed.Client(address, timeout=...)`` alone waits forever for a peer that accepts
    the connection but never answers (another service's port, a hung scheduler): its comm
    handshake has no timeout. So the scheduler is asked its identity first, on a connection
    of our own whose every step is bounded; a malformed address raises there too, before a
    half-made ``Client`` would hang the interpreter's exit for a minute (``Client.__del__``).
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    seconds = connect_seconds()

    async def identify() -> None:
        async def ask() -> None:
            # as the client connects: TLS and its certificates from Dask's configuration
            tls = distributed.Security().get_connection_args("client")
            comm = await distributed.comm.connect(address, timeout=seconds, **tls)
            try:
                await comm.write({"op": "identity"})
                answer = await comm.read()
            finally:
                await comm.close()
            if not isinstance(answer, dict) or "Scheduler" not in str(answer.get("type")):
                raise OSError(f"{address} answered, but not as a Dask scheduler")

        try:
            await asyncio.wait_for(ask(), seconds)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"it did not answer as a Dask scheduler within {seconds:g} s "
                "(distributed.comm.timeouts.connect)"
            ) from None

    # its own thread and event loop: the caller may run one already (a notebook)
    with ThreadPoolExecutor(1, thread_name_prefix="etherealfabric-dask-probe") as probe:
        probe.submit(asyncio.run, identify()).result()
    client = distributed.Client(address, timeout=seconds, set_as_default=False)
    return client


def unreachable(address: str, setting: str, exc: BaseException) -> ConfigError:
    """The ConfigError of a scheduler address that did not give a client, naming ``setting``."""
    why = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ValueError):  # distributed's parse of host:port
        return ConfigError(
            f"{setting}={address!r} is not a Dask scheduler address ({type(exc).__name__}: "
            f"{why}): set it to one like tcp://scheduler-host:8786, or unset {ADDRESS_ENV} to "
            "run on a local cluster",
            setting=setting,
        )
    return ConfigError(
        f"cannot reach the Dask scheduler at {address!r} (from {setting}): "
        f"{type(exc).__name__}: {why}. Start one (dask scheduler; dask worker ADDRESS) or "
        f"unset {ADDRESS_ENV} to run on a local cluster",
        setting=setting,
    )

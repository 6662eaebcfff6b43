"""``porch controllers``: run the PackageVariant(Set) controllers against a Porch API server."""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from porch.client import PorchClient

# porch.client (httpx, rich: a third of a second) is imported when a command needs it, not by
# every ``porch`` command line (``porch serve`` loads this module too, and never needs it).
ALL_NAMESPACES = ""  # porch.client.ALL_NAMESPACES


def client_factory(
    *, server: str, token: str, kubeconfig: Path | None, insecure: bool
) -> Callable[[], PorchClient]:
    """How each controller thread opens its own connection."""
    from porch.client import Connection, PorchClient, load_kubeconfig

    if kubeconfig is not None or not server:
        conn = load_kubeconfig(kubeconfig)
        if server:
            conn = dataclasses.replace(conn, server=server.rstrip("/"))
        if token:
            conn = dataclasses.replace(conn, token=token)
    else:
        conn = Connection(server=server.rstrip("/"), token=token, insecure=insecure)
    return lambda: PorchClient.from_connection(conn)


def run_until_signalled(start: Callable[[], Callable[[], None]]) -> None:
    """Start something, then wait for SIGINT/SIGTERM and call the stopper it returned."""
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    stop = start()
    try:
        done.wait()
    finally:
        stop()


@click.command("controllers")
@click.option("--server", default="", help="API server URL (default: the kubeconfig's).")
@click.option("--token", default="", help="Bearer token (default: the kubeconfig's).")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Credentials and CA for the server ($KUBECONFIG or ~/.kube/config if no --server).",
)
@click.option("--insecure-skip-tls-verify", is_flag=True, help="Do not verify the server's cert.")
@click.option(
    "-n", "--namespace", default=ALL_NAMESPACES, help="Only this namespace (default: all)."
)
@click.option(
    "--resync",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds between full passes when no watch event arrives.",
)
def controllers(
    server: str,
    token: str,
    kubeconfig: Path | None,
    insecure_skip_tls_verify: bool,
    namespace: str,
    resync: float,
) -> None:
    """Run the PackageVariant and PackageVariantSet controllers (docs/controllers.md)."""
    from porch.client import ConfigError
    from porch.controllers import ControllerRunner

    try:
        factory = client_factory(
            server=server, token=token, kubeconfig=kubeconfig, insecure=insecure_skip_tls_verify
        )
        runner = ControllerRunner(factory, namespace=namespace, resync=resync)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)

    def start() -> Callable[[], None]:
        runner.start()
        click.echo(f"porch controllers running against {runner.base_url}")
        sys.stdout.flush()
        return runner.stop

    run_until_signalled(start)

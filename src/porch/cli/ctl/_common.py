"""What every porchctl command shares: connection flags, the client, exit codes, errors.

Errors follow click's model: each exception knows its exit code and prints itself as one line
on stderr (``error: …``). The table of codes is in docs/porchctl.md; keep the two in step.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import httpx
from rich.console import Console
from rich.progress import Progress

from porch.client import (
    BadRequest,
    ClientError,
    ConfigError,
    Conflict,
    Connection,
    Forbidden,
    Invalid,
    LifecycleVerbs,
    NotFound,
    PorchClient,
    PreconditionFailed,
    TransportError,
    Unauthorized,
    load_kubeconfig,
)

EXIT_OK = 0
EXIT_ERROR = 1  # the server failed, or an error without a more specific code
EXIT_USAGE = 2  # bad flags or arguments (click's own code)
EXIT_CONNECT = 3  # no kubeconfig, server unreachable, TLS failure
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5  # still conflicting after the retries, or already exists
EXIT_DENIED = 6  # 401/403
EXIT_INVALID = 7  # the server (400/422) or porchctl refused the request as invalid now
EXIT_LOCAL = 8  # local files: directory exists, metadata missing, not UTF-8


def exit_code_for(exc: ClientError) -> int:
    if isinstance(exc, ConfigError | TransportError):
        return EXIT_CONNECT
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, Conflict):
        return EXIT_CONFLICT
    if isinstance(exc, Unauthorized | Forbidden):
        return EXIT_DENIED
    if isinstance(exc, Invalid | BadRequest | PreconditionFailed):
        return EXIT_INVALID
    return EXIT_ERROR


class CtlError(click.ClickException):
    """One line on stderr and a documented exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        # click declares exit_code as a ClassVar; ours varies per instance.
        setattr(self, "exit_code", exit_code)  # noqa: B010

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file or sys.stderr)

    @classmethod
    def from_client(cls, exc: ClientError, name: str = "") -> CtlError:
        """``name`` prefixes the message in batches, unless the message already names it."""
        message = " ".join(str(exc).split())  # server messages may span lines; we print one
        if name and name not in message:
            message = f"{name}: {message}"
        return cls(message, exit_code_for(exc))


class LocalError(CtlError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_LOCAL)


@dataclass
class Ctl:
    """Connection settings gathered from the flags; tests preset ``transport``."""

    kubeconfig: Path | None = None
    context: str = ""
    cluster: str = ""
    user: str = ""
    server: str = ""
    token: str = ""
    tls_server_name: str = ""
    namespace: str = ""
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] | None = None
    _client: PorchClient | None = field(default=None, repr=False)

    def client(self) -> PorchClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> PorchClient:
        # --server alone needs no kubeconfig (plain-HTTP test servers); with --kubeconfig it
        # only replaces the server URL, as kubectl's flag does.
        if self.server and self.kubeconfig is None:
            conn = Connection(server=self.server)
        else:
            conn = load_kubeconfig(
                self.kubeconfig, context=self.context, cluster=self.cluster, user=self.user
            )
        conn = replace(
            conn,
            server=(self.server or conn.server).rstrip("/"),
            token=self.token or conn.token,
            tls_server_name=self.tls_server_name or conn.tls_server_name,
        )
        client = PorchClient.from_connection(conn, transport=self.transport)
        if self.namespace:
            client.namespace = self.namespace
        return client

    def lifecycle(self) -> LifecycleVerbs:
        if self.sleep is not None:
            return LifecycleVerbs(self.client(), sleep=self.sleep)
        return LifecycleVerbs(self.client())

    def close(self) -> None:
        # An injected transport belongs to whoever injected it (tests reuse one across runs);
        # closing our httpx client would close it too.
        if self._client is not None and self.transport is None:
            self._client.close()
        self._client = None


class AliasGroup(click.Group):
    """A group whose commands also answer to upstream's alternative names (hidden in help)."""

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = aliases or {}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        if self.aliases:
            with formatter.section("Aliases"):
                formatter.write_dl(sorted(self.aliases.items()))


def _set(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value == "" and attr == "namespace":
            raise CtlError("--namespace must not be empty", EXIT_USAGE)
        if value not in (None, ""):
            setattr(ctx.ensure_object(Ctl), attr, value)
        return value

    return callback


F = TypeVar("F", bound=Callable[..., Any])


def connection_options(func: F) -> F:
    """Kubectl-style connection flags, accepted before or after the subcommand."""
    opts = [
        click.option(
            "--kubeconfig",
            type=click.Path(dir_okay=False, path_type=Path),
            expose_value=False,
            callback=_set("kubeconfig"),
            help="Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).",
        ),
        click.option(
            "--context",
            expose_value=False,
            callback=_set("context"),
            help="The kubeconfig context to use.",
        ),
        click.option(
            "--cluster",
            expose_value=False,
            callback=_set("cluster"),
            help="The kubeconfig cluster to use (default: the context's).",
        ),
        click.option(
            "--user",
            expose_value=False,
            callback=_set("user"),
            help="The kubeconfig user to use (default: the context's).",
        ),
        click.option(
            "-s",
            "--server",
            expose_value=False,
            callback=_set("server"),
            help="API server URL; overrides the kubeconfig's.",
        ),
        click.option(
            "--tls-server-name",
            expose_value=False,
            callback=_set("tls_server_name"),
            help="Server name to verify the server certificate against.",
        ),
        click.option(
            "--token",
            expose_value=False,
            callback=_set("token"),
            help="Bearer token for the API server.",
        ),
        click.option(
            "-n",
            "--namespace",
            expose_value=False,
            callback=_set("namespace"),
            help="Namespace (default: the kubeconfig context's, else default).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def ctl_of(ctx: click.Context) -> Ctl:
    return ctx.ensure_object(Ctl)


def handle_errors(func: F) -> F:
    """Turn client errors into one-line CtlErrors (and never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ClientError as exc:
            raise CtlError.from_client(exc) from None

    return wrapper  # type: ignore[return-value]


T = TypeVar("T")


def for_each(names: Iterable[str], action: Callable[[str], None]) -> None:
    """Run ``action`` per name, report each failure on its own line, exit with the first code.

    Upstream porchctl continues past failures so one bad name does not stop a batch.
    """
    first: int | None = None
    for name in names:
        try:
            action(name)
        except ClientError as exc:
            err = CtlError.from_client(exc, name)
            err.show()
            first = err.exit_code if first is None else first
        except CtlError as err:
            err.show()
            first = err.exit_code if first is None else first
    if first is not None:
        sys.exit(first)


def progress(
    items: list[T], description: str, *, threshold: int = 20, console: Console | None = None
) -> Iterator[T]:
    """A rich progress bar on a terminal for long batches; silent when piped (and in tests)."""
    console = console or Console(stderr=True)
    if not console.is_terminal or len(items) < threshold:
        yield from items
        return
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)

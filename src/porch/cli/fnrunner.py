"""``porch fn-runner`` and ``porch fn``: the function-runner gRPC service and exec entry points.

``porch fn run NAME`` behaves as an exec KRM function: a ResourceList on stdin, the function's
ResourceList on stdout, its stderr and exit code as its own. A one-line script such as
``exec porch fn run set-namespace`` therefore lets ``kpt fn eval --exec`` and
``kpt fn render --allow-exec`` run our builtins.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

_MIB = 1024 * 1024


@click.group(name="fn")
def fn() -> None:
    """Run builtin KRM functions directly (ResourceList on stdin, as an exec function)."""


@fn.command(name="list")
def fn_list() -> None:
    """Print the names of the builtin functions, one per line."""
    from porch.fn.registry import builtins

    for name in sorted(builtins()):
        click.echo(name)


@fn.command(name="run")
@click.argument("name")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds the function may run.",
)
def fn_run(name: str, timeout: float) -> None:
    """Run builtin NAME (catalog name or image) on the ResourceList read from stdin.

    Writes the resulting ResourceList to stdout; stderr and the exit code are the function's.
    """
    from porch.errors import Invalid
    from porch.fn.exec import dump_resource_list, load_resource_list
    from porch.fn.runtime import BuiltinRuntime, resolve_image
    from porch.fn.types import FunctionSpec

    try:
        image = resolve_image(name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    runtime = BuiltinRuntime()
    if runtime.lookup(image) is None:
        click.echo(
            f"error: no builtin function {name!r} (image {image}); "
            "`porch fn list` shows the builtins",
            err=True,
        )
        sys.exit(2)
    data = sys.stdin.buffer.read()
    try:
        rl = load_resource_list(data, source="input ResourceList")
    except (Invalid, UnicodeDecodeError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    out = runtime.run(FunctionSpec(image=image), rl, timeout=timeout)
    sys.stdout.buffer.write(dump_resource_list(out.resource_list))
    sys.stdout.buffer.flush()
    if out.stderr:
        sys.stderr.write(out.stderr if out.stderr.endswith("\n") else out.stderr + "\n")
        sys.stderr.flush()
    sys.exit(out.exit_code)


@click.command(name="fn-runner")
@click.option(
    "--listen",
    default="127.0.0.1:9445",
    show_default=True,
    help="HOST:PORT to serve on; port 0 picks a free port (the chosen address is printed).",
)
@click.option(
    "--exec-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML allow-list of local binaries (a 'functions' list or FunctionConfig objects).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Function evaluations running at once.",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Evaluations waiting for a slot; more are refused with RESOURCE_EXHAUSTED.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1024),
    default=6 * _MIB,
    show_default=True,
    help="Largest ResourceList accepted (and returned).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds a function may run when the client sets no deadline.",
)
@click.option(
    "--disable-runtimes",
    default="",
    help="Comma-separated runtimes to disable: builtin, exec.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every evaluation to stderr.")
def fn_runner(
    listen: str,
    exec_config: Path | None,
    max_concurrency: int,
    max_queue: int,
    max_request_bytes: int,
    timeout: float,
    disable_runtimes: str,
    verbose: bool,
) -> None:
    """Serve Porch's FunctionEvaluator gRPC service (builtin and exec evaluators)."""
    import logging

    from porch.errors import Invalid
    from porch.fn.exec import ExecConfig
    from porch.runner.server import RunnerConfig, RunnerServer

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = RunnerConfig(
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            max_request_bytes=max_request_bytes,
            default_timeout=timeout,
            exec_config=ExecConfig.from_file(exec_config) if exec_config else None,
            disable=tuple(r.strip() for r in disable_runtimes.split(",") if r.strip()),
        )
        server = RunnerServer(config, listen=listen)
    except (Invalid, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start()
    click.echo(f"listening on {server.address}")
    sys.stdout.flush()
    while not stopping.wait(3600):
        pass
    server.stop(grace=5)

"""The function runner: Porch's ``FunctionEvaluator`` gRPC service plus standard health (§7.2).

Evaluators are tried in order, falling through only on "not found":

1. ``builtin`` – the in-process Python catalog (:class:`porch.fn.runtime.BuiltinRuntime`);
2. ``exec`` – allow-listed local binaries (:class:`porch.fn.exec.ExecRuntime`); the request
   bytes go to the binary's stdin and its stdout comes back unchanged, as in Porch.

A function's non-zero exit is answered with ``INTERNAL`` "Failed to execute function …" carrying
its stderr, as Porch does, unless the client asked for failures as responses (see
:mod:`porch.fn.remote`). All evaluators "not found" → ``NOT_FOUND``.

Work is bounded: at most ``max_concurrency`` evaluations run at once and at most ``max_queue``
wait for a slot; beyond that a request is refused with ``RESOURCE_EXHAUSTED``. Requests larger
than ``max_request_bytes`` are refused by gRPC itself (``RESOURCE_EXHAUSTED``) and outputs
larger than that limit are refused with ``RESOURCE_EXHAUSTED`` and a clear message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from porch.errors import Invalid
from porch.fn.exec import (
    MAX_OUTPUT_BYTES,
    ExecConfig,
    ExecRuntime,
    FunctionExecutionError,
    dump_resource_list,
    exit_status_text,
    load_resource_list,
)
from porch.fn.remote import EXIT_CODE_KEY, RETURN_FAILURES_KEY
from porch.fn.runtime import BuiltinRuntime
from porch.fn.types import FunctionNotFound, FunctionSpec
from porch.runner.generated import function_pb2, function_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "evaluator.FunctionEvaluator"
DEFAULT_PORT = 9445
DEFAULT_TIMEOUT = 300.0
"""Seconds a function may run when the client sets no deadline."""


@dataclass
class Evaluation:
    """What an evaluator produced: output bytes, stderr bytes and the exit code."""

    resource_list: bytes
    log: bytes = b""
    exit_code: int = 0


class BadRequest(Exception):
    """The request itself is unusable (→ INVALID_ARGUMENT)."""


class Evaluator(Protocol):
    name: str

    def evaluate(self, image: str, data: bytes, timeout: float) -> Evaluation:
        """Raise FunctionNotFound for an unknown image, FunctionExecutionError when the function
        produced no usable output, BadRequest for an unusable request."""
        ...


class BuiltinEvaluator:
    """The Python catalog. Input and output go through the comment-faithful ResourceList
    codec of :mod:`porch.fn.exec`, so a client that loads the answer gets the items a local
    run would have produced, comments in place."""

    name = "builtin"

    def __init__(self, runtime: BuiltinRuntime | None = None) -> None:
        self.runtime = runtime or BuiltinRuntime()

    def evaluate(self, image: str, data: bytes, timeout: float) -> Evaluation:
        if self.runtime.lookup(image) is None:
            raise FunctionNotFound(image)
        try:
            rl = load_resource_list(data, source="request resource_list")
        except (Invalid, UnicodeDecodeError) as exc:
            raise BadRequest(str(exc)) from exc
        out = self.runtime.run(FunctionSpec(image=image), rl, timeout=timeout)
        return Evaluation(
            resource_list=dump_resource_list(out.resource_list),
            log=out.stderr.encode("utf-8"),
            exit_code=out.exit_code,
        )


class ExecEvaluator:
    """Allow-listed binaries; bytes pass through untouched, as Porch's executable evaluator."""

    name = "exec"

    def __init__(self, runtime: ExecRuntime) -> None:
        self.runtime = runtime

    def evaluate(self, image: str, data: bytes, timeout: float) -> Evaluation:
        argv, name = self.runtime.resolve(FunctionSpec(image=image))
        result = self.runtime.run_raw(argv, name, data, timeout)
        return Evaluation(result.stdout, result.stderr, result.exit_code)


@dataclass
class RunnerConfig:
    max_concurrency: int = 4
    max_queue: int = 64
    max_request_bytes: int = MAX_OUTPUT_BYTES
    default_timeout: float = DEFAULT_TIMEOUT
    exec_config: ExecConfig | None = None
    disable: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max concurrency must be at least 1")
        if self.max_queue < 0:
            raise ValueError("max queue must not be negative")
        if self.max_request_bytes < 1024:
            raise ValueError("max request bytes must be at least 1024")
        unknown = set(self.disable) - {"builtin", "exec"}
        if unknown:
            raise ValueError(f"unknown runtime(s) to disable: {', '.join(sorted(unknown))}")


class Overloaded(Exception):
    pass


class _Limiter:
    """At most ``limit`` holders; at most ``queue`` waiters, the rest refused at once."""

    def __init__(self, limit: int, queue: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self._queue = queue
        self._waiting = 0
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, timeout: float) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self._queue:
                    raise Overloaded("too many function evaluations queued")
                self._waiting += 1
            try:
                acquired = self._slots.acquire(timeout=max(timeout, 0.0))
            finally:
                with self._lock:
                    self._waiting -= 1
            if not acquired:
                raise TimeoutError
        try:
            yield
        finally:
            self._slots.release()


class FunctionEvaluatorService(function_pb2_grpc.FunctionEvaluatorServicer):
    def __init__(self, evaluators: Sequence[Evaluator], config: RunnerConfig) -> None:
        self.evaluators = list(evaluators)
        self.config = config
        self._limiter = _Limiter(config.max_concurrency, config.max_queue)

    def EvaluateFunction(  # noqa: N802  (the proto's name)
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        image: str = request.image
        data: bytes = request.resource_list
        if not image:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image must not be empty")
        if len(data) > self.config.max_request_bytes:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"resource_list of {len(data)} bytes exceeds the limit of "
                f"{self.config.max_request_bytes} bytes",
            )
        return_failures = any(
            k == RETURN_FAILURES_KEY and v == "1" for k, v in context.invocation_metadata() or ()
        )
        remaining = context.time_remaining()
        timeout = self.config.default_timeout
        if remaining is not None:
            timeout = min(timeout, remaining)
        started = time.monotonic()
        try:
            with self._limiter.slot(timeout):
                timeout -= time.monotonic() - started
                result = self._evaluate(image, data, timeout, context)
        except Overloaded as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except TimeoutError:
            context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"function {image} waited too long for an evaluation slot",
            )
        size = len(result.resource_list)
        if size > self.config.max_request_bytes:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"function {image} output of {size} bytes exceeds the limit of "
                f"{self.config.max_request_bytes} bytes",
            )
        if result.exit_code != 0:
            if not return_failures:
                context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"Failed to execute function {_go_quote(image)}: "
                    f"{exit_status_text(result.exit_code)} "
                    f"({result.log.decode('utf-8', errors='replace')})",
                )
            context.set_trailing_metadata(((EXIT_CODE_KEY, str(result.exit_code)),))
        return function_pb2.EvaluateFunctionResponse(
            resource_list=result.resource_list, log=result.log
        )

    def _evaluate(
        self, image: str, data: bytes, timeout: float, context: grpc.ServicerContext
    ) -> Evaluation:
        for evaluator in self.evaluators:
            try:
                result = evaluator.evaluate(image, data, timeout)
            except FunctionNotFound:
                continue
            except BadRequest as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except FunctionExecutionError as exc:
                context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"Failed to execute function {_go_quote(image)}: {exc.message}",
                )
            except Exception as exc:  # a runner bug must not kill the worker thread
                log.exception("evaluator %s failed on %s", evaluator.name, image)
                context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"Failed to execute function {_go_quote(image)}: {type(exc).__name__}: {exc}",
                )
            log.info(
                "evaluated %s with %s: exit %d, %d bytes",
                image,
                evaluator.name,
                result.exit_code,
                len(result.resource_list),
            )
            return result
        context.abort(grpc.StatusCode.NOT_FOUND, f"function {_go_quote(image)} not found")
        raise AssertionError("unreachable")  # abort raises


def _go_quote(text: str) -> str:
    """Go's %q for the plain ASCII strings image names are."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_evaluators(config: RunnerConfig) -> list[Evaluator]:
    evaluators: list[Evaluator] = []
    if "builtin" not in config.disable:
        evaluators.append(BuiltinEvaluator())
    if "exec" not in config.disable:
        exec_runtime = ExecRuntime(config.exec_config, max_output_bytes=config.max_request_bytes)
        evaluators.append(ExecEvaluator(exec_runtime))
    return evaluators


class RunnerServer:
    """A started gRPC server; ``address`` is the bound ``host:port``."""

    def __init__(
        self,
        config: RunnerConfig | None = None,
        *,
        listen: str = f"127.0.0.1:{DEFAULT_PORT}",
        evaluators: Sequence[Evaluator] | None = None,
    ) -> None:
        self.config = config or RunnerConfig()
        cfg = self.config
        if evaluators is None:
            evaluators = build_evaluators(cfg)
        self.service = FunctionEvaluatorService(evaluators, cfg)
        # Room for every running and queued evaluation plus a few health checks, so a busy
        # runner still answers its probes.
        workers = cfg.max_concurrency + cfg.max_queue + 4
        limit = cfg.max_request_bytes + 64 * 1024  # the message adds the image and framing
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fn-runner"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=workers,
        )
        add_servicer = function_pb2_grpc.add_FunctionEvaluatorServicer_to_server
        add_servicer(self.service, self._server)  # type: ignore[no-untyped-call]
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
        bound = self._server.add_insecure_port(listen)
        if bound == 0:
            raise OSError(f"cannot listen on {listen}")
        self.address = f"{host}:{bound}"

    def start(self) -> RunnerServer:
        self._server.start()
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self

    def stop(self, grace: float | None = None) -> None:
        self.health.enter_graceful_shutdown()
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()

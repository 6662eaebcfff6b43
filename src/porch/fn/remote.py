"""The function runner as a runtime: a gRPC client of Porch's ``FunctionEvaluator`` (§7.2).

The last link of the chain. A gRPC ``NotFound`` means no evaluator of the runner knows the
image (→ :class:`FunctionNotFound`); every other error becomes a failed
:class:`FunctionOutput` whose stderr carries the message, as Porch records a failed runner call.

Porch's runner answers a function's non-zero exit with ``INTERNAL`` and drops its output. Our
runner does the same for any client, but when the request carries the metadata
``x-porch-return-failures: 1`` it instead answers OK with the function's output and its exit
code in the trailing metadata ``x-porch-exit-code``, so that results of a failed function
survive the trip. Porch's own Go client never sends it and sees Porch's behaviour.
"""

from __future__ import annotations

import threading
from typing import Any

import grpc

from porch.fn.exec import (
    FunctionExecutionError,
    dump_resource_list,
    parse_exit_status,
    parse_function_output,
)
from porch.fn.types import FunctionNotFound, FunctionOutput, FunctionSpec, ResourceList

MAX_MESSAGE_BYTES = 6 * 1024 * 1024
RETURN_FAILURES_KEY = "x-porch-return-failures"
EXIT_CODE_KEY = "x-porch-exit-code"
EVALUATE_METHOD = "/evaluator.FunctionEvaluator/EvaluateFunction"


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


class RemoteRuntime:
    """Runs functions by image on a function runner at ``address`` (``host:port``)."""

    def __init__(
        self,
        address: str,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        return_failures: bool = True,
    ) -> None:
        if not address:
            raise ValueError("function runner address must not be empty")
        self.address = address
        self.max_message_bytes = max_message_bytes
        self.return_failures = return_failures
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._call: Any = None

    def _stub(self) -> Any:
        with self._lock:
            if self._channel is None:
                from porch.runner.generated import function_pb2

                self._channel = grpc.insecure_channel(
                    self.address, options=channel_options(self.max_message_bytes)
                )
                self._call = self._channel.unary_unary(
                    EVALUATE_METHOD,
                    request_serializer=function_pb2.EvaluateFunctionRequest.SerializeToString,
                    response_deserializer=function_pb2.EvaluateFunctionResponse.FromString,
                )
            return self._call

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
            self._call = None

    def __enter__(self) -> RemoteRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, spec: FunctionSpec, rl: ResourceList, *, timeout: float) -> FunctionOutput:
        if not spec.image:
            raise FunctionNotFound(spec.exec_path)  # the runner has no business with exec paths
        return self.evaluate(spec.image, dump_resource_list(rl), timeout=timeout)

    def evaluate(self, image: str, data: bytes, *, timeout: float) -> FunctionOutput:
        """Send serialized ResourceList bytes; used by :meth:`run` and by tests."""
        from porch.runner.generated import function_pb2

        call = self._stub()
        request = function_pb2.EvaluateFunctionRequest(resource_list=data, image=image)
        metadata = ((RETURN_FAILURES_KEY, "1"),) if self.return_failures else ()
        try:
            response, rpc = call.with_call(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            return self._failure(image, err, timeout)
        exit_code = 0
        for key, value in rpc.trailing_metadata() or ():
            if key == EXIT_CODE_KEY:
                exit_code = int(value)
        stderr = bytes(response.log).decode("utf-8", errors="replace")
        try:
            out = parse_function_output(bytes(response.resource_list), exit_code, image, stderr)
        except FunctionExecutionError as exc:
            return FunctionOutput(ResourceList(), stderr=exc.message, exit_code=1)
        return FunctionOutput(out, stderr=stderr, exit_code=exit_code)

    def _failure(self, image: str, err: grpc.RpcError, timeout: float) -> FunctionOutput:
        code = err.code() if hasattr(err, "code") else None
        details = (err.details() if hasattr(err, "details") else None) or str(err)
        if code == grpc.StatusCode.NOT_FOUND:
            raise FunctionNotFound(image)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            message = f"function {image} timed out after {timeout:g}s"
        elif code == grpc.StatusCode.UNAVAILABLE:
            message = f"function runner at {self.address} is unavailable: {details}"
        else:
            name = _go_code_name(code)
            message = f'func eval "{image}" failed: rpc error: code = {name} desc = {details}'
        exit_code = 1
        if code == grpc.StatusCode.INTERNAL:
            exit_code = parse_exit_status(details) or 1
        return FunctionOutput(ResourceList(), stderr=message, exit_code=exit_code)


def _go_code_name(code: grpc.StatusCode | None) -> str:
    """The status code as Go's grpc spells it in error strings ("Internal", "NotFound")."""
    if code is None:
        return "Unknown"
    if code == grpc.StatusCode.OK:
        return "OK"
    return "".join(word.capitalize() for word in code.name.split("_"))

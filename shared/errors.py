"""One error tree for tidegate. Each error knows whether a retry can help.

Imports: stdlib + msgspec. `ErrorInfo` is the form that crosses the control pipe.
Messages name the cause: "sink 'cache': redis 127.0.0.1:6379 refused connection".
"""

from __future__ import annotations

import msgspec


class ErrorInfo(msgspec.Struct, frozen=True):
    kind: str
    message: str
    retryable: bool = False


class TidegateError(Exception):
    """Base of every error tidegate raises on purpose."""

    kind = "error"
    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def info(self) -> ErrorInfo:
        return ErrorInfo(kind=self.kind, message=self.message, retryable=self.retryable)


class ConfigError(TidegateError):
    """A spec or setting that cannot work; never retried (fix the spec)."""

    kind = "config"


class SourceError(TidegateError):
    """The source failed; retryable ones (connection lost, server restarting) reconnect with backoff."""

    kind = "source"
    retryable = True


class SinkError(TidegateError):
    """A sink failed to deliver. Retryable: back off and hold. Fatal: fail the pipeline."""

    kind = "sink"
    retryable = True

    def __init__(self, sink_id: str, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(f"sink '{sink_id}': {message}", retryable=retryable)
        self.sink_id = sink_id


class ProcessorError(TidegateError):
    """A processor failed on a batch (throw, bad return, or a breached limit)."""

    kind = "processor"
    retryable = True

    def __init__(self, processor_id: str, message: str, *, limit: str | None = None) -> None:
        super().__init__(f"processor '{processor_id}': {message}")
        self.processor_id = processor_id
        self.limit = limit  # "timeout_ms" | "cpu_ms" | "mem_mb" | None


class PipelineFailed(Exception):
    """The pipeline cannot go on (retries exhausted, a fatal error): its worker exits, status failed."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


def describe(exc: BaseException) -> ErrorInfo:
    """ErrorInfo for any exception: ours keep their kind, others are named by type."""
    if isinstance(exc, TidegateError):
        return exc.info()
    text = str(exc) or exc.__class__.__name__
    return ErrorInfo(kind="internal", message=f"{exc.__class__.__name__}: {text}", retryable=True)

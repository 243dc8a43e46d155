"""One error tree for tidegate. Each error knows whether a retry can help.

    TidegateError
    +-- ConfigError, SourceError, ProcessorError
    +-- SinkError
    |   +-- FatalSinkError      a sink error that fails the pipeline
    +-- PipelineFailed          the pipeline cannot go on (carries its ErrorInfo)
    +-- StoreError              the state store (re-exported by shared.store)
    |   +-- StoreUnavailable, LeaseLost
    +-- SpecError               a spec document (re-exported by shared.spec.load)
        +-- SpecMalformed, SpecInvalid

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
    """Base of every error tidegate raises on purpose.

    `kind` names what failed in a pipeline's ErrorInfo. An error with no kind of its
    own (None: the store and spec errors) is described like any other exception, by
    its type (`describe`)."""

    kind: str | None = "error"
    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def info(self) -> ErrorInfo:
        if self.kind is None:
            return _by_type(self)
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


class FatalSinkError(SinkError):
    """Raised out of a sink's delivery loop when `err` (a SinkError) cannot be retried:
    the pipeline fails with err's ErrorInfo."""

    retryable = False

    def __init__(self, err: SinkError) -> None:
        TidegateError.__init__(self, err.message, retryable=False)  # err.message names the sink already
        self.sink_id = err.sink_id
        self.err = err


class PipelineFailed(TidegateError):
    """The pipeline cannot go on (retries exhausted, a fatal error): its worker exits, status failed."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message, retryable=info.retryable)
        self.kind = info.kind
        self._info = info

    def info(self) -> ErrorInfo:
        return self._info


class StoreError(TidegateError):
    """The state store failed. Described by type ("StoreUnavailable: ..."), as before the tree."""

    kind = None
    retryable = True


class StoreUnavailable(StoreError):
    """The state store cannot be reached or failed a statement; retrying may help.
    The message names the store (host:port), never a password."""


class LeaseLost(StoreError):
    """A write was fenced: this pipeline's lease is held by another node (or a newer
    acquisition), so this worker must stop writing and exit."""


class SpecError(TidegateError, ValueError):
    """A spec document cannot be used (fix the document). A ValueError too, as before the tree."""

    kind = None


class SpecMalformed(SpecError):
    """The body is not JSON/YAML, or not an object."""


class SpecInvalid(SpecError):
    """Every problem found in a document, as (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors))


def _by_type(exc: BaseException) -> ErrorInfo:
    text = str(exc) or exc.__class__.__name__
    return ErrorInfo(kind="internal", message=f"{exc.__class__.__name__}: {text}", retryable=True)


def describe(exc: BaseException) -> ErrorInfo:
    """ErrorInfo for any exception: ours keep their kind, others are named by type."""
    if isinstance(exc, TidegateError):
        return exc.info()
    return _by_type(exc)

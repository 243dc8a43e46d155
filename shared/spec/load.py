"""Load a pipeline spec: parse (JSON or YAML), expand `${VAR}`, validate, normalize.

Decoding (bounded, see shared.spec.decode) is re-exported from here.
Imports: stdlib + msgspec + shared.spec. Every problem is collected and raised at
once as `SpecInvalid` (a list of (path, message)); a document that is not even
JSON/YAML raises `SpecMalformed`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

# re-exported: callers take decoding and its errors from here
from shared.errors import SpecInvalid as SpecInvalid
from shared.errors import SpecMalformed as SpecMalformed
from shared.spec.decode import parse as parse
from shared.spec.model import PipelineSpec
from shared.spec.validate import Error, convert, kind_of, semantic_errors, structural_errors

_ENV = re.compile(r"\$\$\{|\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")

ProcessorCheck = Callable[[str], "str | None"]


def expand_env(doc: Any, env: Mapping[str, str], path: str = "", errs: list[Error] | None = None) -> Any:
    """`${VAR}`, `${VAR:-default}` from env; `$${` is a literal `${`; others stay.
    Recursive, but only over documents `check_tree` let through (at most MAX_DEPTH deep)."""
    if errs is None:
        errs = []
    if isinstance(doc, dict):
        return {k: expand_env(v, env, f"{path}.{k}" if path else str(k), errs) for k, v in doc.items()}
    if isinstance(doc, list):
        return [expand_env(v, env, f"{path}[{i}]", errs) for i, v in enumerate(doc)]
    if isinstance(doc, str) and "${" in doc:

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errs.append((path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)"))
            return m.group(0)

        return _ENV.sub(sub, doc)
    return doc


def validate_document(
    doc: Any, *, env: Mapping[str, str] | None = None, check_processor: ProcessorCheck | None = None
) -> PipelineSpec:
    """Validate a document `parse` gave (or one merged from such): raise SpecInvalid with every error."""
    if not isinstance(doc, dict):
        raise SpecInvalid([("$", f"a pipeline spec must be an object, got {kind_of(doc)}")])
    errs: list[Error] = []
    doc = expand_env(doc, os.environ if env is None else env, "", errs)
    errs.extend(structural_errors(doc))
    if errs:
        raise SpecInvalid(errs)
    try:
        spec = convert(doc)
    except msgspec.ValidationError as exc:  # a rule the structural walker does not know: same error shape
        raise SpecInvalid([validation_error(exc)]) from None
    errs.extend(semantic_errors(spec))
    if check_processor is not None:
        for i, p in enumerate(spec.spec.processors):
            inline = getattr(p, "inline", None)  # javascript only; native ones: semantic_errors
            problem = check_processor(inline) if inline is not None else None
            if problem:
                errs.append((f"spec.processors[{i}].inline", f"processor '{p.id}': {problem}"))
    if errs:
        raise SpecInvalid(errs)
    return spec


def validation_error(exc: msgspec.ValidationError) -> Error:
    """msgspec's `Expected ... - at `$.spec.x`` as (path, message): the one conversion (API and CLI)."""
    msg, _, where = str(exc).partition(" - at `")
    return where.rstrip("`").removeprefix("$.").removeprefix("$") or "$", msg


def load_bytes(data: bytes | str, **kw: Any) -> PipelineSpec:
    return validate_document(parse(data), **kw)


def to_document(spec: PipelineSpec) -> dict[str, Any]:
    """The normalized document, defaults filled in, keys in contract order."""
    d = msgspec.to_builtins(spec)
    return {"apiVersion": d["apiVersion"], "kind": d["kind"], "metadata": d["metadata"], "spec": d["spec"]}


def encode_spec(spec: PipelineSpec) -> bytes:
    return msgspec.json.encode(to_document(spec))


def decode_spec(data: bytes) -> PipelineSpec:
    """Trusted decode of a stored/normalized spec (already validated)."""
    return msgspec.json.decode(data, type=PipelineSpec)


MAX_FILE = 10 * 1024 * 1024  # the API's body limit, for spec files too


def load_file(path: Path, *, check_processor: ProcessorCheck | None = None) -> tuple[PipelineSpec | None, list[str]]:
    """One spec file for `tidegate validate`, `serve --config` and SIGHUP alike:
    the spec, or every problem as `<file>: <path>: <message>` lines."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            raise SpecMalformed(f"larger than {MAX_FILE} bytes")
        return validate_document(parse(data), check_processor=check_processor), []
    except OSError as exc:
        return None, [f"{path}: {exc.strerror or exc}"]
    except SpecMalformed as exc:
        return None, [f"{path}: {exc}"]
    except SpecInvalid as exc:
        return None, [f"{path}: {p}: {m}" for p, m in exc.errors]


def spec_files(paths: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml", ".json") and q.is_file()))
        else:
            out.append(p)
    return out

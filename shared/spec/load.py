"""Load a pipeline spec: parse (JSON or YAML), expand `${VAR}`, validate, normalize.

Imports: stdlib + msgspec + pyyaml. Every problem is collected and raised at
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
import yaml

from shared.spec.model import PipelineSpec
from shared.spec.validate import Error, convert, semantic_errors, structural_errors

_ENV = re.compile(r"\$\$\{|\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")

ProcessorCheck = Callable[[str], "str | None"]


class SpecMalformed(ValueError):
    """The body is not JSON/YAML, or not an object."""


class SpecInvalid(ValueError):
    def __init__(self, errors: list[Error]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors))


class _Loader(yaml.SafeLoader):
    pass


# YAML 1.1 would turn `on`/`off`/`yes`/`no` into booleans and `0755` into octal:
# keep the JSON-like YAML 1.2 core resolvers only for booleans.
_Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse(data: bytes | str, *, yaml_ok: bool = True) -> Any:
    """JSON first (it is a YAML subset, but msgspec is stricter and faster), then YAML."""
    text = data.decode("utf-8", errors="strict") if isinstance(data, bytes) else data
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        if not yaml_ok:
            raise SpecMalformed(f"malformed JSON: {exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecMalformed(f"malformed YAML: {exc}".replace("\n", " ")) from None


def expand_env(doc: Any, env: Mapping[str, str], path: str = "", errs: list[Error] | None = None) -> Any:
    """`${VAR}`, `${VAR:-default}` from env; `$${` is a literal `${`; others stay."""
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
    """Validate a parsed document; raise SpecInvalid with every error."""
    if not isinstance(doc, dict):
        raise SpecInvalid([("$", f"a pipeline spec must be an object, got {type(doc).__name__}")])
    errs: list[Error] = []
    doc = expand_env(doc, os.environ if env is None else env, "", errs)
    errs.extend(structural_errors(doc))
    if errs:
        raise SpecInvalid(errs)
    spec = convert(doc)
    errs.extend(semantic_errors(spec))
    if check_processor is not None:
        for i, p in enumerate(spec.spec.processors):
            problem = check_processor(p.inline)
            if problem:
                errs.append((f"spec.processors[{i}].inline", f"processor '{p.id}': {problem}"))
    if errs:
        raise SpecInvalid(errs)
    return spec


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


def spec_files(paths: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml", ".json") and q.is_file()))
        else:
            out.append(p)
    return out

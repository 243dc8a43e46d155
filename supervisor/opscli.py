"""The ops client behind `tidegate get|apply|pause|resume|stop|restart|delete`:
a thin synchronous httpx client of the REST API, for scripts and people.

    tidegate get [NAME] [-o table|json|yaml]
    tidegate apply -f SPEC            (create, or update with the full document; `-f -` reads stdin)
    tidegate pause|resume|stop|restart|delete NAME
    tidegate dlq ls|show|replay|purge NAME [ID...] [--stage S] [--all]   (supervisor.dlqcli)
    tidegate snapshot start NAME TABLE... [--chunk-rows N] | ls NAME | pause|resume|cancel NAME ID

`--server URL` (default $TIDEGATE_SERVER or http://127.0.0.1:8080); the bearer
token comes from $TIDEGATE_API_TOKEN. Exit codes scripts can branch on:
0 ok, 1 error, 3 not found. Imports: stdlib + httpx + yaml + shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx
import yaml

EXIT_OK, EXIT_ERROR, EXIT_NOT_FOUND = 0, 1, 3
DEFAULT_SERVER = "http://127.0.0.1:8080"
ACTIONS = ("pause", "resume", "stop", "restart", "delete")


class OpsError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ http
def client(server: str, timeout: float) -> httpx.Client:
    token = os.environ.get("TIDEGATE_API_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)


def call(c: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
    try:
        r = c.request(method, path, **kw)
    except httpx.HTTPError as exc:
        raise OpsError(
            f"cannot reach tidegate at {c.base_url}: {exc.__class__.__name__}: {exc}; "
            "is `tidegate serve` running? (--server URL or TIDEGATE_SERVER)"
        ) from None
    if r.status_code < 400:
        return r
    try:
        err = r.json()["error"]
        msg = f"{err['code']}: {err['message']}"
        for d in err.get("details") or []:
            msg += f"\n  {d['path']}: {d['message']}"
    except (ValueError, KeyError, TypeError):
        msg = f"HTTP {r.status_code}: {r.text[:500]}"
    if r.status_code == 401:
        msg += " (set TIDEGATE_API_TOKEN)"
    raise OpsError(f"{method} {path}: {msg}", EXIT_NOT_FOUND if r.status_code == 404 else EXIT_ERROR)


# ---------------------------------------------------------------- output
def _position(info: dict[str, Any]) -> str:
    cks = info.get("ops", {}).get("checkpoints") or {}
    return ",".join(f"{k}={v.get('position')}" for k, v in sorted(cks.items())) or "-"


def _age(seconds: float | None) -> str:
    if not seconds:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def table(rows: list[dict[str, Any]]) -> str:
    head = ["NAME", "STATUS", "SOURCE", "SINKS", "EVENTS_OUT", "RESTARTS", "UPTIME", "CHECKPOINTS", "LAST_ERROR"]
    lines = [head]
    for info in rows:
        ops = info.get("ops", {})
        body = info.get("spec", {}).get("spec", {})
        err = (ops.get("last_error") or "-").replace("\n", " ")
        lines.append(
            [
                info["name"],
                info["status"],
                body.get("source", {}).get("type", "?"),
                ",".join(s["config"]["id"] for s in body.get("sinks", [])),
                str(ops.get("events_out", 0)),
                str(ops.get("restarts", 0)),
                _age(ops.get("uptime_s")),
                _position(info),
                err if len(err) <= 60 else err[:57] + "...",
            ]
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(head) - 1)]
    return "\n".join("   ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in lines)


def render(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return table(data if isinstance(data, list) else [data])


# -------------------------------------------------------------- commands
def merge_patch_for(current: Any, wanted: Any) -> Any:
    """The RFC 7386 patch that turns `current` into exactly `wanted`: the full
    wanted document, plus null for every key it no longer has."""
    if not isinstance(current, dict) or not isinstance(wanted, dict):
        return wanted
    out = {k: merge_patch_for(current.get(k), v) for k, v in wanted.items()}
    out.update({k: None for k in current if k not in wanted})
    return out


def load_spec(path: str) -> dict[str, Any]:
    from shared.spec.load import SpecInvalid, SpecMalformed, parse

    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except OSError as exc:
        raise OpsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = parse(raw)
    except (SpecMalformed, SpecInvalid) as exc:
        raise OpsError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
        raise OpsError(f"{path}: a pipeline spec needs metadata.name")
    return doc


def unchanged(doc: dict[str, Any], served: dict[str, Any]) -> bool:
    """True when the server already runs this very spec (compared normalized; a
    spec holding secrets or ${VAR} is never judged unchanged, since the server
    shows secrets redacted and expands variables from its own environment)."""
    from shared.spec.load import SpecInvalid, to_document, validate_document
    from shared.spec.redact import redact

    if "${" in json.dumps(doc) or redact(doc) != doc:
        return False
    try:
        return bool(redact(to_document(validate_document(doc, env={}))) == served)
    except SpecInvalid:
        return False


def cmd_apply(c: httpx.Client, path: str, fmt: str | None) -> int:
    doc = load_spec(path)
    name = doc["metadata"]["name"]
    try:
        served = call(c, "GET", f"/pipelines/{name}").json()
    except OpsError as exc:
        if exc.code != EXIT_NOT_FOUND:
            raise
        served = None
    if served is None:
        info = call(c, "POST", "/pipelines", json=doc).json()
        what = "created"
    else:
        current = served["spec"]
        if unchanged(doc, current):
            info, what = served, "unchanged"
        else:
            info = call(
                c,
                "PATCH",
                f"/pipelines/{name}",
                content=json.dumps(merge_patch_for(current, doc)),
                headers={"content-type": "application/merge-patch+json"},
            ).json()
            what = "configured"
    print(render(info, fmt) if fmt else f"pipeline/{name} {what}")
    return EXIT_OK


def cmd_snapshot(c: httpx.Client, a: argparse.Namespace) -> int:
    """Incremental snapshots (CONTRACT section 13)."""
    base = f"/pipelines/{a.name}/snapshots"
    if a.op == "ls":
        if a.args:
            raise OpsError("snapshot ls takes only the pipeline name")
        print(render(call(c, "GET", base).json(), "json" if not a.output_given else a.output))
        return EXIT_OK
    if a.op == "start":
        if not a.args:
            raise OpsError("snapshot start NAME TABLE...: name at least one table")
        snap = call(c, "POST", base, json={"tables": a.args, "chunk_rows": a.chunk_rows}).json()
    else:
        if len(a.args) != 1:
            raise OpsError(f"snapshot {a.op} NAME ID: the snapshot id (see `tidegate snapshot ls NAME`)")
        snap = call(c, "POST", f"{base}/{a.args[0]}/{a.op}").json()
    print(render(snap, a.output) if a.output_given else f"snapshot/{snap['id']} {snap['status']}")
    return EXIT_OK


def run(a: argparse.Namespace) -> int:
    with client(a.server, a.timeout) as c:
        if a.command == "get":
            data = call(
                c,
                "GET",
                f"/pipelines/{a.name}" if a.name else "/pipelines",
                params=[("label", s) for s in a.selector] if not a.name else None,
            ).json()
            print(render(data, a.output))
            return EXIT_OK
        if a.command == "apply":
            return cmd_apply(c, a.filename, a.output if a.output_given else None)
        if a.command == "dlq":
            from supervisor import dlqcli

            return dlqcli.run(c, a)
        if a.command == "snapshot":
            return cmd_snapshot(c, a)
        if a.command == "delete":
            call(c, "DELETE", f"/pipelines/{a.name}")
            print(f"pipeline/{a.name} deleted")
            return EXIT_OK
        info = call(c, "POST", f"/pipelines/{a.name}/{a.command}").json()
        print(render(info, a.output) if a.output_given else f"pipeline/{a.name} {info['status']}")
        return EXIT_OK


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=os.environ.get("TIDEGATE_SERVER", DEFAULT_SERVER),
        help="API base URL (default $TIDEGATE_SERVER or %(default)s)",
    )
    common.add_argument("-o", "--output", choices=["table", "json", "yaml"], default=None)
    common.add_argument("--timeout", type=float, default=60.0, help="seconds per request (stop may drain)")
    ap = argparse.ArgumentParser(
        prog="tidegate",
        description="Drive a tidegate supervisor over its REST API. "
        "Token: $TIDEGATE_API_TOKEN. Exit codes: 0 ok, 1 error, 3 not found.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("get", parents=[common], help="list pipelines, or show one")
    g.add_argument("name", nargs="?")
    g.add_argument("-l", "--selector", action="append", default=[], metavar="KEY=VALUE", help="label selector")
    p = sub.add_parser("apply", parents=[common], help="create a pipeline, or update it to this spec")
    p.add_argument("-f", "--filename", required=True, metavar="SPEC", help="YAML or JSON spec file, - for stdin")
    for action in ACTIONS:
        sub.add_parser(action, parents=[common], help=f"{action} a pipeline").add_argument("name")
    from supervisor import dlqcli

    dlqcli.add_parser(sub, common)
    snap = sub.add_parser("snapshot", parents=[common], help="incremental snapshots (backfills) of tables")
    snap.add_argument("op", choices=["start", "ls", "pause", "resume", "cancel"])
    snap.add_argument("name")
    snap.add_argument("args", nargs="*", metavar="TABLE|ID")
    snap.add_argument("--chunk-rows", type=int, default=10000)
    return ap


def main(argv: list[str]) -> int:
    try:
        a = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return EXIT_OK if exc.code in (0, None) else EXIT_ERROR
    a.output_given = a.output is not None
    a.output = a.output or "table"
    try:
        return run(a)
    except OpsError as exc:
        print(f"tidegate {a.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_ERROR
    except BrokenPipeError:  # `tidegate get -o json | head`: the reader went away; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK

"""The `tidegate` console script: serve, validate, version, and the ops
commands (get, apply, pause, resume, stop, restart, delete, snapshot) in `supervisor.opscli`.
Imports: stdlib + shared + supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from shared.spec.load import load_file, spec_files

VERSION = "0.1.0"
OPS_COMMANDS = {"get", "apply", "pause", "resume", "stop", "restart", "delete", "dlq", "snapshot"}


def cmd_validate(paths: list[str]) -> int:
    from supervisor.app import check_processor_fn

    check = check_processor_fn()
    ok = True
    files = spec_files(paths)
    if not files:
        print("no spec files given", file=sys.stderr)
        return 1
    for f in files:
        spec, problems = load_file(f, check_processor=check)
        ok = ok and spec is not None
        print(f"{f}: ok" if spec is not None else "\n".join(problems))
    return 0 if ok else 1


def cmd_serve(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tidegate serve", description="Run the supervisor and its REST API.")
    ap.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="PATH",
        help="spec file or folder of *.yaml|*.yml|*.json specs (repeatable)",
    )
    ap.add_argument("--state-dir", default=os.environ.get("TIDEGATE_STATE_DIR", ".tidegate"))
    ap.add_argument("--api-addr", default=os.environ.get("TIDEGATE_API_ADDR", "127.0.0.1:8080"))
    ap.add_argument("--log-format", choices=["console", "json"], default=None)
    ap.add_argument("--log-level", default="info")
    ap.add_argument(
        "--state-url",
        default=os.environ.get("TIDEGATE_STATE_URL") or None,
        metavar="URL",
        help="postgresql://user:pass@host:port/db: keep specs, desired states and checkpoints in "
        "PostgreSQL (tables tidegate_*, created when missing) instead of <state-dir>/tidegate.db. "
        "Several supervisors on one URL share the pipelines: each runs those it holds a lease "
        "on (TTL TIDEGATE_LEASE_TTL_S, default 15 s) and takes over those of a node that died. "
        "The state dir still holds local files (worker locks). Env: TIDEGATE_STATE_URL",
    )
    ap.add_argument(
        "--node-id",
        default=os.environ.get("TIDEGATE_NODE_ID") or None,
        metavar="ID",
        help="this supervisor's name in the leases of --state-url (default <hostname>-<pid>). Env: TIDEGATE_NODE_ID",
    )
    a = ap.parse_args(argv)
    if a.state_url:
        from shared.store import is_postgres_url

        if not is_postgres_url(a.state_url):
            print("tidegate serve: --state-url must be a postgresql://... URL", file=sys.stderr)
            return 2
    fmt = a.log_format or ("console" if sys.stderr.isatty() else "json")
    from supervisor.app import ServeConfig, run

    cfg = ServeConfig(
        configs=a.config,
        state_dir=a.state_dir,
        api_addr=a.api_addr,
        log_format=fmt,
        log_level=a.log_level,
        token=os.environ.get("TIDEGATE_API_TOKEN") or None,
        state_url=a.state_url,
        node_id=a.node_id,
    )
    return asyncio.run(run(cfg))


USAGE = """usage: tidegate <command> [options]

commands:
  serve [--config PATH]... [--state-dir DIR] [--api-addr HOST:PORT] [--log-format console|json] [--log-level LEVEL]
        [--state-url postgresql://...] [--node-id ID]
  validate SPEC...            check spec files; exit 1 and print every error with its field path
  version
  get [NAME] | apply -f SPEC | pause|resume|stop|restart|delete NAME   (ops client; --server URL, -o table|json|yaml)
  dlq ls|show|replay|purge NAME [ID...] [--stage S] [--all]   (the dead-letter queue)
  snapshot start NAME TABLE... [--chunk-rows N] | snapshot ls NAME | snapshot pause|resume|cancel NAME ID
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 1
    cmd, rest = args[0], args[1:]
    if cmd == "serve":
        return cmd_serve(rest)
    if cmd == "validate":
        if not rest or rest[0] in ("-h", "--help"):
            print("usage: tidegate validate SPEC...")
            return 0 if rest else 1
        return cmd_validate(rest)
    if cmd in ("version", "--version"):
        print(f"tidegate {VERSION}")
        return 0
    if cmd in OPS_COMMANDS:
        try:
            from supervisor import opscli
        except ImportError:
            print(f"tidegate {cmd}: the ops client is not available in this build", file=sys.stderr)
            return 1
        return int(opscli.main([cmd, *rest]))
    print(f"tidegate: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

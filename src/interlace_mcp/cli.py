"""The ``interlace-mcp`` command (DESIGN section 4). Settings precedence: flags > env > .env > defaults.

stdout is the MCP wire for ``serve`` on stdio: everything this module prints for other commands goes
to stdout on purpose (tables, JSON), and logs always go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from interlace_mcp import __version__
from interlace_mcp._logging import configure_logging
from interlace_mcp.app import (
    Runtime,
    build_runtime,
    decide_approval_sync,
    fund_as_operator,
    open_runtime,
    reconcile,
    recover,
    sandbox_state_path,
    set_agent_frozen,
)
from interlace_mcp.audit import AuditLog
from interlace_mcp.client import STABLECOINS, CryptoWallet, InterlaceClient, InterlaceError
from interlace_mcp.config import SECRET_SETTINGS, ConfigError, Settings, check_startup, load_settings, mask_url
from interlace_mcp.money import AmountError, format_amount, format_exact_amount, parse_amount
from interlace_mcp.operations import Refusal, clean_text, day_text, quoted_agent_text, what_text
from interlace_mcp.policy import (
    AGENT_NAME_RULE,
    Approval,
    PolicyError,
    cards,
    day_figures,
    funding,
    is_agent_name,
    private_dir,
    reports,
    token_digest,
)
from interlace_mcp.sandbox import SandboxState, parse_fault, run_sandbox
from interlace_mcp.server import build_server
from interlace_mcp.tools import select_tools

if TYPE_CHECKING:
    from interlace_mcp.server import AuthMode

__all__ = ["main"]

# The HTTP stack (uvicorn, the HTTP/SSE app with JWT support, the dashboard) is imported only by the
# commands that serve HTTP: the stdio server, the one most clients start, boots faster without it.

logger = logging.getLogger("interlace_mcp.cli")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other startup error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _global_flags(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """--read-only / --toolsets: before or after the command (``interlace-mcp --read-only`` serves)."""
    parser.add_argument(
        "--read-only", action="store_true", default=default, help="register only read-only tools (INTERLACE_READ_ONLY)"
    )
    parser.add_argument(
        "--toolsets",
        default=default,
        help="comma list of toolsets: cards,transfers,account,spend,funding (INTERLACE_TOOLSETS)",
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="interlace-mcp",
        description="MCP server that lets AI agents spend money safely through Interlace. "
        "Without a command it serves (same options as serve).",
    )
    p.add_argument("--version", action="version", version=f"interlace-mcp {__version__}")
    _global_flags(p, default=None)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the MCP server (default: stdio)")
    serve.add_argument("--transport", choices=["stdio", "sse", "http"], default="stdio")
    # None = not given: on stdio a host, port or auth mode would be silently ignored, so they are errors.
    serve.add_argument("--host", default=None, help="HTTP/SSE only (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="HTTP/SSE only (default 8765)")
    serve.add_argument("--auth", choices=["token", "jwt", "none"], default=None, help="HTTP/SSE only (default token)")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="HTTP/SSE only: N server processes sharing the port and the database (limits hold across them; default 1)",
    )
    # SUPPRESS: a flag given before the command is not reset by the subcommand's default.
    _global_flags(serve, default=argparse.SUPPRESS)

    sandbox = sub.add_parser("sandbox", help="run the Interlace emulator alone on a port")
    sandbox.add_argument("--host", default=None, help="default 127.0.0.1")
    sandbox.add_argument("--port", type=int, default=None, help="default 8766")
    sandbox.add_argument("--reset", action="store_true", help="wipe the emulator state back to its seeds and exit")
    sandbox.add_argument(
        "--fault",
        action="append",
        type=parse_fault,
        default=[],
        metavar="PATH:KIND[:STATUS][:TIMES]",
        help="inject a fault (repeatable); KIND: latency, error, rate_limit, timeout, reset, fail_after_commit",
    )
    sandbox.add_argument("--latency-ms", type=int, default=0, metavar="N", help="delay every API request by N ms")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command")
    purchase = sandbox_sub.add_parser("simulate-purchase", help="make a sandbox card spend at a merchant")
    purchase.add_argument("--card", required=True, help="card id")
    purchase.add_argument("--amount", required=True, help='amount, e.g. "12.50"')
    purchase.add_argument("--merchant", default=None)
    purchase.add_argument("--mcc", default=None, help="merchant category code (4 digits)")
    purchase.add_argument("--three-ds", action="store_true", help="3-D Secure: the issuer sends a CARD.3DS.OTP first")
    deposit = sandbox_sub.add_parser("deposit", help="simulate an on-chain stablecoin deposit into the wallet")
    deposit.add_argument("--amount", required=True, help='amount, e.g. "100.00"')
    deposit.add_argument("--currency", default="USDC", choices=["USDC", "USDT"])
    deposit.add_argument("--chain", default=None, help="chain of the deposit address (default ETH)")
    settle = sandbox_sub.add_parser("settle", help="settle pending sandbox card authorizations now")
    settle.add_argument("--card", default=None, help="only this card's")
    settle.add_argument("--transaction", default=None, help="only this authorization")

    sub.add_parser("check", help="validate settings and policy; print resolved values and tools per agent")

    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="check the hash chain; names the first bad record")
    tail = audit_sub.add_parser("tail", help="recent records (card data is never in them)")
    tail.add_argument("-n", type=int, default=20)
    tail.add_argument("--agent", default=None)
    tail.add_argument("--json", action="store_true")
    sub.add_parser("doctor", help="check the configured Interlace: auth, account, balance, BINs, cardholders, wallets")

    approvals = sub.add_parser("approvals", help="the human side of approvals")
    approvals_sub = approvals.add_subparsers(dest="approvals_command", required=True)
    approvals_sub.add_parser("list", help="pending approvals").add_argument("--all", action="store_true")
    for verb in ("approve", "deny"):
        cmd = approvals_sub.add_parser(verb)
        cmd.add_argument("id")
        cmd.add_argument("--reason", default=None)
        cmd.add_argument("--by", default=None, help="operator name recorded with the decision (default: $USER)")

    fund = sub.add_parser(
        "fund", help="operator: move stablecoins from the CryptoConnect wallet into the Infinity account (1:1 to USD)"
    )
    fund.add_argument("amount", help='amount, e.g. "250.00" (at most 2 decimals)')
    fund.add_argument("--currency", default="USDC", choices=list(STABLECOINS))
    fund.add_argument(
        "--request-id",
        default=None,
        help="idempotency key: rerun with the printed one to retry safely or learn the outcome (default: a new one)",
    )
    fund.add_argument("--by", default=None, help="operator name recorded in the audit log (default: $USER)")

    spend = sub.add_parser("spend", help="per-agent spend vs limits, per window")
    spend.add_argument("--agent", default=None)
    spend.add_argument("--json", action="store_true")

    rec = sub.add_parser("reconcile", help="compare the ledger with Interlace; report differences; never moves money")
    rec.add_argument("--since", default=None, help="only requests from this ISO date/time or the last N[hd] (24h, 7d)")
    rec.add_argument(
        "--settle", action="store_true", help="first settle unfinished requests by lookup (no money moves)"
    )
    rec.add_argument("--json", action="store_true")

    agents = sub.add_parser("agents", help="agent bearer tokens and the kill switch")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    agents_sub.add_parser("token", help="mint a bearer token for NAME (printed once)").add_argument("name")
    agents_sub.add_parser("revoke", help="revoke every database token of NAME").add_argument("name")
    agents_sub.add_parser("list", help="agents with tokens, file tokens and freeze state")
    for verb in ("freeze", "unfreeze"):
        cmd = agents_sub.add_parser(verb)
        cmd.add_argument("name")
        cmd.add_argument("--reason", default=None)
        cmd.add_argument("--by", default=None)

    operators = sub.add_parser("operators", help="dashboard operator tokens")
    operators_sub = operators.add_subparsers(dest="operators_command", required=True)
    operators_sub.add_parser("token", help="mint a dashboard token for operator NAME (printed once)").add_argument(
        "name"
    )
    operators_sub.add_parser("revoke", help="revoke every dashboard token of NAME (ends its sessions)").add_argument(
        "name"
    )
    operators_sub.add_parser("list", help="operators with live dashboard tokens")

    dash = sub.add_parser("dashboard", help="serve the operator dashboard alone (for stdio deployments)")
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8767)
    return p


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (they win over the environment)."""
    overrides: dict[str, Any] = {}
    if getattr(args, "read_only", None):
        overrides["read_only"] = True
    if getattr(args, "toolsets", None) is not None:
        overrides["toolsets"] = args.toolsets
    return overrides


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse; without a command the arguments are serve's (``interlace-mcp --transport http`` serves HTTP)."""
    takes_value = {
        option
        for action in [*parser._actions, *_serve_parser(parser)._actions]
        if action.nargs != 0 and action.option_strings
        for option in action.option_strings
    }
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            break
        if not token.startswith("-"):
            return parser.parse_args(args)  # the first positional is the command (argparse checks it)
        i += 2 if token in takes_value else 1
    if any(token in ("-h", "--help", "--version") for token in args):
        return parser.parse_args(args)
    return parser.parse_args(["serve", *args])


def _serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve: argparse.ArgumentParser = subparsers.choices["serve"]
    return serve


def _contradictions(args: argparse.Namespace) -> str | None:
    """Flags that cannot all apply (they would be silently ignored): the one-line reason, or None."""
    if args.command == "serve" and args.transport == "stdio":
        given = [
            flag
            for flag, value in (
                ("--port", args.port),
                ("--host", args.host),
                ("--auth", args.auth),
                ("--workers", args.workers),
            )
            if value is not None
        ]
        if given:
            return (
                f"serve: {' and '.join(given)} only {'applies' if len(given) == 1 else 'apply'} to --transport http "
                "or sse (stdio has no "
                f"{'port' if given == ['--port'] else 'network listener'}); add --transport http, or drop "
                f"{' and '.join(given)}"
            )
    if args.command == "sandbox" and args.reset and args.sandbox_command is None:
        serving = [
            flag
            for flag, given in (
                ("--host", args.host is not None),
                ("--port", args.port is not None),
                ("--fault", bool(args.fault)),
                ("--latency-ms", bool(args.latency_ms)),
            )
            if given
        ]
        if serving:
            return (
                f"sandbox: --reset wipes the emulator state and exits, so {' and '.join(serving)} would be ignored; "
                "run interlace-mcp sandbox --reset first, then interlace-mcp sandbox with the other flags"
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(_parser(), sys.argv[1:] if argv is None else argv)
    command = args.command
    problem = _contradictions(args)
    if problem:
        print(f"interlace-mcp: {problem}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(_flags(args))
        # The emulator alone never opens the database; every other command does.
        check_startup(settings, database=command != "sandbox")
    except ConfigError as exc:
        print(f"interlace-mcp: {exc}", file=sys.stderr)
        return 2
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    configure_logging(settings.log_level, settings.log_format, secrets=[secret])
    try:
        if command == "serve":
            return _serve(args, settings)
        if command == "sandbox":
            return _sandbox(args, settings)
        if command == "check":
            return _check(settings)
        if command == "doctor":
            return anyio.run(_doctor, settings)
        if command == "approvals":
            return _approvals(args, settings)
        if command == "spend":
            return anyio.run(_spend, args, settings)
        if command == "fund":
            return _fund(args, settings)
        if command == "audit":
            return _audit(args, settings)
        if command == "reconcile":
            return anyio.run(_reconcile, args, settings)
        if command == "agents":
            if args.agents_command in ("token", "revoke", "list"):
                return _agent_tokens(args, settings)
            return anyio.run(_agents, args, settings)
        if command == "operators":
            return _operators(args, settings)
        if command == "dashboard":
            return _dashboard(args, settings)
    except ConfigError as exc:
        print(f"interlace-mcp: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(
            f"interlace-mcp: INTERLACE_POLICY_FILE={exc.source!r}: {exc.key}: {exc.reason}. Fix: correct {exc.key} "
            "in that file (README 'Policy'; interlace-mcp check shows the effective policy)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130  # Ctrl-C after a graceful stop: no traceback
    print(f"interlace-mcp: unknown command {command}", file=sys.stderr)
    return 2


# ---- serve ---------------------------------------------------------------------------------------


def stdio_production_warning(*, serving: bool) -> str:
    """One line on stderr when real money is (or may be) served over stdio (README "Deployments and trust")."""
    where = "served over stdio" if serving else "if served over stdio"
    return (
        f"interlace-mcp: warning: production credentials (real money) {where}: the server runs as the OS user of"
        " the client that starts it, so an agent with a shell under that user can read the database and act as"
        " an operator with this same command; serve over HTTP under a separate user or host instead, agents"
        " with bearer tokens (README: Deployments and trust)"
    )


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.transport != "stdio":
        return _serve_http(args, settings)
    server = build_server(settings)
    upstream = server.interlace_runtime.upstream  # type: ignore[attr-defined]
    # A custom loopback upstream is challenged when the server starts: app.prove_emulator warns if it fails.
    if not upstream.sandbox and not (upstream.unproven and upstream.loopback):
        print(stdio_production_warning(serving=True), file=sys.stderr)
    if upstream.embedded:
        print(
            "interlace-mcp: embedded sandbox: no real money (set INTERLACE_CLIENT_ID/SECRET for Interlace); "
            f"agent {settings.agent_id!r}, state in {settings.resolved_state_dir()}",
            file=sys.stderr,
        )
    server.run("stdio")
    return 0


def _serve_http(args: argparse.Namespace, settings: Settings) -> int:

    from interlace_mcp.server import WorkerOptions, build_http_app

    auth: AuthMode = args.auth or "token"
    workers = 1 if args.workers is None else args.workers
    if workers < 1:
        print("interlace-mcp: serve: --workers must be 1 or more (the default is 1)", file=sys.stderr)
        return 2
    host, port = args.host or "127.0.0.1", 8765 if args.port is None else args.port
    # Built here even with workers: a bad setting or policy stops startup once, with its message.
    app = build_http_app(settings, transport=args.transport, auth=auth, host=host)
    runtime = app.state.interlace_runtime
    if workers > 1 and runtime.upstream.embedded:
        runtime.close()
        print(
            "interlace-mcp: --workers needs a shared upstream: the embedded sandbox lives inside one process."
            " Run `interlace-mcp sandbox` and point INTERLACE_BASE_URL (with the sandbox credentials) at it",
            file=sys.stderr,
        )
        return 2
    path = "/mcp" if args.transport == "http" else "/sse"
    print(
        f"interlace-mcp: {args.transport} transport on http://{host}:{port}{path} (auth: {auth})"
        + ("; embedded sandbox: no real money" if runtime.upstream.embedded else "")
        + (f"; {workers} worker processes (dashboard: run interlace-mcp dashboard)" if workers > 1 else ""),
        file=sys.stderr,
    )
    if workers == 1:
        return _run_http(app, host, port, settings, grace_seconds=30)
    runtime.close()  # each worker opens its own runtime on the same database
    options = WorkerOptions(transport=args.transport, auth=auth, host=host, overrides=_flags(args))
    return _run_http(options.export(), host, port, settings, grace_seconds=30, workers=workers, factory=True)


def _run_http(
    app: Any,
    host: str,
    port: int,
    settings: Settings,
    *,
    grace_seconds: int,
    workers: int = 1,
    factory: bool = False,
) -> int:
    """Serve an ASGI app with uvicorn; on SIGTERM/SIGINT it stops accepting and lets in-flight calls finish.

    With ``workers`` > 1, ``app`` is the import path of an app factory: uvicorn binds the port once and
    starts that many processes, each building its own app (and runtime) on the shared socket.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,
        timeout_graceful_shutdown=grace_seconds,
        proxy_headers=False,
        workers=workers,
        factory=factory,
    )
    if workers == 1:
        uvicorn.Server(config).run()
        return 0
    import socket

    from uvicorn.supervisors import Multiprocess

    bound = config.bind_socket()
    # uvicorn binds it with protocol 0, so asyncio in the workers does not set TCP_NODELAY on accepted
    # connections (it checks for IPPROTO_TCP): every response then waited ~40 ms for a delayed ACK.
    sock = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()
    return 0


# ---- sandbox -------------------------------------------------------------------------------------


def _sandbox(args: argparse.Namespace, settings: Settings) -> int:
    if args.sandbox_command == "simulate-purchase":
        return anyio.run(_simulate_purchase, args, settings)
    if args.sandbox_command == "deposit":
        return anyio.run(_sandbox_deposit, args, settings)
    if args.sandbox_command == "settle":
        return anyio.run(_sandbox_settle, args, settings)
    if args.reset:
        path = sandbox_state_path(settings)
        SandboxState().save(path)
        print(f"emulator state wiped back to its seeds: {path}")
        return 0
    if args.latency_ms < 0:
        print("interlace-mcp: --latency-ms must not be negative", file=sys.stderr)
        return 2
    private_dir(settings.resolved_state_dir())  # 0700 whatever the umask (the emulator's state file is 0600)
    run_sandbox(
        args.host or "127.0.0.1",
        8766 if args.port is None else args.port,
        state_path=sandbox_state_path(settings),
        faults=args.fault,
        latency_ms=args.latency_ms,
    )
    return 0


async def _simulate_purchase(args: argparse.Namespace, settings: Settings) -> int:
    try:
        amount = parse_amount(args.amount)
    except AmountError as exc:
        print(f"interlace-mcp: --amount: {exc}", file=sys.stderr)
        return 2
    async with _client(settings) as (client, _):
        try:
            txn = await client.simulate_authorization(
                card_id=args.card, amount=amount, merchant_name=args.merchant, mcc=args.mcc, three_ds=args.three_ds
            )
        except InterlaceError as exc:
            print(f"interlace-mcp: simulate-purchase failed: {exc}", file=sys.stderr)
            return 1
    code = f" (code {txn.decline_code})" if txn.decline_code else ""
    verdict = "approved" if txn.status != "FAIL" else f"declined: {txn.remark}{code}"
    print(
        f"{format_amount(amount)} USD at {args.merchant or 'a merchant'} on card {args.card}: {verdict}"
        f" (transaction {txn.id})"
    )
    return 0


async def _sandbox_deposit(args: argparse.Namespace, settings: Settings) -> int:
    try:
        amount = parse_amount(args.amount)
    except AmountError as exc:
        print(f"interlace-mcp: --amount: {exc}", file=sys.stderr)
        return 2
    async with _client(settings) as (client, _):
        try:
            deposit = await client.sandbox_deposit(amount=amount, currency=args.currency, chain=args.chain)
            wallet = await client.get_crypto_wallet(deposit.wallet_id or "")
        except InterlaceError as exc:
            print(f"interlace-mcp: deposit failed (sandbox only): {exc}", file=sys.stderr)
            return 1
    balance = wallet.balance(args.currency)
    now = f"; wallet balance {balance.available} {args.currency}" if balance is not None else ""
    print(
        f"deposited {format_amount(amount)} {args.currency} on {deposit.chain} to {deposit.address} "
        f"(wallet {wallet.id}){now}"
    )
    return 0


async def _sandbox_settle(args: argparse.Namespace, settings: Settings) -> int:
    async with _client(settings) as (client, _):
        try:
            settled = await client.sandbox_settle(card_id=args.card, transaction_id=args.transaction)
        except InterlaceError as exc:
            print(f"interlace-mcp: settle failed (sandbox only): {exc}", file=sys.stderr)
            return 1
    for txn in settled:
        print(f"settled {format_amount(txn.amount)} USD on card {txn.card_id} (transaction {txn.id})")
    if not settled:
        print("nothing was pending")
    return 0


@asynccontextmanager
async def _client(settings: Settings, *, discover: bool = False) -> AsyncIterator[tuple[InterlaceClient, Runtime]]:
    """The runtime, opened for one CLI command (on the embedded emulator: its saved state). ``discover``:
    find the account and settle unfinished requests first, as a server does at startup."""
    runtime = build_runtime(settings)
    try:
        async with open_runtime(runtime, discover=discover):
            yield runtime.api, runtime
    finally:
        runtime.close()


# ---- check / doctor ------------------------------------------------------------------------------


async def _decide_upstream(runtime: Runtime) -> None:
    """Open the client only to challenge a custom upstream (app.prove_emulator): no discovery, no recovery."""
    async with open_runtime(runtime, discover=False):
        pass


def _check(settings: Settings) -> int:
    runtime = build_runtime(settings)
    if runtime.upstream.unproven:
        anyio.run(_decide_upstream, runtime)
    upstream = runtime.upstream
    if not upstream.sandbox:
        print(stdio_production_warning(serving=False), file=sys.stderr)
    policy = runtime.policies.current()
    print("settings:")
    for name, value in sorted(settings.model_dump().items()):
        if name in SECRET_SETTINGS:
            value = "***" if value else None
        elif name == "database_url" and value:
            value = mask_url(value)
        print(f"  INTERLACE_{name.upper()} = {value}")
    print(
        f"upstream: {'embedded sandbox (no real money)' if upstream.embedded else upstream.base_url}"
        f"{' [sandbox]' if upstream.sandbox else ' [PRODUCTION: real money]'}"
    )
    print(f"emulator: {'yes' if upstream.emulator else 'no'} ({upstream.why})")
    print(f"database: {mask_url(settings.resolved_database_url())}")
    print(f"policy: {policy.source}")
    tools = select_tools(read_only=settings.read_only, toolsets=settings.toolset_names(), sandbox=upstream.sandbox)
    agents = sorted({settings.agent_id, *policy.agents})
    for agent in agents:
        effective = policy.for_agent(agent)
        allowed = [t.name for t in tools if effective.allows_tool(t.name)]
        print(f"agent {agent}:")
        for key, value in effective.describe().items():
            if key != "agent":
                print(f"  {key} = {json.dumps(value)}")
        print(f"  enabled tools = {', '.join(allowed) or '(none)'}")
    if policy.payees:
        print("payees: " + ", ".join(f"{p.name} ({p.currency})" for p in policy.payees.values()))
    print("ok")
    return 0


async def _doctor(settings: Settings) -> int:
    ok = True
    async with _client(settings) as (client, runtime):
        print(f"upstream: {runtime.upstream.base_url}{' (embedded sandbox)' if runtime.upstream.embedded else ''}")
        try:
            account = await client.ensure_account_id()
            print(f"auth: ok; accountId {account}  -> INTERLACE_ACCOUNT_ID")
            balance = await client.infinity_balance()
            print(f"Infinity balance {balance.id}: {format_amount(balance.available)} {balance.currency}")
            bins = await client.list_bins()
            for b in bins:
                kind = "prepaid" if b.type == 1 else "budget" if b.type == 0 else f"type {b.type}"
                print(f"BIN {b.id} ({b.bin}, {kind}){'  -> INTERLACE_BIN_ID' if b.type == 1 else ''}")
            holders = await client.list_cardholders()
            for h in holders:
                print(f"cardholder {h.id} ({h.status}){'  -> INTERLACE_CARDHOLDER_ID' if h.status == 'ACTIVE' else ''}")
            if not any(b.type == 1 for b in bins):
                ok = False
                print("problem: no prepaid BIN (type 1): agent cards cannot be issued")
        except InterlaceError as exc:
            ok = False
            print(f"problem: {exc}")
        if ok:
            _doctor_wallets(await _wallets_or_error(client), settings.crypto_wallet_id)
    return 0 if ok else 1


async def _wallets_or_error(client: InterlaceClient) -> list[CryptoWallet] | InterlaceError:
    try:
        return await client.list_crypto_wallets()
    except InterlaceError as exc:
        return exc


def _doctor_wallets(wallets: list[CryptoWallet] | InterlaceError, configured: str | None) -> None:
    """CryptoConnect wallets (funding is optional: a problem here is a note, not a failed check)."""
    if isinstance(wallets, InterlaceError):
        print(f"note: CryptoConnect wallets could not be read ({wallets}); get_balance shows no wallets")
        return
    if not wallets:
        print("note: no CryptoConnect wallet: fund_account and get_deposit_address have nothing to use")
    for w in wallets:
        held = ", ".join(f"{format_exact_amount(b.available)} {b.currency}" for b in w.balances) or "no balances"
        use = w.id == configured or (configured is None and w.master)
        print(
            f"CryptoConnect wallet {w.id} ({w.nickname or 'no nickname'}{', master' if w.master else ''}): {held}"
            + ("  -> INTERLACE_CRYPTO_WALLET_ID" if use else "")
        )
    if configured is not None and all(w.id != configured for w in wallets):
        print(f"note: INTERLACE_CRYPTO_WALLET_ID={configured!r} is not among this account's wallets")


# ---- approvals / spend / agents ------------------------------------------------------------------


def _operator(name: str | None) -> str:
    import getpass

    return name or getpass.getuser() or "operator"


def _approvals(args: argparse.Namespace, settings: Settings) -> int:
    runtime = build_runtime(settings)
    ledger = runtime.ledger
    if args.approvals_command == "list":
        items = ledger.list_approvals(status=None if args.all else "pending")
        if not items:
            print("no pending approvals" if not args.all else "no approvals")
        for a in items:
            print(
                f"{a.id}  {a.status:<8} {a.agent:<16} {a.tool:<16} {format_amount(a.amount):>10} {a.currency}"
                f"  expires {a.expires_at_iso}"
            )
            for line in _approval_lines(runtime, a):
                print(f"    {line}")
        return 0
    approve = args.approvals_command == "approve"
    try:
        decided = decide_approval_sync(runtime, args.id, approve=approve, by=_operator(args.by), reason=args.reason)
    except (KeyError, ValueError) as exc:
        print(f"interlace-mcp: {exc.args[0]}", file=sys.stderr)
        return 1
    verb = "approved" if approve else "denied"
    print(
        f"{decided.id} {verb}: {decided.agent} {decided.tool} {format_amount(decided.amount)} {decided.currency}"
        + (
            f"; the agent's waiting call, or its retry of request_id {decided.request_id!r} before"
            f" {decided.expires_at_iso}, executes it once"
            if approve
            else "; reservation released"
        )
    )
    return 0


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _fund(args: argparse.Namespace, settings: Settings) -> int:
    try:
        amount = parse_amount(args.amount)
    except AmountError as exc:
        print(f"interlace-mcp: fund: {exc}", file=sys.stderr)
        return 2
    if args.request_id is not None and not _REQUEST_ID.fullmatch(args.request_id):
        print("interlace-mcp: fund: --request-id must be 1-64 chars of A-Z a-z 0-9 . _ : -", file=sys.stderr)
        return 2
    request_id = args.request_id or f"fund-{uuid.uuid4().hex}"
    if args.request_id is None:
        # Before anything moves: the one handle on this funding if the answer is lost.
        print(f"request id {request_id} (rerun with --request-id {request_id} to retry it safely)")
    return anyio.run(_fund_async, args, settings, amount, request_id)


async def _fund_async(args: argparse.Namespace, settings: Settings, amount: Decimal, request_id: str) -> int:
    async with _client(settings, discover=True) as (_, runtime):
        try:
            moved = await fund_as_operator(
                runtime, amount, currency=args.currency, request_id=request_id, by=_operator(args.by)
            )
        except Refusal as refusal:
            print(f"interlace-mcp: fund refused: {refusal}", file=sys.stderr)
            return 1
    real = "" if moved.sandbox else " (real money)"
    if moved.status == "completed":
        again = " (already done: nothing moved now)" if moved.replayed else ""
        print(
            f"funded{real}: {moved.amount} {moved.currency} from the CryptoConnect wallet into the Infinity account"
            f" as USD; transfer {moved.transaction_id}{again}"
        )
        return 0
    print(
        f"in progress: Interlace did not confirm the funding yet; nothing will move twice. Rerun with --request-id"
        f" {request_id} to learn the outcome ({moved.message})"
    )
    return 3


def _approval_lines(runtime: Runtime, a: Approval) -> list[str]:
    """What a human needs to decide, one fact a line; the agent's memo or label quoted and marked as its own."""
    details = {**a.details, "tool": a.tool}
    lines = [f"what: {what_text(details) if a.details else a.summary}"]
    quoted = quoted_agent_text(a.details)
    if quoted:
        lines.append(quoted)
    lines += [f"why: {why}" for why in a.reasons]
    if a.status in ("pending", "approved"):
        policy = runtime.policies.for_agent(a.agent)
        day = runtime.store.read_sync(day_figures, a.scope, a.agent, policy, a.currency, runtime.store.now())
        lines.append(f"agent's day now: {day_text(day, a.amount, included=True)}")
    if a.decided_by:
        lines.append(f"decided by {a.decided_by}" + (f": {clean_text(a.reason, 200)}" if a.reason else ""))
    lines.append(f"request {a.request_id}")
    return lines


async def _spend(args: argparse.Namespace, settings: Settings) -> int:
    async with _client(settings, discover=True) as (_, runtime):
        policy = runtime.policies.current()
        known = await runtime.store.read(reports.known_agents)
        agents = [args.agent] if args.agent else sorted({*known, *policy.agents, settings.agent_id})
        report: dict[str, Any] = {}
        for agent in agents:
            effective = policy.for_agent(agent)
            windows = await runtime.store.read(reports.window_status, runtime.scope, agent, effective)
            fund = await runtime.store.read(funding.fund_status, runtime.scope, agent, effective)
            report[agent] = {
                "currency": effective.currency,
                "frozen": await runtime.store.read(cards.frozen, agent) is not None,
                "windows": [w.as_dict() for w in windows],
                "funding": fund.as_dict(),
            }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for agent, info in report.items():
        print(f"agent {agent} ({info['currency']}){'  [FROZEN]' if info['frozen'] else ''}")
        print(f"  {'window':<12}{'limit':>12}{'spent':>12}{'reserved':>12}{'remaining':>12}  resets")
        for w in info["windows"]:
            print(
                f"  {w['window']:<12}{w['limit'] or 'none':>12}{w['spent']:>12}{w['reserved']:>12}"
                f"{w['remaining'] or '-':>12}  {w['resets_at'] or '-'}"
            )
        f = info["funding"]
        print(
            f"  {'funding':<12}{f['limit'] or 'none':>12}{f['funded']:>12}{f['reserved']:>12}"
            f"{f['remaining'] or '-':>12}  {f['resets_at'] or '-'}  (fund_daily; not spend)"
        )
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    log = AuditLog.from_url(settings.resolved_database_url(), hmac_key=settings.audit_key())
    if args.audit_command == "verify":
        result = log.verify()
        if result.ok:
            print(f"audit log ok: {result.records} records, chain and anchor intact")
            return 0
        where = f"first bad record: seq {result.first_bad_seq}" if result.first_bad_seq else "location unknown"
        print(f"AUDIT LOG TAMPERED: {result.reason} ({where}; {result.records} records verified before it)")
        return 1
    records = log.tail(args.n, agent=args.agent)
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=2, default=str))
        return 0
    for r in records:
        d = r.as_dict()
        extras = " ".join(
            f"{k}={d[k]}" for k in ("decision", "amount", "currency", "request_id", "outcome", "actor") if d.get(k)
        )
        print(f"{d['seq']:>6} {d['ts']} {d['agent']:<16} {d['tool']:<20} {d['event']:<16} {extras}")
    return 0


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([hd])", value)
    if match:
        return time.time() - int(match.group(1)) * (3600 if match.group(2) == "h" else 86400)
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since = _since(args.since)
    except ValueError:
        print(f"interlace-mcp: --since {args.since!r}: use an ISO date/time or 24h / 7d", file=sys.stderr)
        return 2
    async with _client(settings, discover=True) as (_, runtime):
        settled = await recover(runtime, grace=0.0) if args.settle else None
        report = await reconcile(runtime, since=since)
    if args.json:
        out: dict[str, Any] = {"matched": report.matched, "differences": [d.as_dict() for d in report.differences]}
        if settled is not None:
            out["settled"] = {"committed": settled.committed, "released": settled.released}
        print(json.dumps(out, indent=2))
    else:
        if settled is not None:
            print(f"settled: {len(settled.committed)} committed, {len(settled.released)} released")
        print(f"matched: {report.matched}; differences: {len(report.differences)}")
        for diff in report.differences:
            print(f"  {diff.kind:<16} {diff.agent or '-':<16} {diff.detail}")
    return 0 if report.ok else 1


def _record_operator_action(runtime: Runtime, **fields: Any) -> None:
    """An operator's CLI action in the audit log, by the OS user who ran it (never the token itself)."""
    runtime.store.write_sync(runtime.audit.append_in, actor=_operator(None), **fields)


def _agent_name_refused(name: str) -> bool:
    """Print why ``name`` is not an agent name (token, revoke, freeze and unfreeze take only valid ones)."""
    if is_agent_name(name):
        return False
    print(f"interlace-mcp: {name!r}: {AGENT_NAME_RULE}", file=sys.stderr)
    return True


def _agent_tokens(args: argparse.Namespace, settings: Settings) -> int:
    if args.agents_command != "list" and _agent_name_refused(args.name):
        return 2
    runtime = build_runtime(settings)
    ledger = runtime.ledger
    if args.agents_command == "token":
        token = "itl_agent_" + secrets.token_urlsafe(32)
        ledger.add_token(args.name, token_digest(token))
        _record_operator_action(runtime, agent=args.name, tool="agents", event="agent_token_minted")
        print(token)
        print(
            f"(bearer token for agent {args.name!r}: shown once, only its sha256 is stored; "
            f"revoke with: interlace-mcp agents revoke {args.name})",
            file=sys.stderr,
        )
        return 0
    if args.agents_command == "revoke":
        count = ledger.revoke_tokens(args.name)
        _record_operator_action(
            runtime, agent=args.name, tool="agents", event="agent_tokens_revoked", outcome=str(count)
        )
        print(f"revoked {count} token(s) of agent {args.name}; effective on the next request")
        file_token = runtime.policies.current().for_agent(args.name).token_sha256
        if file_token:
            print(
                f"note: agent {args.name} also has token_sha256 in {runtime.policies.current().source}; remove it there"
            )
        return 0 if count or file_token else 1
    policy = runtime.policies.current()
    db_tokens = ledger.token_agents()
    names = sorted({*db_tokens, *policy.agents, *ledger.known_agents()})
    for name in names:
        file_token = "yes" if policy.for_agent(name).token_sha256 else "no"
        frozen = "FROZEN" if ledger.agent_frozen(name) else ""
        print(f"{name:<24} database tokens: {db_tokens.get(name, 0):<3} file token: {file_token:<4} {frozen}")
    return 0


async def _agents(args: argparse.Namespace, settings: Settings) -> int:
    if _agent_name_refused(args.name):
        return 2
    freeze = args.agents_command == "freeze"
    async with _client(settings, discover=True) as (_, runtime):
        report = await set_agent_frozen(runtime, args.name, freeze=freeze, by=_operator(args.by), reason=args.reason)
    for failure in report.failures:
        print(failure, file=sys.stderr)
    action = "frozen" if freeze else "unfrozen"
    done = report.cards - len(report.failures)
    print(f"agent {args.name} {action}: {done} of {report.cards} card(s) {action} at Interlace")
    return 1 if report.failures else 0


# ---- operators / dashboard -----------------------------------------------------------------------


def _operators(args: argparse.Namespace, settings: Settings) -> int:
    runtime = build_runtime(settings)
    ledger = runtime.ledger
    if args.operators_command == "token":
        if not re.fullmatch(r"[A-Za-z0-9._:@-]{1,64}", args.name):
            print("interlace-mcp: operator names are 1-64 chars of A-Z a-z 0-9 . _ : @ -", file=sys.stderr)
            return 2
        from interlace_mcp.dashboard import OPERATOR_TOKEN_PREFIX

        token = OPERATOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
        ledger.add_operator_token(args.name, token_digest(token))
        _record_operator_action(runtime, agent="-", tool="operators", event="operator_token_minted", detail=args.name)
        print(token)
        print(
            f"(dashboard token for operator {args.name!r}: shown once, only its sha256 is stored; it opens the "
            f"dashboard only, never /mcp; revoke with: interlace-mcp operators revoke {args.name})",
            file=sys.stderr,
        )
        return 0
    if args.operators_command == "revoke":
        count = ledger.revoke_operator_tokens(args.name)
        _record_operator_action(
            runtime, agent="-", tool="operators", event="operator_tokens_revoked", detail=args.name, outcome=str(count)
        )
        print(f"revoked {count} dashboard token(s) of operator {args.name}; their sessions end on the next request")
        return 0 if count else 1
    names = ledger.operator_names()
    if not names:
        print("no operators: mint a dashboard token with: interlace-mcp operators token NAME")
    for name, count in names.items():
        print(f"{name:<24} dashboard tokens: {count}")
    return 0


def _dashboard(args: argparse.Namespace, settings: Settings) -> int:

    from interlace_mcp.dashboard import build_dashboard_app
    from interlace_mcp.server import transport_security

    security = transport_security(settings, args.host)  # beyond loopback only with INTERLACE_ALLOWED_HOSTS
    app = build_dashboard_app(settings, security=security)
    runtime = app.state.interlace_runtime
    print(
        f"interlace-mcp: operator dashboard on http://{args.host}:{args.port}/dashboard"
        + ("; embedded sandbox: no real money" if runtime.upstream.embedded else "")
        + ("" if runtime.ledger.operator_names() else "; no operator yet: run interlace-mcp operators token NAME"),
        file=sys.stderr,
    )
    return _run_http(app, args.host, args.port, settings, grace_seconds=10)

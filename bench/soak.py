"""Soak: many agents making random tool calls at once, with injected faults, against the emulator.

``--agents`` (10) agents each make ``--calls`` (200) random tool calls -- money tools (issue, top up,
withdraw, close, transfer), reads, and retries of their own requests left in progress -- concurrently,
each through its own MCP server (in-memory ``mcp.Client``) with its own policy limits. All servers share
one SQLite ledger + audit log and one emulator, served by uvicorn on a loopback port (real sockets, so
timeouts and connection resets are real). Before ``--fault-rate`` (10 %) of the calls, a random fault is
switched on at the emulator (5xx, 429, timeout, reset, failure after commit, latency) on a money path or
on a card read, for 1-5 requests, whoever sends them.

At the end every agent retries its in-progress requests until they finish; what a retry cannot settle is
settled by lookup (``recover``, as at startup). Then the invariants:

- no agent's window limit is exceeded (ledger spent + reserved <= limit) and no movement tops its
  agent's per_transaction limit;
- ledger committed == what left the Infinity account at the emulator; nothing reserved or in progress;
- no clientTransactionId moved twice; ``reconcile`` finds no difference;
- the audit log's hash chain verifies (``AuditLog.verify``);
- every refusal starts with ``[code]``, never an SDK error.

Bounded and loopback only. Prints a summary; exit code 0 when every invariant holds, 1 otherwise.

Usage::

    .venv/bin/python bench/soak.py [--agents 10] [--calls 200] [--fault-rate 0.1] [--seed 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp import Client
from starlette.applications import Starlette

from interlace_mcp.app import Runtime, reconcile, recover
from interlace_mcp.audit import AuditLog
from interlace_mcp.config import Settings
from interlace_mcp.sandbox import CLIENT_ID, CLIENT_SECRET, SandboxConnectionDropped, SandboxState, create_sandbox_app
from interlace_mcp.server import build_server

V3 = "/open-api/v3"
MONEY_PATHS = [
    f"{V3}/prepaid-card",
    f"{V3}/cards/transfer-in",
    f"{V3}/cards/transfer-out",
    f"{V3}/business/transfer/external",
]
HTTP_TIMEOUT = 1.0
TIMEOUT_DELAY_MS = 1500


# ---- the emulator on a loopback port --------------------------------------------------------------


class _HideInjectedDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SandboxConnectionDropped))


@asynccontextmanager
async def loopback_emulator() -> AsyncIterator[tuple[str, Starlette]]:
    app = create_sandbox_app()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    logging.getLogger("uvicorn.error").addFilter(_HideInjectedDrops())
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}", app
        finally:
            server.should_exit = True
            with anyio.CancelScope(shield=True), anyio.move_on_after(15):
                await stopped.wait()


# ---- agents ---------------------------------------------------------------------------------------


@dataclass
class Limits:
    per_transaction: Decimal
    daily: Decimal
    max_active_cards: int

    def toml(self, agent: str) -> str:
        return (
            f'[agents."{agent}"]\nper_transaction = "{self.per_transaction}"\ndaily = "{self.daily}"\n'
            f"max_active_cards = {self.max_active_cards}\n"
        )


@dataclass
class Agent:
    name: str
    limits: Limits
    rng: random.Random
    client: Client | None = None
    runtime: Runtime | None = None
    cards: list[str] = field(default_factory=list)
    #: (tool, request_id) -> arguments of requests answered in_progress (retried with the same arguments).
    pending: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    request_ids: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: int = 0
    crashes: list[str] = field(default_factory=list)
    seq: int = 0

    def new_id(self, prefix: str) -> str:
        self.seq += 1
        rid = f"{self.name}-{prefix}-{self.seq}"
        self.request_ids.append(rid)
        return rid

    def amount(self, high: Decimal) -> str:
        cents = self.rng.randint(1, int(high * 100))
        return f"{Decimal(cents) / 100:.2f}"


async def call(agent: Agent, tool: str, args: dict[str, Any]) -> tuple[str, Any]:
    assert agent.client is not None
    result = await agent.client.call_tool(tool, args)
    if result.is_error:
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        if not text.startswith("[") or "]" not in text:
            agent.crashes.append(f"{tool}: {text[:300]}")
            agent.outcomes[f"{tool}:crash"] += 1
            return "crash", text
        code = text[1 : text.index("]")]
        agent.outcomes[f"{tool}:refused:{code}"] += 1
        return "refused", code
    body = result.structured_content or {}
    status = str(body.get("status", "ok"))
    agent.outcomes[f"{tool}:{status}"] += 1
    return status, body


async def money(agent: Agent, tool: str, args: dict[str, Any]) -> tuple[str, Any]:
    outcome, body = await call(agent, tool, args)
    key = (tool, args["request_id"])
    if outcome == "in_progress":
        agent.pending[key] = args
    else:
        agent.pending.pop(key, None)
    if outcome == "completed":
        if tool == "issue_card" and body.get("card"):
            card_id = body["card"]["card_id"]
            if card_id not in agent.cards:
                agent.cards.append(card_id)
        if tool == "close_card" and args["card_id"] in agent.cards:
            agent.cards.remove(args["card_id"])
    return outcome, body


def inject_fault(agent: Agent, state: SandboxState) -> None:
    rng = agent.rng
    paths = list(MONEY_PATHS)
    if agent.cards:
        paths.append(f"{V3}/cards/{rng.choice(agent.cards)}/card-summary")
    path = rng.choice(paths)
    kind = rng.choice(["error", "error", "rate_limit", "timeout", "reset", "fail_after_commit", "latency"])
    options: dict[str, Any] = {"times": rng.randint(1, 5)}
    if kind == "error":
        options["status"] = rng.choice([500, 502, 503])
    elif kind == "rate_limit":
        options["retry_after"] = 0
    elif kind == "timeout":
        options["delay_ms"] = TIMEOUT_DELAY_MS
    elif kind == "fail_after_commit":
        options["status"] = rng.choice([0, 500])
    elif kind == "latency":
        options["delay_ms"] = rng.randint(50, 400)
    state.add_fault(path, kind, **options)
    agent.faults += 1


async def one_call(agent: Agent) -> None:
    rng = agent.rng
    lim = agent.limits
    card = rng.choice(agent.cards) if agent.cards else "no-such-card"
    roll = rng.random()
    if agent.pending and roll < 0.10:
        (tool, _), args = rng.choice(list(agent.pending.items()))
        await money(agent, tool, args)
    elif roll < 0.20 and len(agent.cards) < lim.max_active_cards + 1:
        await money(agent, "issue_card", {"amount": agent.amount(lim.per_transaction), "request_id": agent.new_id("i")})
    elif roll < 0.38:
        args = {"card_id": card, "amount": agent.amount(lim.per_transaction + 5), "request_id": agent.new_id("t")}
        await money(agent, "top_up_card", args)
    elif roll < 0.50:
        args = {
            "payee": "sandbox-payee",
            "amount": agent.amount(lim.per_transaction + 5),
            "request_id": agent.new_id("p"),
        }
        await money(agent, "create_transfer", args)
    elif roll < 0.58:
        await money(
            agent,
            "withdraw_from_card",
            {"card_id": card, "amount": agent.amount(Decimal(8)), "request_id": agent.new_id("w")},
        )
    elif roll < 0.61 and agent.cards:
        await money(agent, "close_card", {"card_id": card, "request_id": agent.new_id("c")})
    elif roll < 0.64 and agent.request_ids:
        await call(agent, "get_request_status", {"request_id": rng.choice(agent.request_ids)})
    else:
        tool, args = rng.choice(
            [
                ("get_card", {"card_id": card}),
                ("list_cards", {}),
                ("get_card_transactions", {"card_id": card, "limit": 10}),
                ("get_balance", {}),
                ("get_spend_status", {}),
                ("list_payees", {}),
                ("simulate_purchase", {"card_id": card, "amount": agent.amount(Decimal(3)), "merchant": "Soak Shop"}),
                ("freeze_card", {"card_id": card}),
                ("unfreeze_card", {"card_id": card}),
            ]
        )
        await call(agent, tool, args)


async def run_agent(agent: Agent, state: SandboxState, calls: int, fault_rate: float) -> None:
    for _ in range(calls):
        if agent.rng.random() < fault_rate:
            inject_fault(agent, state)
        await one_call(agent)


async def settle(agent: Agent) -> int:
    """Retry what is in progress until it finishes; returns how many retries it took."""
    retries = 0
    for _ in range(5):
        if not agent.pending:
            break
        for (tool, _), args in list(agent.pending.items()):
            retries += 1
            await money(agent, tool, args)
        if agent.pending:
            await anyio.sleep(0.5)
    return retries


# ---- the run --------------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    names = [f"agent-{i:02d}" for i in range(args.agents)]
    agents = [
        Agent(
            name,
            Limits(
                per_transaction=Decimal(rng.choice([5, 10, 15, 20, 30])),
                daily=Decimal(rng.choice([40, 60, 100, 150])),
                max_active_cards=rng.choice([1, 2, 3]),
            ),
            random.Random(rng.random()),
        )
        for name in names
    ]
    policy = work / "policy.toml"
    policy.write_text(
        '[defaults]\nmonthly = "none"\ntransfer_payees = ["sandbox-payee"]\n\n'
        + "\n".join(a.limits.toml(a.name) for a in agents),
        encoding="utf-8",
    )
    database_url = f"sqlite:///{work / 'ledger.sqlite3'}"
    started = time.monotonic()
    async with loopback_emulator() as (base_url, app), AsyncExitStack() as stack:
        state: SandboxState = app.state.sandbox
        for agent in agents:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                base_url=base_url,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                agent_id=agent.name,
                state_dir=work / "state",
                database_url=database_url,
                policy_file=policy,
                rate_limit_per_minute=1_000_000,
                http_timeout_seconds=HTTP_TIMEOUT,
                reconcile_interval_seconds=0,
            )
            server = build_server(settings, upstream_transport=None)
            agent.runtime = server.interlace_runtime  # type: ignore[attr-defined]
            agent.client = await stack.enter_async_context(Client(server))
        async with anyio.create_task_group() as tg:
            for agent in agents:
                tg.start_soon(run_agent, agent, state, args.calls, args.fault_rate)
        calls_done = time.monotonic()
        state.clear_faults()
        # Let requests still sleeping in a timeout fault land first: settling by lookup while one is in
        # flight is the race the recovery grace period (120 s by default) exists for.
        await anyio.sleep(TIMEOUT_DELAY_MS / 1000 + 1)
        retries = 0
        for agent in agents:
            retries += await settle(agent)
        rt = agents[0].runtime
        assert rt is not None
        recovered = await recover(rt, grace=0)
        report = await reconcile(rt)
        snapshot = state.snapshot()
        ledger = rt.ledger
        windows = {a.name: ledger.window_status(rt.scope, a.name, rt.policies.for_agent(a.name)) for a in agents}
        committed = ledger.committed_total(rt.scope)
        reserved = ledger.reserved_total(rt.scope)
        still_open = len(ledger.open_requests(rt.scope))
        owner: dict[str, str] = {}
        issue_records = 0
        for record in ledger.completed_requests(rt.scope):
            issue_records += record.key.tool == "issue_card"
            for key in record.keys.values():
                owner[key] = record.key.agent
    elapsed = time.monotonic() - started

    audit = AuditLog.from_url(database_url)
    try:
        verified = audit.verify()
        # Every request's keys are in its audit "decision" record, released ones too: attribute each
        # upstream movement to its agent, whatever the ledger says.
        sender: dict[str, str] = {}
        for record in audit.tail(audit.count()):
            if record.event == "decision" and record.upstream_ids:
                for key in record.upstream_ids.get("idempotency_keys", "").split(","):
                    sender[key] = record.agent
    finally:
        audit.close()
    upstream_by_agent: dict[str, Decimal] = {}
    for move in snapshot["movements"]:
        if move["kind"] in ("transfer_in", "transfer_external") and move["clientTransactionId"] in sender:
            who = sender[move["clientTransactionId"]]
            upstream_by_agent[who] = upstream_by_agent.get(who, Decimal(0)) + Decimal(move["amount"])

    limits = {a.name: a.limits for a in agents}
    problems: list[str] = []
    problems += [
        f"{name}: {w.window} spent {w.spent} + reserved {w.reserved} > {w.limit}"
        for name, status in windows.items()
        for w in status
        if w.limit is not None and w.spent + w.reserved > w.limit
    ]
    problems += [
        f"{name}: {total} of top-ups and transfers left upstream today, above its daily limit {limits[name].daily}"
        for name, total in upstream_by_agent.items()
        if total > limits[name].daily
    ]
    moved: Counter[str] = Counter()
    for move in snapshot["movements"]:
        key = move["clientTransactionId"]
        if key:
            moved[key] += 1
        if move["kind"] in ("transfer_in", "transfer_external") and key in owner:
            if Decimal(move["amount"]) > limits[owner[key]].per_transaction:
                problems.append(f"{owner[key]}: a {move['amount']} movement tops per_transaction")
    problems += [f"clientTransactionId {k} moved {n} times" for k, n in moved.items() if n > 1]
    # Movements the ledger has no completed request for (what a released-but-applied request leaves).
    unknown = [
        f"{m['kind']} {m['amount']} ({m['clientTransactionId']})"
        for m in snapshot["movements"]
        if m["kind"] in ("transfer_in", "transfer_out", "transfer_external") and m["clientTransactionId"] not in owner
    ]
    issued = sum(1 for m in snapshot["movements"] if m["kind"] == "card_issue")
    if issued != issue_records:
        unknown.append(f"{issued} cards issued upstream, {issue_records} issue_card requests completed in the ledger")
    problems += [f"not in the ledger: {u}" for u in unknown]
    upstream = Decimal(snapshot["loaded_total"]) + Decimal(snapshot["transfers_total"])
    if committed != upstream:
        problems.append(f"ledger committed {committed} != upstream {upstream}")
    if reserved != 0 or still_open:
        problems.append(f"after settling: {reserved} reserved, {still_open} requests in progress")
    problems += [f"reconcile: {d.kind} {d.detail}" for d in report.differences]
    if not verified.ok:
        problems.append(f"audit verify: {verified.reason} (record {verified.first_bad_seq})")
    crashes = [c for a in agents for c in a.crashes]
    problems += [f"SDK error without a code: {c}" for c in crashes]

    outcomes: Counter[str] = Counter()
    for agent in agents:
        outcomes.update(agent.outcomes)
    return {
        "agents": args.agents,
        "calls_per_agent": args.calls,
        "calls": sum(outcomes.values()),
        "fault_rate": args.fault_rate,
        "faults_injected": sum(a.faults for a in agents),
        "seed": args.seed,
        "elapsed_seconds": round(elapsed, 1),
        "calls_seconds": round(calls_done - started, 1),
        "settle_retries": retries,
        "recovered": {"committed": len(recovered.committed), "released": len(recovered.released)},
        "completed_money_calls": sum(n for k, n in outcomes.items() if k.endswith(":completed")),
        "in_progress_answers": sum(n for k, n in outcomes.items() if k.endswith(":in_progress")),
        "refusals": dict(sorted(_refusals(outcomes).items())),
        "upstream": {
            "loaded": snapshot["loaded_total"],
            "transfers": snapshot["transfers_total"],
            "unloaded": snapshot["unloaded_total"],
            "movements": len(snapshot["movements"]),
        },
        "ledger": {"committed": str(committed), "reserved": str(reserved), "open_requests": still_open},
        "reconcile_matched": report.matched,
        "audit_records": verified.records,
        "audit_ok": verified.ok,
        "per_agent": {
            a.name: {
                "per_transaction": str(a.limits.per_transaction),
                "daily": str(a.limits.daily),
                "spent_today": str(next(w.spent for w in windows[a.name] if w.window == "day")),
                "upstream_top_ups_and_transfers": str(upstream_by_agent.get(a.name, Decimal(0))),
            }
            for a in agents
        },
        "problems": problems,
        "ok": not problems,
    }


def _refusals(outcomes: Counter[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for key, n in outcomes.items():
        if ":refused:" in key:
            counts[key.rsplit(":", 1)[1]] += n
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--agents", type=int, default=10)
    p.add_argument("--calls", type=int, default=200, help="random tool calls per agent")
    p.add_argument("--fault-rate", type=float, default=0.1, help="share of calls preceded by an injected fault")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    p.add_argument("--dir", type=Path, default=None, help="keep the ledger and audit log here (default: a temp dir)")
    args = p.parse_args(argv)
    if not (1 <= args.agents <= 100 and 1 <= args.calls <= 10_000 and 0 <= args.fault_rate <= 1):
        p.error("--agents 1-100, --calls 1-10000, --fault-rate 0-1")
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    # A tool that crashes is counted and listed in the summary; its traceback would only drown it.
    logging.getLogger("mcp.server").setLevel(logging.CRITICAL)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        summary = anyio.run(soak, args, args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix="interlace-soak-") as tmp:
            summary = anyio.run(soak, args, Path(tmp))
    print(
        f"soak: {summary['agents']} agents x {summary['calls_per_agent']} calls = {summary['calls']} tool calls"
        f" in {summary['calls_seconds']} s ({summary['faults_injected']} faults injected, seed {summary['seed']})"
    )
    print(
        f"  money calls completed {summary['completed_money_calls']}, in_progress answers"
        f" {summary['in_progress_answers']}, settle retries {summary['settle_retries']},"
        f" settled by lookup {summary['recovered']}"
    )
    print(f"  refusals: {json.dumps(summary['refusals'], sort_keys=True)}")
    up, led = summary["upstream"], summary["ledger"]
    print(
        f"  upstream: loaded {up['loaded']} + transfers {up['transfers']} (unloaded {up['unloaded']},"
        f" {up['movements']} movements); ledger committed {led['committed']}, reserved {led['reserved']},"
        f" open {led['open_requests']}"
    )
    print(
        f"  reconcile matched {summary['reconcile_matched']};"
        f" audit records {summary['audit_records']} ok={summary['audit_ok']}"
    )
    for problem in summary["problems"]:
        print(f"  PROBLEM: {problem}")
    print("  invariants: " + ("all hold" if summary["ok"] else f"{len(summary['problems'])} violated"))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

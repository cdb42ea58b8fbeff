"""Dashboard access control, in-process: sessions, operator vs agent tokens, CSRF, cookie flags, headers."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from dashboard.support import (
    AGENT_TOKEN,
    OPERATOR_TOKEN,
    browser_like,
    csrf_of,
    in_process,
    make_app,
    runtime_of,
    sign_in,
)
from interlace_mcp.dashboard import Dashboard
from interlace_mcp.dashboard._app import MAX_LOGIN_FAILURES, MAX_TRACKED_ADDRESSES, LoginThrottle
from interlace_mcp.policy import Approval, RequestKey, token_digest
from interlace_mcp.sandbox import create_sandbox_app

pytestmark = pytest.mark.anyio


def pending_approval(app: Starlette, request_id: str = "big-1", summary: str = "shopper: issue a card") -> Approval:
    """A pending approval for `shopper`, made through the ledger as a money tool would."""
    rt = runtime_of(app)
    begun = rt.ledger.begin(
        RequestKey(rt.scope, "shopper", "issue_card", request_id),
        args_hash="h-" + request_id,
        policy=rt.policies.for_agent("shopper"),
        spend=Decimal("30.00"),
        currency="USD",
        needs_approval=True,
        approval_summary=summary,
    )
    assert begun.record.approval is not None
    return begun.record.approval


def dashboard_of(app: Starlette) -> Dashboard:
    dash = app.state.interlace_dashboard
    assert isinstance(dash, Dashboard)
    return dash


def concrete(path: str, approval_id: str) -> str:
    values = {
        "approval_id": approval_id, "decision": "approve", "agent": "shopper", "switch": "freeze", "token": "t" * 43,
    }  # fmt: skip
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


async def test_every_dashboard_route_is_refused_without_a_session(tmp_path: Path) -> None:
    """Pages redirect to the login, fragments are 401, POSTs 403 -- with no cookie, a forged cookie, or an
    agent's bearer token; and nothing changes."""
    app = make_app(tmp_path, create_sandbox_app())
    routes = dashboard_of(app).routes()
    assert len(routes) >= 9
    async with in_process(app) as http:
        approval = pending_approval(app)
        checked = 0
        for headers, cookies in (
            ({}, {}),
            ({}, {"interlace_dashboard": "forged-session-id"}),
            ({"Authorization": f"Bearer {AGENT_TOKEN}"}, {}),
            ({"Authorization": f"Bearer {OPERATOR_TOKEN}"}, {}),  # operator tokens only work on the login form
        ):
            http.cookies.clear()
            for name, value in cookies.items():
                http.cookies.set(name, value, domain="127.0.0.1", path="/dashboard")
            for path, methods, _ in routes:
                if path == "/dashboard/login":
                    continue
                url = concrete(path, approval.id)
                for method in methods:
                    if method == "GET":
                        response = await http.get(url, headers=headers)
                        if path.endswith(("/live", "/pending")):
                            assert response.status_code == 401, url
                        elif path == "/dashboard/approvals/{approval_id}":  # the page a client opens: back after
                            assert response.status_code == 303, url
                            assert (
                                response.headers["location"]
                                == f"/dashboard/login?next=%2Fdashboard%2Fapprovals%2F{approval.id}"
                            )
                        else:
                            assert response.status_code == 303, url
                            # a reveal link's page sends the operator back to it after sign-in
                            back = f"?next={url}" if path.startswith("/dashboard/reveal/") else ""
                            assert response.headers["location"] == "/dashboard/login" + back
                    else:
                        response = await http.post(url, headers=headers, data={"csrf": "x", "reason": "r"})
                        assert response.status_code == 403, url
                    checked += 1
        rt = runtime_of(app)
        still = rt.ledger.get_approval(approval.id)
    assert checked == 4 * sum(len(methods) for path, methods, _ in routes if path != "/dashboard/login")
    assert still is not None and still.status == "pending"
    assert rt.ledger.agent_frozen("shopper") is None


async def test_an_agent_token_does_not_open_the_dashboard(tmp_path: Path) -> None:
    """The agent's bearer token at the login form: 401, no cookie, still signed out."""
    app = make_app(tmp_path, create_sandbox_app())
    async with in_process(app) as http:
        response = await http.post("/dashboard/login", data={"token": AGENT_TOKEN})
        after = await http.get("/dashboard")
        empty = await http.post("/dashboard/login", data={"token": ""})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "not a valid operator token" in response.text
    assert AGENT_TOKEN not in response.text
    assert after.status_code == 303 and after.headers["location"] == "/dashboard/login"
    assert empty.status_code == 401


async def test_post_without_or_with_a_wrong_csrf_token_is_refused(tmp_path: Path) -> None:
    """A valid session is not enough: no token, a wrong one, another session's one, or a cross-site origin -> 403
    and nothing decided; the right token decides, audited with the operator's name."""
    app = make_app(tmp_path, create_sandbox_app())
    rt = runtime_of(app)
    async with in_process(app) as other:
        other_csrf = await sign_in(other)
        async with browser_like(app) as http:
            csrf = await sign_in(http)
            assert csrf != other_csrf
            approval = pending_approval(app)
            url = f"/dashboard/approvals/{approval.id}/approve"
            refused = [
                await http.post(url, data={"reason": "ok"}),
                await http.post(url, data={"csrf": "", "reason": "ok"}),
                await http.post(url, data={"csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}),
                await http.post(url, data={"csrf": other_csrf}),
                await http.post(url, json={"csrf": csrf}),  # not a form
                await http.post(url, data={"csrf": csrf}, headers={"Origin": "https://evil.example"}),
                await http.post(url, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}),
                await http.post("/dashboard/agents/shopper/freeze", data={"reason": "x"}),
            ]
            assert [r.status_code for r in refused] == [403] * len(refused)
            assert rt.ledger.get_approval(approval.id).status == "pending"  # type: ignore[union-attr]
            assert rt.ledger.agent_frozen("shopper") is None
            ok = await http.post(
                url, data={"csrf": csrf, "reason": "fine"}, headers={"Origin": "http://127.0.0.1:8765"}
            )
            page = await http.get(ok.headers["location"])
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard/approvals"
    decided = rt.ledger.get_approval(approval.id)
    assert decided is not None and decided.status == "approved" and decided.decided_by == "alice"
    assert f"{approval.id} approved" in page.text
    records = [r for r in rt.audit.tail(50) if r.event == "approval_decision"]
    assert [(r.actor, r.decision, r.detail) for r in records] == [("alice", "approved", "fine")]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_session_cookie_flags(tmp_path: Path, scheme: str) -> None:
    """HttpOnly, SameSite=Strict, Path=/dashboard; Secure exactly when served over https; a fresh random id."""
    app = make_app(tmp_path, create_sandbox_app())
    async with in_process(app, base_url=f"{scheme}://127.0.0.1:8765") as http:
        first = await http.post("/dashboard/login", data={"token": OPERATOR_TOKEN})
        second = await http.post("/dashboard/login", data={"token": OPERATOR_TOKEN})
    cookie = first.headers["set-cookie"]
    attrs = [a.strip().lower() for a in cookie.split(";")]
    name, _, value = cookie.split(";")[0].partition("=")
    assert name == "interlace_dashboard" and len(value) >= 40
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/dashboard" in attrs
    assert ("secure" in attrs) == (scheme == "https")
    assert second.headers["set-cookie"].split(";")[0] != cookie.split(";")[0]  # a new id at every sign-in
    assert OPERATOR_TOKEN not in cookie


async def test_security_headers_and_host_check(tmp_path: Path) -> None:
    """Strict CSP with a per-response nonce, no framing, no caching; a foreign Host gets 421 (DNS rebinding)."""
    app = make_app(tmp_path, create_sandbox_app())
    async with in_process(app) as http:
        login = await http.get("/dashboard/login")
        await sign_in(http)
        one = await http.get("/dashboard")
        two = await http.get("/dashboard")
        foreign = await http.get("/dashboard/login", headers={"Host": "evil.example:8765"})
        foreign_post = await http.post(
            "/dashboard/login", data={"token": OPERATOR_TOKEN}, headers={"Host": "evil.example"}
        )
    for response in (login, one):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce and f'nonce="{nonce.group(1)}"' in response.text
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
    assert one.headers["content-security-policy"] != two.headers["content-security-policy"]
    assert '<html lang="en">' in one.text
    assert foreign.status_code == 421 and foreign_post.status_code == 421
    assert "set-cookie" not in foreign_post.headers


async def test_revoking_the_operator_ends_the_session_and_logout_works(tmp_path: Path) -> None:
    """`operators revoke` takes effect on the next request; sign-out forgets the session server-side."""
    app = make_app(tmp_path, create_sandbox_app())
    rt = runtime_of(app)
    async with in_process(app) as http:
        csrf = await sign_in(http)
        assert rt.ledger.revoke_operator_tokens("alice") == 1
        revoked = await http.get("/dashboard")
        rt.ledger.add_operator_token("alice", token_digest(OPERATOR_TOKEN + "-2"))
        csrf = await sign_in(http, OPERATOR_TOKEN + "-2")
        cookie = http.cookies.get("interlace_dashboard", path="/dashboard")
        out = await http.post("/dashboard/logout", data={"csrf": csrf})
        http.cookies.set("interlace_dashboard", cookie or "", domain="127.0.0.1", path="/dashboard")
        replayed = await http.get("/dashboard")  # the old cookie, replayed after sign-out
    assert revoked.status_code == 303
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert replayed.status_code == 303


async def test_idle_sessions_expire(tmp_path: Path) -> None:
    """31 idle minutes end a session."""
    app = make_app(tmp_path, create_sandbox_app())
    dash = dashboard_of(app)
    async with in_process(app) as http:
        await sign_in(http)
        later = time.time() + 31 * 60
        dash._clock = lambda: later
        expired = await http.get("/dashboard")
    assert expired.status_code == 303


async def test_a_wrong_token_flood_is_throttled_but_never_locks_out_the_right_token(tmp_path: Path) -> None:
    """50 wrong tokens from one address: the first 10 get 401, the rest 429 with Retry-After; the right token
    from that same address signs in at once, and does not reopen the flood; other addresses are unaffected;
    after the window the address may try again."""
    app = make_app(tmp_path, create_sandbox_app())
    dash = dashboard_of(app)
    now = time.time()
    dash._clock = lambda: now
    async with in_process(app) as http:
        flood = [(await http.post("/dashboard/login", data={"token": f"itl_op_wrong-{i}"})) for i in range(50)]
        right = await http.post("/dashboard/login", data={"token": OPERATOR_TOKEN})
        page = await http.get("/dashboard")
        after = await http.post("/dashboard/login", data={"token": "itl_op_wrong-again"})
        async with (
            browser_like(app) as same_ip,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=("192.0.2.7", 4000)), base_url="http://127.0.0.1:8765"
            ) as other_ip,
        ):
            elsewhere = await other_ip.post("/dashboard/login", data={"token": "itl_op_wrong"})
            second_operator = await same_ip.post("/dashboard/login", data={"token": OPERATOR_TOKEN})
            now += 301
            later = await same_ip.post("/dashboard/login", data={"token": "itl_op_wrong-later"})
    codes = [r.status_code for r in flood]
    assert codes == [401] * 10 + [429] * 40
    assert all(int(r.headers["retry-after"]) > 0 for r in flood[10:])
    assert "Too many" in flood[-1].text and "set-cookie" not in flood[-1].headers
    assert right.status_code == 303 and "set-cookie" in right.headers and page.status_code == 200
    assert after.status_code == 429
    assert elsewhere.status_code == 401
    assert second_operator.status_code == 303
    assert later.status_code == 401


def test_the_failed_sign_in_table_is_bounded() -> None:
    """A flood from 100,000 addresses keeps at most MAX_TRACKED_ADDRESSES entries; the newest stay throttled."""
    throttle = LoginThrottle()
    for i in range(100_000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", now=float(i))
    assert len(throttle) <= MAX_TRACKED_ADDRESSES
    newest = "10.1.134.159"  # address 99,999
    for _ in range(MAX_LOGIN_FAILURES):
        throttle.failed(newest, now=100_000.0)
    assert throttle.retry_after(newest, now=100_000.0) > 0
    assert throttle.retry_after("203.0.113.1", now=100_000.0) == 0


async def test_csrf_field_is_on_every_form(tmp_path: Path) -> None:
    """Every POST form the pages render carries the session's CSRF token."""
    app = make_app(tmp_path, create_sandbox_app())
    async with in_process(app) as http:
        csrf = await sign_in(http)
        pending_approval(app)
        pages = [(await http.get(p)).text for p in ("/dashboard", "/dashboard/approvals", "/dashboard/agents/shopper")]
    forms = [f for page in pages for f in re.findall(r"<form method=\"post\".*?</form>", page, re.S)]
    assert len(forms) >= 5
    assert all(csrf_of(form) == csrf for form in forms)


async def test_agent_names_outside_the_rule_get_no_links_and_a_clear_400(tmp_path: Path) -> None:
    """A legacy agent named `Legacy.Bot` (or `.`) is listed without a link; its page and kill switch answer 400
    naming the rule and change nothing; a valid agent's page still works."""
    app = make_app(tmp_path, create_sandbox_app())
    rt = runtime_of(app)
    rt.ledger.add_token("Legacy.Bot", token_digest("tok-legacy-0123456789"))
    rt.ledger.add_token(".", token_digest("tok-dot-0123456789"))
    async with in_process(app) as http:
        csrf = await sign_in(http)
        overview = await http.get("/dashboard")
        pages = [await http.get(url) for url in ("/dashboard/agents/Legacy.Bot", "/dashboard/agents/%2E")]
        switches = [
            await http.post(url, data={"csrf": csrf})
            for url in ("/dashboard/agents/Legacy.Bot/freeze", "/dashboard/agents/%2E/freeze")
        ]
        good = await http.get("/dashboard/agents/shopper")
    assert overview.status_code == 200 and "Legacy.Bot" in overview.text
    assert 'href="/dashboard/agents/Legacy.Bot"' not in overview.text
    assert 'href="/dashboard/agents/."' not in overview.text
    assert "^[a-z0-9][a-z0-9_-]{0,62}$" in overview.text
    for response in (*pages, *switches):
        assert response.status_code == 400, (response.request.url, response.status_code)
        assert "^[a-z0-9][a-z0-9_-]{0,62}$" in response.text
    assert rt.ledger.agent_frozen("Legacy.Bot") is None and rt.ledger.agent_frozen(".") is None
    assert good.status_code == 200

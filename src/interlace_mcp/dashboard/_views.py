"""Server-rendered HTML for the operator dashboard: plain Python string building, ``html.escape`` on every value.

No template engine, no CDN, no front-end build. The stylesheet and the small live-refresh script are
inlined with a per-response CSP nonce (the dashboard's Content-Security-Policy allows nothing else).
Charts and bars are inline SVG drawn here, with presentation attributes only (no ``style=``).
Everything that reaches the page from Interlace, the ledger or the audit log goes through :func:`esc`
(and upstream text through ``clean_text`` before that); callers never pass raw HTML in.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote

from interlace_mcp.audit import AuditRecord
from interlace_mcp.money import format_amount, format_exact_amount
from interlace_mcp.operations import (
    UNTRUSTED_NOTE,
    CardResult,
    TransactionInfo,
    agent_text,
    clean_text,
    day_text,
    what_text,
)
from interlace_mcp.policy import AGENT_NAME_RULE, Approval, DayFigures, WindowStatus, epoch_to_iso, is_agent_name

__all__ = [
    "AgentRow",
    "BalancesView",
    "CardView",
    "agent_page",
    "approval_page",
    "approvals_fragment",
    "approvals_page",
    "balances_panel",
    "error_page",
    "esc",
    "login_page",
    "overview_page",
    "reveal_confirm_page",
    "reveal_page",
]

BASE = "/dashboard"


def esc(value: object) -> str:
    """HTML-escape anything (quotes too: safe in text and in double-quoted attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _url(*parts: str) -> str:
    return BASE + "".join("/" + quote(p, safe="") for p in parts)


def agent_link(name: str) -> str:
    """The agent's name linking to its page; a name outside the rule (minted before it) gets no URL at all."""
    if is_agent_name(name):
        return f'<a href="{_url("agents", name)}">{esc(name)}</a>'
    return f'{esc(name)} <span class="muted">(no page: {esc(AGENT_NAME_RULE)}; this agent cannot sign in)</span>'


def _money(value: Decimal | None) -> str:
    return "none" if value is None else format_amount(value)


# ---- view data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentRow:
    """One agent on the overview."""

    name: str
    currency: str
    windows: list[WindowStatus]
    frozen: tuple[str | None, str | None] | None
    cards: int
    pending: int


@dataclass(frozen=True)
class BalancesView:
    """What the account holds, read from Interlace for the overview (read-only)."""

    #: The Infinity account's available balance and currency; None when it could not be read.
    infinity: tuple[Decimal, str] | None
    #: The CryptoConnect wallet fund_account draws on, and its (currency, available, frozen) rows.
    wallet_id: str | None = None
    wallets: Sequence[tuple[str, Decimal, Decimal]] = ()
    #: What could not be read, in words.
    problems: Sequence[str] = ()


@dataclass(frozen=True)
class CardView:
    """One card on the agent page: the masked card object and its recent transactions (or why not)."""

    card_id: str
    card: CardResult | None
    transactions: list[TransactionInfo] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Chrome:
    """What every logged-in page needs: who, the CSRF token, the CSP nonce, the pending count, flashes."""

    operator: str
    csrf: str
    nonce: str
    pending: int
    now: float
    sandbox: bool
    flashes: Sequence[tuple[str, str]] = ()


# ---- the page shell ------------------------------------------------------------------------------

CSS = """
:root{--fg:#1b1f24;--muted:#4a5561;--bg:#fff;--panel:#f3f5f7;--line:#c5ccd3;--accent:#0a4fa8;
--spent:#0a4fa8;--reserved:#a04f00;--track:#e3e7eb;--ok:#17602a;--danger:#a4161a;--head:#0d1b2a}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
:focus-visible{outline:3px solid var(--fg);outline-offset:2px}
.skip{position:absolute;left:-10000px;top:0}
.skip:focus{left:8px;top:8px;background:#fff;color:var(--fg);padding:8px 12px;z-index:10}
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);
white-space:nowrap;border:0}
header{background:var(--head);color:#fff}
header .bar{max-width:1240px;margin:0 auto;padding:10px 24px;display:flex;flex-wrap:wrap;gap:8px 24px;
align-items:center}
header .brand{font-weight:700;font-size:1.1rem;margin-right:auto}
header a{color:#fff}
header :focus-visible{outline-color:#fff}
header nav ul{list-style:none;display:flex;gap:18px;margin:0;padding:0}
header nav a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}
header form{margin:0}
header .who{color:#dce3ea}
.sandbox{background:#ffe08a;color:#3b2a00;font-weight:600;padding:2px 8px;border-radius:4px}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:1.6rem;margin:.4em 0 .6em}
h2{font-size:1.25rem;margin:1.6em 0 .5em}
h3{font-size:1.05rem;margin:1.2em 0 .4em}
table{border-collapse:collapse;width:100%;margin:.4em 0 1em}
caption{text-align:left;color:var(--muted);padding:0 0 4px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--panel);font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:var(--muted)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
button{font:inherit;padding:6px 14px;border-radius:4px;border:2px solid transparent;cursor:pointer}
.btn-primary{background:var(--accent);color:#fff}
.btn-approve{background:var(--ok);color:#fff}
.btn-deny,.btn-danger{background:var(--danger);color:#fff}
.btn-plain{background:#fff;color:var(--fg);border-color:var(--line)}
header .btn-plain{background:transparent;color:#fff;border-color:#9fb0c2}
button:hover{filter:brightness(1.12)}
input[type=text],input[type=password]{font:inherit;padding:6px 8px;border:1px solid #6b7580;border-radius:4px;
max-width:100%}
label{font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.85rem;font-weight:700}
.badge-frozen{background:var(--danger);color:#fff}
.badge-active{background:var(--ok);color:#fff}
.badge-count{background:#ffe08a;color:#3b2a00;margin-left:4px}
.flash{padding:10px 14px;border-radius:4px;margin:8px 0 12px;border-left:6px solid}
.flash-ok{background:#e8f4ea;border-color:var(--ok)}
.flash-error{background:#fbeaea;border-color:var(--danger)}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:12px 16px;margin:12px 0}
.windows{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:6px 20px}
.window .label{display:flex;justify-content:space-between;gap:8px;font-size:.9rem}
.window svg{display:block;width:100%;height:14px}
.window .figures{font-size:.85rem;text-align:left}
[hidden]{display:none!important}
.legend{font-size:.85rem;color:var(--muted)}
.swatch{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin:0 4px 0 10px;border-radius:2px}
.sw-spent{background:var(--spent)}
.sw-reserved{background:var(--reserved)}
.chart svg{width:100%;height:auto;max-width:900px;display:block}
.decide{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.decide input{width:14em}
.login{max-width:460px;margin:8vh auto;padding:24px 28px;border:1px solid var(--line);border-radius:8px}
.login input{width:100%;margin:6px 0 14px}
.kill{border-color:var(--danger);background:#fff5f5}
.kill form{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-end}
.kill .field{display:flex;flex-direction:column}
.untrusted q{background:#fff8e1;padding:0 4px;border:1px dashed #a04f00}
"""

JS = """
(function () {
  "use strict";
  var body = document.body;
  var skew = Number(body.getAttribute("data-server-now")) * 1000 - Date.now();
  function rel(seconds) {
    var s = Math.abs(Math.round(seconds));
    var text = s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min" : Math.floor(s / 3600) + " h "
      + Math.floor((s % 3600) / 60) + " min";
    return seconds >= 0 ? "in " + text : text + " ago";
  }
  function ages() {
    var now = (Date.now() + skew) / 1000;
    document.querySelectorAll("time[data-epoch]").forEach(function (el) {
      el.textContent = rel(Number(el.getAttribute("data-epoch")) - now);
    });
  }
  function setCount(n) {
    var badge = document.getElementById("pending-count");
    if (badge) { badge.textContent = String(n); badge.hidden = n === 0; }
  }
  var live = document.getElementById("approvals-live");
  async function poll() {
    try {
      if (live) {
        var r = await fetch(live.getAttribute("data-src"), {credentials: "same-origin", cache: "no-store"});
        if (r.status === 401) { window.location.reload(); return; }
        if (r.ok) {
          var holder = document.createElement("div");
          holder.innerHTML = await r.text();
          var fresh = holder.firstElementChild;
          var current = live.firstElementChild;
          if (fresh && (!current || fresh.getAttribute("data-signature") !== current.getAttribute("data-signature"))) {
            var typed = {};
            live.querySelectorAll("input[data-keep]").forEach(function (el) { typed[el.id] = el.value; });
            var focused = document.activeElement && document.activeElement.id;
            live.replaceChildren(fresh);
            Object.keys(typed).forEach(function (id) {
              var el = document.getElementById(id);
              if (el) { el.value = typed[id]; }
            });
            if (focused) { var f = document.getElementById(focused); if (f) { f.focus(); } }
            var status = document.getElementById("approvals-status");
            if (status) { status.textContent = fresh.getAttribute("data-announce") || ""; }
          }
          setCount(Number(fresh ? fresh.getAttribute("data-count") : 0));
        }
      } else {
        var j = await fetch(body.getAttribute("data-pending-src"), {credentials: "same-origin", cache: "no-store"});
        if (j.status === 401) { return; }
        if (j.ok) { setCount((await j.json()).count); }
      }
    } catch (e) { /* the next poll retries */ }
    ages();
  }
  ages();
  window.setInterval(poll, 2000);
})();
"""


def _flashes(flashes: Iterable[tuple[str, str]]) -> str:
    out = []
    for kind, text in flashes:
        cls = "flash-error" if kind == "error" else "flash-ok"
        role = "alert" if kind == "error" else "status"
        out.append(f'<div class="flash {cls}" role="{role}">{esc(text)}</div>')
    return "".join(out)


def _shell(title: str, body: str, *, nonce: str, chrome: Chrome | None, active: str = "") -> str:
    nav = ""
    if chrome is not None:

        def link(key: str, href: str, text: str, extra: str = "") -> str:
            current = ' aria-current="page"' if key == active else ""
            return f'<li><a href="{esc(href)}"{current}>{text}{extra}</a></li>'

        count = (
            f' <span class="badge badge-count" id="pending-count"{" hidden" if chrome.pending == 0 else ""}>'
            f'{chrome.pending}</span><span class="sr-only"> pending</span>'
        )
        sandbox = '<span class="sandbox">sandbox: no real money</span>' if chrome.sandbox else ""
        nav = f"""<header><div class="bar">
<span class="brand">interlace-mcp operator</span>{sandbox}
<nav aria-label="Main"><ul>{link("overview", BASE, "Overview")}
{link("approvals", _url("approvals"), "Approvals", count)}</ul></nav>
<span class="who">Signed in as <strong>{esc(chrome.operator)}</strong></span>
<form method="post" action="{_url("logout")}"><input type="hidden" name="csrf" value="{esc(chrome.csrf)}">
<button type="submit" class="btn-plain">Sign out</button></form>
</div></header>"""
    flashes = _flashes(chrome.flashes) if chrome else ""
    now = chrome.now if chrome else 0.0
    script = f'<script nonce="{esc(nonce)}">{JS}</script>' if chrome is not None else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{esc(title)} · interlace-mcp</title>
<style nonce="{esc(nonce)}">{CSS}</style>
</head>
<body data-server-now="{now:.3f}" data-pending-src="{_url("api", "pending")}">
<a class="skip" href="#main">Skip to content</a>
{nav}
<main id="main" tabindex="-1">
{flashes}
{body}
</main>
{script}
</body>
</html>
"""


def _time(epoch: float, now: float) -> str:
    """A <time> the live script keeps current ("3 min ago", "in 12 min")."""
    delta = epoch - now
    s = abs(round(delta))
    text = f"{s} s" if s < 60 else f"{s // 60} min" if s < 3600 else f"{s // 3600} h {(s % 3600) // 60} min"
    rel = f"in {text}" if delta >= 0 else f"{text} ago"
    return f'<time datetime="{esc(epoch_to_iso(epoch))}" data-epoch="{epoch:.3f}">{esc(rel)}</time>'


# ---- login / errors ------------------------------------------------------------------------------


def login_page(*, nonce: str, error: str | None = None, next_path: str | None = None) -> str:
    problem = f'<div class="flash flash-error" role="alert" id="login-error">{esc(error)}</div>' if error else ""
    then = f'<input type="hidden" name="next" value="{esc(next_path)}">' if next_path else ""
    described = ' aria-describedby="login-error"' if error else ""
    after = f'<input type="hidden" name="next" value="{esc(next_path)}">' if next_path else ""
    body = f"""<div class="login">
<h1>Operator sign-in</h1>
<p class="muted">Paste an operator token from <code>interlace-mcp operators token NAME</code>.
Agent tokens do not open the dashboard.</p>
{problem}
<form method="post" action="{_url("login")}">{after}
<label for="token">Operator token</label>
<input type="password" id="token" name="token" autocomplete="off" required spellcheck="false"{described}>
{then}<button type="submit" class="btn-primary">Sign in</button>
</form>
</div>"""
    return _shell("Sign in", body, nonce=nonce, chrome=None)


def error_page(title: str, message: str, *, nonce: str, chrome: Chrome | None) -> str:
    body = f'<h1>{esc(title)}</h1><p>{esc(message)}</p><p><a href="{BASE}">Back to the overview</a></p>'
    return _shell(title, body, nonce=nonce, chrome=chrome)


# ---- overview ------------------------------------------------------------------------------------


def _window_bar(w: WindowStatus, currency: str) -> str:
    """One window as a bar: spent then reserved, against the limit (unlimited: an outline, no fill)."""
    spent, reserved = w.spent, w.reserved
    limited = w.limit is not None and w.limit > 0
    left = f" · {format_amount(w.remaining)} left" if w.remaining is not None else ""
    cap = f"limit {format_amount(w.limit)}" if w.limit is not None else "no limit"
    label = f"{w.window}: {format_amount(spent)} spent, {format_amount(reserved)} reserved, {cap} {currency}" + (
        f", {format_amount(w.remaining)} remaining" if w.remaining is not None else ""
    )
    if limited:
        assert w.limit is not None
        scale = max(w.limit, spent + reserved)
        s_w, r_w = float(100 * spent / scale), float(100 * reserved / scale)
        shapes = (
            '<rect x="0" y="0" width="100" height="10" fill="#e3e7eb"/>'
            f'<rect x="0" y="0" width="{s_w:.2f}" height="10" fill="#0a4fa8"/>'
            f'<rect x="{s_w:.2f}" y="0" width="{r_w:.2f}" height="10" fill="#a04f00"/>'
        )
    else:
        shapes = (
            '<rect x="0.5" y="0.5" width="99" height="9" fill="none" stroke="#6b7580" stroke-width="1"'
            ' stroke-dasharray="2 2" vector-effect="non-scaling-stroke"/>'
        )
    return f"""<div class="window">
<div class="label"><span>{esc(w.window)}</span><span class="muted">{esc(cap)}</span></div>
<svg viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label="{esc(label)}">
<title>{esc(label)}</title>{shapes}</svg>
<div class="figures num">{esc(format_amount(spent))} spent · {esc(format_amount(reserved))} reserved{esc(left)}</div>
</div>"""


def _when(value: str | None) -> str:
    """Interlace times are epoch milliseconds as strings: show them as UTC ISO; anything else as text."""
    if value and value.isdigit() and 10 <= len(value) <= 14:
        epoch = int(value) / (1000 if len(value) >= 12 else 1)
        return epoch_to_iso(epoch) or value
    return clean_text(value, 40) or "-"


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    base = 10.0**exp
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * base:
            return step * base
    return 10 * base


def spend_chart(days: Sequence[tuple[str, Decimal]], currency: str) -> str:
    """Daily committed spend as an SVG bar chart, with the same numbers as a table for screen readers."""
    width, height = 760, 230
    left, right, top, bottom = 64, 12, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [float(v) for _, v in days]
    top_value = _nice_ceiling(max(values, default=0.0))
    n = max(len(days), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.72, 1.0)
    total = sum((v for _, v in days), Decimal("0"))
    busiest = max(days, key=lambda d: d[1], default=None)
    desc = f"{len(days)} days, total {format_amount(total)} {currency}" + (
        f"; highest {format_amount(busiest[1])} on {busiest[0]}" if busiest and busiest[1] > 0 else ""
    )
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title chart-desc">',
        f'<title id="chart-title">Committed spend per day, last {len(days)} days ({esc(currency)})</title>',
        f'<desc id="chart-desc">{esc(desc)}</desc>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c5ccd3" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#4a5561">'
            f"{top_value * frac:,.2f}</text>"
        )
    for i, (day, amount) in enumerate(days):
        h = plot_h * (float(amount) / top_value) if top_value else 0.0
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.0):.1f}" fill="#0a4fa8">'
            f"<title>{esc(day)}: {esc(format_amount(amount))} {esc(currency)}</title></rect>"
        )
        if i % 5 == 0 or i == len(days) - 1:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="12"'
                f' fill="#4a5561">{esc(day[5:])}</text>'
            )
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#1b1f24"/>')
    parts.append("</svg>")
    rows = "".join(
        f'<tr><td>{esc(day)}</td><td class="num">{esc(format_amount(amount))}</td></tr>'
        for day, amount in days
        if amount > 0
    )
    table = (
        f"<details><summary>Daily spend as a table</summary><table><caption>Days with committed spend"
        f' ({esc(currency)})</caption><thead><tr><th scope="col">Day</th><th scope="col" class="num">Spent</th>'
        f"</tr></thead><tbody>{rows or '<tr><td colspan=2>No committed spend in this period.</td></tr>'}"
        f"</tbody></table></details>"
    )
    return f'<div class="chart">{"".join(parts)}{table}</div>'


def _frozen_badge(frozen: tuple[str | None, str | None] | None) -> str:
    if frozen is None:
        return '<span class="badge badge-active">active</span>'
    reason, who = frozen
    note = " ".join(x for x in (f"by {who}" if who else "", f"({reason})" if reason else "") if x)
    return f'<span class="badge badge-frozen">FROZEN</span> <span class="muted">{esc(note)}</span>'


def balances_panel(view: BalancesView) -> str:
    """The Infinity balance and the funding wallet's stablecoins, as a table (amounts exact)."""
    rows = []
    if view.infinity is not None:
        amount, currency = view.infinity
        rows.append(
            f'<tr><th scope="row">Infinity account</th><td>{esc(currency)}</td>'
            f'<td class="num">{esc(format_amount(amount))}</td><td class="num">-</td></tr>'
        )
    for currency, available, frozen in view.wallets:
        rows.append(
            f'<tr><th scope="row">CryptoConnect wallet <span class="muted">{esc(view.wallet_id)}</span></th>'
            f'<td>{esc(currency)}</td><td class="num">{esc(format_exact_amount(available))}</td>'
            f'<td class="num">{esc(format_exact_amount(frozen))}</td></tr>'
        )
    table = (
        "<table><caption>Read from Interlace when this page loaded. Stablecoins move into the Infinity account"
        " 1:1 with fund_account (agents, within fund_daily) or interlace-mcp fund (operators).</caption>"
        '<thead><tr><th scope="col">Balance</th><th scope="col">Currency</th><th scope="col" class="num">'
        'Available</th><th scope="col" class="num">Frozen</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else ""
    )
    notes = "".join(f'<p class="muted">{esc(problem)}</p>' for problem in view.problems)
    return f'<section class="panel" aria-label="Balances">{table}{notes}</section>'


def overview_page(
    rows: Sequence[AgentRow],
    chart: Sequence[tuple[str, Decimal]],
    currency: str,
    *,
    chrome: Chrome,
    balances: BalancesView | None = None,
) -> str:
    if rows:
        cards = []
        for row in rows:
            windows = "".join(_window_bar(w, row.currency) for w in row.windows if w.window != "transaction")
            per_txn = next((w.limit for w in row.windows if w.window == "transaction"), None)
            pending = (
                f' · <a href="{_url("approvals")}">{row.pending} pending approval{"s" if row.pending != 1 else ""}</a>'
                if row.pending
                else ""
            )
            cards.append(
                f"""<section class="panel" aria-labelledby="agent-{esc(row.name)}">
<h3 id="agent-{esc(row.name)}">{agent_link(row.name)}
{_frozen_badge(row.frozen)}</h3>
<p class="muted">{row.cards} active card{"s" if row.cards != 1 else ""} · per transaction
{esc(_money(per_txn))} {esc(row.currency)}{pending}</p>
<div class="windows">{windows}</div>
</section>"""
            )
        agents = "".join(cards)
    else:
        agents = "<p>No agents yet: an agent appears here once it has a token, a policy section or any activity.</p>"
    legend = (
        '<p class="legend"><span class="swatch sw-spent"></span>spent (committed)'
        '<span class="swatch sw-reserved"></span>reserved (pending approval or in flight)</p>'
    )
    funds = f"<h2>Balances</h2>\n{balances_panel(balances)}\n" if balances is not None else ""
    body = f"""<h1>Overview</h1>
{funds}<h2>Agents</h2>
{legend}
{agents}
<h2>Daily spend</h2>
{spend_chart(chart, currency)}"""
    return _shell("Overview", body, nonce=chrome.nonce, chrome=chrome, active="overview")


# ---- approvals -----------------------------------------------------------------------------------


def approvals_fragment(pending: Sequence[Approval], *, csrf: str, now: float, scope: str) -> str:
    """The pending-approvals table: served inside the page and alone for the live refresh."""
    signature = ",".join(a.id for a in pending)
    count = len(pending)
    announce = f"{count} pending approval{'s' if count != 1 else ''}"
    if not pending:
        inner = '<p id="no-pending">No pending approvals.</p>'
    else:
        rows = []
        for a in pending:
            other = ' <span class="muted">(another upstream: ' + esc(a.scope) + ")</span>" if a.scope != scope else ""
            rows.append(
                f"""<tr id="approval-{esc(a.id)}">
<td>{agent_link(a.agent)}</td>
<td><code>{esc(a.tool)}</code></td>
<td class="num">{esc(format_amount(a.amount))} {esc(a.currency)}</td>
<td>{esc(what_text({**a.details, "tool": a.tool}) if a.details else clean_text(a.summary, 200))}{other}
{_untrusted(a)}<br><a class="mono" href="{_url("approvals", a.id)}">{esc(a.id)}</a>
<span class="muted mono">· request {esc(a.request_id)}</span></td>
<td>{_time(a.created_at, now)}</td>
<td>{_time(a.expires_at, now)}</td>
<td>{_decision_form(a, csrf, back="list")}</td>
</tr>"""
            )
        inner = f"""<table>
<caption>Pending requests, oldest first. Approve lets the agent's retry of the same request_id run once.</caption>
<thead><tr><th scope="col">Agent</th><th scope="col">Tool</th><th scope="col" class="num">Amount</th>
<th scope="col">Summary</th><th scope="col">Requested</th><th scope="col">Expires</th><th scope="col">Decision</th>
</tr></thead><tbody>{"".join(rows)}</tbody></table>"""
    return f'<div data-signature="{esc(signature)}" data-count="{count}" data-announce="{esc(announce)}">{inner}</div>'


def _untrusted(a: Approval) -> str:
    """The agent's memo or label: quoted, escaped, and marked as the agent's words (never ours)."""
    found = agent_text(a.details)
    if found is None:
        return ""
    field, text = found
    return (
        f'<br><span class="untrusted">{esc(field)} <span class="muted">({esc(UNTRUSTED_NOTE)})</span>:'
        f" <q>{esc(text)}</q></span>"
    )


def _decision_form(a: Approval, csrf: str, *, back: str) -> str:
    what = f"{a.agent}, {format_amount(a.amount)} {a.currency}"
    rid = f"reason-{a.id}"
    return f"""<form method="post" class="decide" action="{_url("approvals", a.id, "approve")}">
<input type="hidden" name="csrf" value="{esc(csrf)}"><input type="hidden" name="back" value="{esc(back)}">
<label class="sr-only" for="{esc(rid)}">Reason for {esc(a.id)} (optional)</label>
<input type="text" id="{esc(rid)}" name="reason" maxlength="200" placeholder="reason (optional)" data-keep>
<button type="submit" class="btn-approve" aria-label="Approve {esc(what)}">Approve</button>
<button type="submit" class="btn-deny" formaction="{_url("approvals", a.id, "deny")}"
 aria-label="Deny {esc(what)}">Deny</button>
</form>"""


def approval_page(approval: Approval, day: DayFigures, *, other_upstream: bool, chrome: Chrome) -> str:
    """One approval, with everything a human needs to decide on it -- the page a client opens for its user."""
    a = approval
    details = a.details
    rows: list[tuple[str, str]] = [
        ("Agent", agent_link(a.agent)),
        ("Tool", f"<code>{esc(a.tool)}</code>"),
        ("Amount", f'<span class="num">{esc(format_amount(a.amount))} {esc(a.currency)}</span>'),
        ("What", esc(what_text({**details, "tool": a.tool}) if details else clean_text(a.summary, 200))),
    ]
    if details.get("payee"):
        account = details.get("payee_account") or {}
        bound = (
            f'<br><span class="muted mono">account {esc(account.get("account_id"))} · balance'
            f" {esc(account.get('balance_id'))}</span>"
            if isinstance(account, dict) and account
            else ""
        )
        rows.append(("Payee", f"{esc(clean_text(details['payee'], 64))}{bound}"))
    if details.get("card_id"):
        last = details.get("card_last_four")
        card = f"•••• {esc(last)}" if last else "last four unknown"
        rows.append(("Card", f'{card} <span class="muted mono">{esc(details["card_id"])}</span>'))
    found = agent_text(details)
    if found is not None:
        rows.append(
            (
                f"Agent's {esc(found[0])}",
                f'<span class="untrusted"><q>{esc(found[1])}</q> <span class="muted">({esc(UNTRUSTED_NOTE)})</span>'
                "</span>",
            )
        )
    if a.reasons:
        rows.append(("Why a human decides", "<br>".join(esc(r) for r in a.reasons)))
    included = a.status == "pending" or a.status == "approved"
    rows.append(("The agent's day now", esc(day_text(day, a.amount, included=included))))
    rows.append(
        ("Request", f'<span class="mono">{esc(a.request_id)}</span> · approval <span class="mono">{esc(a.id)}</span>')
    )
    if other_upstream:
        rows.append(("Upstream", f'<span class="muted">another upstream: {esc(a.scope)}</span>'))
    rows.append(("Requested", _time(a.created_at, chrome.now)))
    rows.append(("Expires", f"{_time(a.expires_at, chrome.now)} ({esc(a.expires_at_iso)})"))
    table = "".join(f'<tr><th scope="row">{label}</th><td>{value}</td></tr>' for label, value in rows)
    if a.status == "pending":
        decision = f"""<h2>Decision</h2>
<p>Approve lets this request run once (the agent's waiting call, or its retry of the same request_id). Deny releases
the reservation. Either is recorded with your name.</p>
{_decision_form(a, chrome.csrf, back="page")}"""
    else:
        who = f" by {esc(a.decided_by)}" if a.decided_by else ""
        why = f": {esc(clean_text(a.reason, 200))}" if a.reason else ""
        decision = f'<h2>Decision</h2><p class="panel">This request is <strong>{esc(a.status)}</strong>{who}{why}.</p>'
    body = f"""<p><a href="{_url("approvals")}">← Approvals</a></p>
<h1>Approval {esc(a.id)}</h1>
<table><tbody>{table}</tbody></table>
{decision}"""
    return _shell(f"Approval {a.id}", body, nonce=chrome.nonce, chrome=chrome, active="approvals")


def approvals_page(fragment: str, recent: Sequence[Approval], *, chrome: Chrome) -> str:
    rows = "".join(
        f"""<tr><td>{agent_link(a.agent)}</td><td><code>{esc(a.tool)}</code></td>
<td class="num">{esc(format_amount(a.amount))} {esc(a.currency)}</td><td>{esc(a.status)}</td>
<td>{esc(a.decided_by or "-")}</td><td>{esc(clean_text(a.reason, 200) or "")}</td>
<td>{esc(epoch_to_iso(a.decided_at) or epoch_to_iso(a.expires_at))}</td></tr>"""
        for a in recent
    )
    history = (
        f"""<table><caption>The last {len(recent)} decided or expired requests, newest first.</caption>
<thead><tr><th scope="col">Agent</th><th scope="col">Tool</th><th scope="col" class="num">Amount</th>
<th scope="col">Status</th><th scope="col">By</th><th scope="col">Reason</th><th scope="col">When (UTC)</th></tr>
</thead><tbody>{rows}</tbody></table>"""
        if recent
        else "<p>Nothing decided yet.</p>"
    )
    body = f"""<h1>Approvals</h1>
<p>Requests above an agent's <code>approval_above</code> wait here. This list refreshes by itself.</p>
<p id="approvals-status" class="sr-only" role="status" aria-live="polite"></p>
<h2>Pending</h2>
<div id="approvals-live" data-src="{_url("approvals", "live")}">{fragment}</div>
<h2>Recent decisions</h2>
{history}"""
    return _shell("Approvals", body, nonce=chrome.nonce, chrome=chrome, active="approvals")


# ---- agent detail --------------------------------------------------------------------------------


def _card_section(view: CardView) -> str:
    card = view.card
    if card is None:
        title = f"Card {esc(view.card_id)}"
        facts = f'<p class="flash flash-error">Not available from Interlace: {esc(view.error or "unknown")}</p>'
    else:
        last = f"•••• {card.last_four}" if card.last_four else "•••• ----"
        title = f"Card {esc(last)}" + (f" · {esc(card.label)}" if card.label else "")
        limits = ", ".join(f"{lim.window} {lim.amount} {lim.currency}" for lim in card.limits) or "none"
        frozen_by = f" (frozen by {esc(card.frozen_by)})" if card.frozen_by else ""
        facts = f"""<table><tbody>
<tr><th scope="row">Status</th><td>{esc(card.card_status)}{frozen_by}</td></tr>
<tr><th scope="row">Balance</th><td>{esc(card.balance or "-")} {esc(card.currency)}</td></tr>
<tr><th scope="row">Card limits</th><td>{esc(limits)}</td></tr>
<tr><th scope="row">Card id</th><td class="mono">{esc(card.card_id)}</td></tr>
</tbody></table>"""
        if view.error:
            facts += f'<p class="flash flash-error">{esc(view.error)}</p>'
    if view.transactions:
        rows = "".join(
            f"""<tr><td class="mono">{esc(_when(t.created_at))}</td><td>{esc(t.type)}</td><td>{esc(t.status)}</td>
<td class="num">{esc(t.amount)} {esc(t.currency)}</td><td>{esc(t.merchant or "")}</td>
<td>{esc("approved" if t.approved else "declined")}</td><td>{esc(_decline(t))}</td></tr>"""
            for t in view.transactions
        )
        txns = f"""<table><caption>Recent transactions (from Interlace), newest first</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Status</th>
<th scope="col" class="num">Amount</th><th scope="col">Merchant</th><th scope="col">Result</th>
<th scope="col">Decline reason</th></tr></thead><tbody>{rows}</tbody></table>"""
    elif card is not None:
        txns = "<p>No transactions.</p>"
    else:
        txns = ""
    return f'<section class="panel"><h3>{title}</h3>{facts}{txns}</section>'


def _audit_table(records: Sequence[AuditRecord]) -> str:
    if not records:
        return "<p>No audit records for this agent.</p>"
    rows = []
    for r in reversed(records):
        money = f"{r.amount} {r.currency or ''}" if r.amount else ""
        rows.append(
            f"""<tr><td class="num">{r.seq}</td><td class="mono">{esc(r.ts)}</td><td>{esc(r.tool)}</td>
<td>{esc(r.event)}</td><td>{esc(r.decision or "")}</td><td class="num">{esc(money)}</td>
<td class="mono">{esc(r.request_id or "")}</td><td>{esc(clean_text(r.outcome, 160) or "")}</td>
<td>{esc(r.actor or "")}</td><td>{esc(clean_text(r.detail, 200) or "")}</td></tr>"""
        )
    return f"""<table><caption>The last {len(records)} audit records of this agent, newest first</caption>
<thead><tr><th scope="col" class="num">Seq</th><th scope="col">Time (UTC)</th><th scope="col">Tool</th>
<th scope="col">Event</th><th scope="col">Decision</th><th scope="col" class="num">Amount</th>
<th scope="col">Request</th><th scope="col">Outcome</th><th scope="col">Actor</th><th scope="col">Detail</th></tr>
</thead><tbody>{"".join(rows)}</tbody></table>"""


def agent_page(
    row: AgentRow,
    cards: Sequence[CardView],
    audit: Sequence[AuditRecord],
    pending: Sequence[Approval],
    *,
    chrome: Chrome,
) -> str:
    windows = "".join(_window_bar(w, row.currency) for w in row.windows if w.window != "transaction")
    freeze = row.frozen is None
    verb = "freeze" if freeze else "unfreeze"
    explain = (
        "Freezes every card of this agent at Interlace and refuses its money tools at once. The agent cannot undo it."
        if freeze
        else "Unfreezes the cards the kill switch froze and lets the agent's money tools run again."
    )
    button = (
        f'<button type="submit" class="btn-danger">Freeze agent {esc(row.name)}</button>'
        if freeze
        else f'<button type="submit" class="btn-primary">Unfreeze agent {esc(row.name)}</button>'
    )
    kill = f"""<section class="panel kill" aria-labelledby="kill-title">
<h2 id="kill-title">Kill switch</h2>
<p>State: {_frozen_badge(row.frozen)}</p>
<p>{esc(explain)}</p>
<form method="post" action="{_url("agents", row.name, verb)}">
<input type="hidden" name="csrf" value="{esc(chrome.csrf)}">
<div class="field"><label for="kill-reason">Reason (optional, audited)</label>
<input type="text" id="kill-reason" name="reason" maxlength="200"></div>
{button}
</form></section>"""
    pending_note = (
        f'<p><a href="{_url("approvals")}">{len(pending)} pending approval{"s" if len(pending) != 1 else ""}</a>'
        " for this agent.</p>"
        if pending
        else ""
    )
    card_sections = "".join(_card_section(c) for c in cards) or "<p>No active cards.</p>"
    body = f"""<p><a href="{BASE}">← Overview</a></p>
<h1>Agent {esc(row.name)}</h1>
{kill}
<h2>Spend ({esc(row.currency)})</h2>
<div class="windows">{windows}</div>
{pending_note}
<h2>Cards</h2>
<p class="muted">Card numbers are never shown here: last four digits only.</p>
{card_sections}
<h2>Audit log</h2>
{_audit_table(audit)}"""
    return _shell(f"Agent {row.name}", body, nonce=chrome.nonce, chrome=chrome)


# ---- reveal to a human (policy reveal = "human") -------------------------------------------------------


def reveal_confirm_page(
    *, agent: str, card: CardResult | None, card_id: str, expires_at: float, action: str, chrome: Chrome
) -> str:
    """The step before the number: who asked, which card, and one button (the link works once)."""
    last = f"ending {card.last_four}" if card is not None and card.last_four else esc(card_id)
    label = f" ({esc(card.label)})" if card is not None and card.label else ""
    body = f"""<h1>Show a card to you</h1>
<p>Agent <strong>{esc(agent)}</strong> asks to show you card {esc(last)}{label}: its number, security code
and expiry, for you to type into a checkout. The agent never sees them.</p>
<p>This link works once and expires {_time(expires_at, chrome.now)}. The details are fetched from Interlace now,
shown on the next page only, and audited with your name.</p>
<form method="post" action="{esc(action)}">
<input type="hidden" name="csrf" value="{esc(chrome.csrf)}">
<button type="submit" class="btn-primary">Show the card details</button>
</form>"""
    return _shell("Show a card", body, nonce=chrome.nonce, chrome=chrome)


def _groups(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def reveal_page(*, agent: str, last_four: str | None, number: str, cvv: str, expiry: str | None, chrome: Chrome) -> str:
    """The card's details, once (the response is never cached; the link is used up)."""
    body = f"""<h1>Card details</h1>
<p>For agent <strong>{esc(agent)}</strong>'s card ending {esc(last_four or "----")}. Shown once: this link is used
up, and reloading will not show them again. Close this page when you are done.</p>
<table><tbody>
<tr><th scope="row">Card number</th><td class="mono">{esc(_groups(number))}</td></tr>
<tr><th scope="row">Security code (CVV)</th><td class="mono">{esc(cvv)}</td></tr>
<tr><th scope="row">Expiry</th><td class="mono">{esc(expiry or "-")}</td></tr>
</tbody></table>
<p><a href="{BASE}">Back to the overview</a></p>"""
    return _shell("Card details", body, nonce=chrome.nonce, chrome=chrome)


def _decline(t: TransactionInfo) -> str:
    """The decline reason, and Interlace's own words when the server has none for its code."""
    reason = t.decline_reason or ""
    return f"{reason} (Interlace: {t.issuer_text})" if t.issuer_text else reason

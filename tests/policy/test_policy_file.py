"""The policy file (DESIGN section 7): strict parsing, inheritance, built-in defaults, tool globs."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import write_policy
from interlace_mcp.policy import (
    SANDBOX_PAYEE,
    Payee,
    Policy,
    PolicyError,
    builtin_policy,
    load_policy,
    parse_policy,
)

TOKEN_SHA = hashlib.sha256(b"shopper-token").hexdigest()

DESIGN_EXAMPLE = f"""
[defaults]                 # every agent, unless its own section overrides
currency = "USD"
per_transaction = "50.00"  # largest single issue/top-up/transfer ("none" = no limit)
daily = "100.00"           # calendar windows in `timezone`; weeks start Monday
weekly = "none"
monthly = "400.00"
lifetime = "none"
max_active_cards = 2       # cards not deleted (pending and frozen count)
confirm_above = "10.00"
approval_above = "25.00"
reveal = false
transfer_payees = []
tools = ["*"]
timezone = "UTC"
card_spend_limit = {{ window = "DAY", amount = "50.00" }}

[payees.acme]
account_id = "3f0c2d4e-8a1b-4c5d-9e6f-0a1b2c3d4e5f"
balance_id = "9a1d7c3b-2e4f-4a6b-8c0d-1e2f3a4b5c6d"
currency = "USD"

[agents.shopper]
daily = "200.00"
transfer_payees = ["acme"]
cardholder_id = "1963920000000000"
token_sha256 = "{TOKEN_SHA}"
"""

ACME = '[payees.acme]\naccount_id = "acct-1"\nbalance_id = "bal-1"\n'


def load(tmp_path: Path, text: str) -> Policy:
    return load_policy(write_policy(tmp_path / "policy.toml", text))


def refusal(tmp_path: Path, text: str) -> PolicyError:
    path = write_policy(tmp_path / "policy.toml", text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    err = info.value
    assert err.source == str(path)
    assert str(path) in str(err) and err.key in str(err) and err.reason in str(err)
    return err


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('dayly = "100.00"\n', "dayly"),
        ('[defaults]\ndayly = "100.00"\n', "defaults.dayly"),
        ('[agents.bot]\ndaily = "1.00"\nmonthy = "5.00"\n', "agents.bot.monthy"),
        (ACME + 'iban = "DE00"\n', "payees.acme.iban"),
        ('[defaults]\ntoken_sha256 = "' + TOKEN_SHA + '"\n', "defaults.token_sha256"),
        (
            '[defaults]\ncard_spend_limit = { window = "DAY", amount = "5.00", extra = 1 }\n',
            "defaults.card_spend_limit.extra",
        ),
    ],
)
def test_unknown_key_stops_with_file_key_and_reason(tmp_path: Path, text: str, key: str) -> None:
    """An unknown key anywhere (top level, defaults, agent, payee, nested table) names file, key and reason."""
    err = refusal(tmp_path, text)
    assert err.key == key
    assert "unknown key" in err.reason


@pytest.mark.parametrize(
    "bad", ['"1e3"', '"-1"', '"10.123"', "10.5", "true", '"10."', '" "', '"NaN"', '"1,000.00"', "[]"]
)
@pytest.mark.parametrize("key", ["per_transaction", "daily", "weekly", "monthly", "lifetime", "approval_above"])
def test_bad_amounts_are_rejected(tmp_path: Path, bad: str, key: str) -> None:
    """Exponents, signs, a third decimal, TOML floats and booleans are not amounts."""
    err = refusal(tmp_path, f"[agents.bot]\n{key} = {bad}\n")
    assert err.key == f"agents.bot.{key}"


def test_float_amount_reason_says_to_use_a_string(tmp_path: Path) -> None:
    """A TOML float is refused with advice to quote the amount."""
    err = refusal(tmp_path, "[defaults]\ndaily = 10.5\n")
    assert err.key == "defaults.daily" and "string" in err.reason


def test_good_amounts_are_exact_decimals(tmp_path: Path) -> None:
    """Valid amount strings become two-place Decimals; "none" means no limit."""
    policy = parse_policy({"defaults": {"daily": "7", "monthly": "12.5", "weekly": "none", "lifetime": "0.01"}})
    agent = policy.for_agent("x")
    assert agent.daily == Decimal("7.00") and str(agent.daily) == "7.00"
    assert agent.monthly == Decimal("12.50")
    assert agent.weekly is None
    assert agent.lifetime == Decimal("0.01")


@pytest.mark.parametrize("tz", ['"Mars/Olympus"', '""', "5", '"../../etc/passwd"'])
def test_bad_timezone_is_rejected(tmp_path: Path, tz: str) -> None:
    """An unknown IANA timezone stops startup naming the key."""
    err = refusal(tmp_path, f"[defaults]\ntimezone = {tz}\n")
    assert err.key == "defaults.timezone"


def test_good_timezone_is_kept(tmp_path: Path) -> None:
    """A real IANA name is accepted and used for the agent's windows."""
    policy = load(tmp_path, '[defaults]\ntimezone = "Asia/Tokyo"\n[agents.ny]\ntimezone = "America/New_York"\n')
    assert policy.for_agent("other").timezone == "Asia/Tokyo"
    assert policy.for_agent("ny").timezone == "America/New_York"


def test_transfer_payee_must_be_defined(tmp_path: Path) -> None:
    """An agent's transfer_payees naming a payee without a [payees.X] table is rejected."""
    err = refusal(tmp_path, ACME + '[agents.bot]\ntransfer_payees = ["acme", "evil"]\n')
    assert err.key == "agents.bot.transfer_payees" and "evil" in err.reason


def test_defaults_transfer_payee_must_be_defined(tmp_path: Path) -> None:
    """An unknown payee in [defaults] is rejected too."""
    err = refusal(tmp_path, '[defaults]\ntransfer_payees = ["ghost"]\n')
    assert err.key == "defaults.transfer_payees"


def test_payee_requires_its_ids(tmp_path: Path) -> None:
    """A payee without balance_id is rejected naming the missing key."""
    err = refusal(tmp_path, '[payees.acme]\naccount_id = "acct-1"\n')
    assert err.key == "payees.acme.balance_id"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[defaults]\nconfirm_above = "25.00"\napproval_above = "25.00"\n', "defaults.confirm_above"),
        ('[defaults]\nconfirm_above = "30.00"\napproval_above = "25.00"\n', "defaults.confirm_above"),
        ('[defaults]\napproval_above = "25.00"\n[agents.bot]\nconfirm_above = "40.00"\n', "agents.bot.confirm_above"),
    ],
)
def test_confirm_above_must_be_below_approval_above(tmp_path: Path, text: str, key: str) -> None:
    """confirm_above >= approval_above (directly or through inheritance) is rejected."""
    err = refusal(tmp_path, text)
    assert err.key == key and "approval_above" in err.reason


def test_confirmation_band_below_approval_is_accepted(tmp_path: Path) -> None:
    """confirm_above < approval_above is the documented middle band."""
    agent = load(tmp_path, '[defaults]\nconfirm_above = "10.00"\napproval_above = "25.00"\n').for_agent("a")
    assert (agent.confirm_above, agent.approval_above) == (Decimal("10.00"), Decimal("25.00"))


def test_agents_inherit_defaults_and_builtins(tmp_path: Path) -> None:
    """A key missing from an agent comes from [defaults]; one missing from [defaults] from the built-in policy."""
    policy = load(
        tmp_path,
        ACME + '[defaults]\ndaily = "80.00"\ntransfer_payees = ["acme"]\ntimezone = "Europe/Paris"\n'
        '[agents.bot]\nmonthly = "900.00"\n[agents.tight]\ndaily = "5.00"\ntransfer_payees = []\n',
    )
    bot = policy.for_agent("bot")
    assert bot.agent == "bot"
    assert bot.daily == Decimal("80.00")  # from [defaults]
    assert bot.monthly == Decimal("900.00")  # its own
    assert bot.transfer_payees == ("acme",) and bot.timezone == "Europe/Paris"
    # not in [defaults]: built-in values
    assert bot.per_transaction == Decimal("20.00")
    assert bot.weekly is None and bot.lifetime is None
    assert bot.max_active_cards == 2 and bot.reveal is False and bot.tools == ("*",)
    assert bot.confirm_above is None and bot.approval_above is None and bot.currency == "USD"
    tight = policy.for_agent("tight")
    assert tight.daily == Decimal("5.00") and tight.transfer_payees == ()
    stranger = policy.for_agent("stranger")
    assert stranger.agent == "stranger" and stranger.daily == Decimal("80.00") and stranger.monthly == Decimal("200.00")


def test_empty_file_gives_builtin_defaults(tmp_path: Path) -> None:
    """An empty policy file means the documented built-in limits for every agent."""
    agent = load(tmp_path, "").for_agent("anyone")
    assert agent.per_transaction == Decimal("20.00")
    assert agent.daily == Decimal("50.00")
    assert agent.monthly == Decimal("200.00")
    assert agent.weekly is None and agent.lifetime is None
    assert agent.max_active_cards == 2 and agent.reveal is False
    assert agent.tools == ("*",) and agent.transfer_payees == () and agent.timezone == "UTC"


def test_none_means_no_limit(tmp_path: Path) -> None:
    """ "none" clears a limit inherited from [defaults] or the built-in policy."""
    policy = load(
        tmp_path,
        '[defaults]\nweekly = "300.00"\n[agents.free]\nper_transaction = "none"\ndaily = "none"\n'
        'weekly = "none"\nmonthly = "none"\nmax_active_cards = "none"\n',
    )
    free = policy.for_agent("free")
    assert free.per_transaction is None and free.daily is None and free.weekly is None and free.monthly is None
    assert free.max_active_cards is None
    assert free.window_limits() == {"day": None, "week": None, "month": None, "lifetime": None}
    assert policy.for_agent("other").weekly == Decimal("300.00")


def test_tools_globs(tmp_path: Path) -> None:
    """`tools` takes exact names and glob patterns; anything else is not allowed."""
    agent = load(tmp_path, '[agents.reader]\ntools = ["get_*", "list_cards"]\n').for_agent("reader")
    assert agent.allows_tool("get_card") and agent.allows_tool("get_balance") and agent.allows_tool("list_cards")
    assert not agent.allows_tool("issue_card")
    assert not agent.allows_tool("list_payees")
    assert not agent.allows_tool("xget_card")
    everyone = load(tmp_path, "").for_agent("x")
    assert everyone.allows_tool("create_transfer")
    nobody = load(tmp_path, "[agents.n]\ntools = []\n").for_agent("n")
    assert not nobody.allows_tool("get_card")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[defaults]\nmax_active_cards = -1\n", "defaults.max_active_cards"),
        ('[defaults]\nmax_active_cards = "2"\n', "defaults.max_active_cards"),
        ('[defaults]\nreveal = "yes"\n', "defaults.reveal"),
        ('[defaults]\ntools = "get_card"\n', "defaults.tools"),
        ('[defaults]\ncurrency = "EUR"\n', "defaults.currency"),
        ('[agents.bot]\ntoken_sha256 = "abc"\n', "agents.bot.token_sha256"),
        ('[defaults]\ncard_spend_limit = { window = "HOUR", amount = "5.00" }\n', "defaults.card_spend_limit.window"),
        ('[agents."bad name"]\ndaily = "1.00"\n', "agents.bad name"),
        ("defaults = 3\n", "defaults"),
    ],
)
def test_other_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    """Wrong types and values for the non-amount keys stop with the key named."""
    assert refusal(tmp_path, text).key == key


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A syntax error is a PolicyError for the file, not a raw TOML exception."""
    err = refusal(tmp_path, "[defaults\n")
    assert err.key == "(file)" and "TOML" in err.reason


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    """A missing policy file is reported as such."""
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.toml")
    assert info.value.key == "(file)"


def test_builtin_policy_on_the_sandbox_reveals_and_allows_the_sandbox_payee() -> None:
    """On the embedded emulator reveal is on and sandbox-payee is allowed; otherwise neither."""
    payee = Payee(name=SANDBOX_PAYEE, account_id="acct-sbx", balance_id="bal-sbx")
    sandbox = builtin_policy(sandbox=True, sandbox_payee=payee)
    agent = sandbox.for_agent("default")
    assert agent.reveal is True
    assert agent.transfer_payees == (SANDBOX_PAYEE,)
    assert sandbox.payees[SANDBOX_PAYEE] == payee
    assert agent.daily == Decimal("50.00") and agent.per_transaction == Decimal("20.00")
    real = builtin_policy(sandbox=False).for_agent("default")
    assert real.reveal is False and real.transfer_payees == ()
    assert SANDBOX_PAYEE not in builtin_policy(sandbox=False).payees
    assert (real.per_transaction, real.daily, real.weekly, real.monthly, real.lifetime) == (
        Decimal("20.00"),
        Decimal("50.00"),
        None,
        Decimal("200.00"),
        None,
    )
    assert real.max_active_cards == 2 and real.tools == ("*",) and real.timezone == "UTC"
    assert real.confirm_above is None and real.approval_above is None


def test_design_example_parses(tmp_path: Path) -> None:
    """The example policy in DESIGN section 7 (with valid ids) parses to what it says."""
    policy = load(tmp_path, DESIGN_EXAMPLE)
    shopper = policy.for_agent("shopper")
    assert shopper.daily == Decimal("200.00") and shopper.monthly == Decimal("400.00")
    assert shopper.per_transaction == Decimal("50.00") and shopper.weekly is None
    assert shopper.confirm_above == Decimal("10.00") and shopper.approval_above == Decimal("25.00")
    assert shopper.transfer_payees == ("acme",)
    assert shopper.cardholder_id == "1963920000000000"
    assert shopper.card_spend_limit is not None and shopper.card_spend_limit.window == "DAY"
    assert shopper.card_spend_limit.amount == Decimal("50.00")
    assert policy.agent_for_token_hash(TOKEN_SHA) == "shopper"
    assert policy.payees["acme"].balance_id == "9a1d7c3b-2e4f-4a6b-8c0d-1e2f3a4b5c6d"
    other = policy.for_agent("other")
    assert other.daily == Decimal("100.00") and other.transfer_payees == ()


def test_duplicate_token_hash_is_rejected(tmp_path: Path) -> None:
    """Two agents with the same token_sha256 cannot both be identified."""
    err = refusal(tmp_path, f'[agents.a]\ntoken_sha256 = "{TOKEN_SHA}"\n[agents.b]\ntoken_sha256 = "{TOKEN_SHA}"\n')
    assert err.key == "agents.b.token_sha256"


def test_checkout_keys_are_parsed_inherited_and_shown(tmp_path: Path) -> None:
    """single_use_cards, card_max_ttl_minutes, mcc_allow / mcc_block and reveal = "human" (DESIGN section 13)."""
    text = (
        '[defaults]\nsingle_use_cards = true\ncard_max_ttl_minutes = 60\nmcc_allow = ["5734", "5045", "5734"]\n'
        'reveal = "human"\n[agents.shopper]\ncard_max_ttl_minutes = "none"\nmcc_allow = []\nmcc_block = ["7995"]\n'
    )
    policy = load_policy(write_policy(tmp_path / "p.toml", text))
    other, shopper = policy.for_agent("other"), policy.for_agent("shopper")
    assert (other.single_use_cards, other.card_max_ttl_minutes, other.mcc_allow) == (True, 60, ("5045", "5734"))
    assert (shopper.single_use_cards, shopper.card_max_ttl_minutes) == (True, None)
    assert (shopper.mcc_allow, shopper.mcc_block, shopper.reveal) == ((), ("7995",), "human")
    assert other.mcc_allowed("5734") and not other.mcc_allowed("5812") and not other.mcc_allowed(None)
    assert shopper.mcc_allowed("5812") and shopper.mcc_allowed(None) and not shopper.mcc_allowed("7995")
    assert other.describe()["mcc_allow"] == ["5045", "5734"] and shopper.describe()["card_max_ttl_minutes"] == "none"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("single_use_cards = 1", "defaults.single_use_cards", "true or false"),
        ("card_max_ttl_minutes = 0", "defaults.card_max_ttl_minutes", "whole number of minutes"),
        ('card_max_ttl_minutes = "60"', "defaults.card_max_ttl_minutes", "whole number of minutes"),
        ("card_max_ttl_minutes = 525601", "defaults.card_max_ttl_minutes", "whole number of minutes"),
        ("mcc_allow = [5734]", "defaults.mcc_allow", "4-digit merchant category codes as strings"),
        ('mcc_allow = ["573"]', "defaults.mcc_allow", "'573' is not a 4-digit merchant category code"),
        ('mcc_block = "5734"', "defaults.mcc_block", "must be a list"),
        ('mcc_allow = ["5734"]\nmcc_block = ["5734"]', "defaults.mcc_block", "5734 also in mcc_allow"),
        ('reveal = "humans"', "defaults.reveal", '"human"'),
    ],
)
def test_bad_checkout_keys_stop_startup_naming_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    """Each bad value of a checkout key is refused with the file, the key and why."""
    with pytest.raises(PolicyError) as exc:
        load_policy(write_policy(tmp_path / "p.toml", f"[defaults]\n{text}\n"))
    assert exc.value.key == key and reason in exc.value.reason, str(exc.value)

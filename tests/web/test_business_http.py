"""Issue 13 on the console over plain HTTP: invite rewards (once per new account), the 兑换码 box
and the new-token form refusing hostile input, the admin's code pages refused to users."""

from __future__ import annotations

import re

from sqlalchemy import select

from lightrelay.db.models import accounts as accounts_table
from lightrelay.services import accounts, redeem
from tests.web.conftest import outbox_codes

PASSWORD = "correct horse 42"


async def _extra(relay, email: str) -> int:
    async with relay.lr.engine.connect() as conn:
        return (await conn.execute(select(accounts_table.c.extra_calls)
                                   .where(accounts_table.c.email == email))).scalar_one()


async def test_invite_rewards_both_accounts_once(start_relay, visitor) -> None:
    relay = await start_relay(invite_reward_calls=5)
    await relay.user("host@example.com", password=PASSWORD)
    host = await visitor(relay)
    await host.login("host@example.com", PASSWORD)
    link = re.search(r'<code id="invite-link">([^<]+)</code>', host.text).group(1)
    assert link.startswith(relay.url + "/register?invite=")
    await host.get("/me/api")
    assert link in host.text  # the same code every time

    guest = await visitor(relay)
    await guest.get(link[len(relay.url):])
    assert 'name="invite"' in guest.text
    invite = link.rsplit("=", 1)[1]
    await guest.post("/register", {"email": "guest@example.com", "password": PASSWORD, "invite": invite})
    assert await _extra(relay, "host@example.com") == 0  # not before the new account is verified
    [code] = outbox_codes(relay.settings.outbox_dir)
    await guest.post("/verify", {"email": "guest@example.com", "code": code})
    assert guest.status == 200
    assert await _extra(relay, "host@example.com") == 5 and await _extra(relay, "guest@example.com") == 5
    # activating again (it cannot happen through the console; the service is idempotent) credits nothing
    guest_id = (await accounts.get_account(relay.lr.engine, email="guest@example.com"))["id"]
    await accounts.activate_account(relay.lr.engine, account_id=guest_id, invite_reward=5)
    assert await _extra(relay, "host@example.com") == 5 and await _extra(relay, "guest@example.com") == 5

    # an unknown invite code signs up without a reward
    other = await visitor(relay)
    await other.get("/register?invite=NOPE")
    await other.post("/register", {"email": "other@example.com", "password": PASSWORD, "invite": "NOPE"})
    [_, code] = outbox_codes(relay.settings.outbox_dir)
    await other.post("/verify", {"email": "other@example.com", "code": code})
    assert await _extra(relay, "other@example.com") == 0 and await _extra(relay, "host@example.com") == 5


async def test_invites_off_by_default(start_relay, visitor) -> None:
    relay = await start_relay()
    await relay.user("h2@example.com", password=PASSWORD)
    host = await visitor(relay)
    await host.login("h2@example.com", PASSWORD)
    invite = re.search(r'register\?invite=([A-Z2-7]+)', host.text).group(1)
    guest = await visitor(relay)
    await guest.get("/register")
    await guest.post("/register", {"email": "g2@example.com", "password": PASSWORD, "invite": invite})
    [code] = outbox_codes(relay.settings.outbox_dir)
    await guest.post("/verify", {"email": "g2@example.com", "code": code})
    assert await _extra(relay, "g2@example.com") == 0 and await _extra(relay, "h2@example.com") == 0


async def test_redeem_box_and_token_form_refuse_hostile_input(start_relay, visitor) -> None:
    relay = await start_relay()
    await relay.user("box@example.com", password=PASSWORD)
    page = await visitor(relay)
    await page.login("box@example.com", PASSWORD)
    _, codes = await redeem.add_codes(relay.lr.engine, calls=2)
    await page.post("/me/redeem", {"code": codes[0]}, csrf=False)
    assert page.status == 403  # CSRF
    await page.get("/me/api")
    await page.post("/me/redeem", {"code": "x" * 5000})
    assert page.status == 400
    await page.post("/me/redeem", {"code": codes[0]})
    assert page.status == 200 and 'id="extra-calls">2<' in page.text
    for fields in ({"ips": "1.2.3.4/77"}, {"expires": "2030-02-30"}, {"rpm": "-3"}, {"daily_limit": "lots"},
                   {"models": ",,,"}, {"rpm": "9" * 50}):
        await page.post("/me/api/tokens", {"name": "x", **fields})
        assert page.status == 400 and 'id="form-error"' in page.text, fields
    assert len(await accounts.list_tokens(relay.lr.engine, account_id=1)) == 1
    # the redeem box is rate-limited per account
    for _ in range(12):
        await page.post("/me/redeem", {"code": "AAAAA-AAAAA-AAAAA-AAAAA"})
    assert page.status == 429


async def test_admin_code_pages_are_for_admins(start_relay, visitor) -> None:
    relay = await start_relay()
    await relay.user("plain@example.com", password=PASSWORD)
    await relay.user("adm@example.com", password=PASSWORD, admin=True)
    page = await visitor(relay)
    await page.login("plain@example.com", PASSWORD)
    for path in ("/admin/codes", "/admin/codes.csv"):
        await page.get(path)
        assert page.status == 403
    await page.post("/admin/codes", {"calls": "5", "count": "3"})
    assert page.status == 403
    assert await redeem.count_codes(relay.lr.engine) == 0

    admin = await visitor(relay)
    await admin.login("adm@example.com", PASSWORD)
    await admin.get("/admin/codes")
    for bad in ({"calls": "5", "count": "100000"}, {"calls": "-1", "count": "1"}, {"calls": "x", "count": "1"},
                {"calls": "5", "count": "1", "expires": "someday"}, {"calls": "0", "count": "1"}):
        await admin.post("/admin/codes", bad)
        assert admin.status == 400 and 'id="form-error"' in admin.text, bad
    await admin.get("/admin/accounts?q=plain")  # balances are on the accounts page
    assert re.search(r'class="num extra">0<', admin.text)
    await admin.post("/admin/codes", {"calls": "5", "count": "3", "note": "<script>x</script>"})
    assert admin.status == 200 and "<script>x</script>" not in admin.text
    made = re.search(r'<textarea id="made-codes"[^>]*>([^<]*)</textarea>', admin.text).group(1).split("\n")
    assert len(made) == 3
    async with admin.session.get(relay.url + "/admin/codes.csv") as r:
        text = await r.text()
        assert r.status == 200 and r.headers["content-type"].startswith("text/csv")
    assert text.splitlines()[0].startswith("code,batch,calls") and len(text.splitlines()) == 4

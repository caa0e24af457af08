"""Guarantee 6: secrets stay secret. Tokens are stored hashed (the database never holds one) and compared
in constant time; upstream keys are sealed at rest and never returned in full; admin routes refuse
non-admins; no token, password or upstream key reaches the logs; token guessing is rate-limited; a weak
secret is refused outside dev mode."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

from lightrelay import security
from tests.faults.conftest import MODEL, ROOT, acli, call_text, relay_env
from tests.mock_upstream import MockUpstream

UPSTREAM_KEY = "sk-upstream-Zq9secretKEY-0123456789"
PASSWORD = "correct horse battery staple 42"


async def test_database_never_holds_a_token_or_key(relay, http):
    async with MockUpstream(api_key=UPSTREAM_KEY) as up:
        await relay.channel("up", up.base_url, MODEL, api_key=UPSTREAM_KEY)
        tokens = [await relay.user(f"u{i}@example.com", password=PASSWORD) for i in range(3)]
        for token in tokens:
            assert (await call_text(http, relay.url, "openai", token, stream=False))[0] == 200
    await relay.lr.recorder.flush()
    data = b"".join(p.read_bytes() for p in relay.settings.data_dir.glob("lightrelay.db*"))
    assert data  # the database and its WAL
    for secret in [*tokens, UPSTREAM_KEY, PASSWORD]:
        assert secret.encode() not in data
    assert security.hash_token(tokens[0]).encode() in data  # what is kept instead


async def test_tokens_are_compared_in_constant_time(relay, http, monkeypatch):
    compared = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: compared.append(1) or real(a, b))
    token = await relay.user("c@example.com")
    await call_text(http, relay.url, "openai", token, stream=False)
    assert compared  # the stored hash was checked with hmac.compare_digest


async def test_upstream_key_never_returned_in_full(relay, http):
    await relay.channel("keyed", "http://127.0.0.1:9/v1", MODEL, api_key=UPSTREAM_KEY)
    admin = await relay.user("a@example.com", admin=True)
    async with http.get(relay.url + "/api/admin/channels/state", headers={"Authorization": f"Bearer {admin}"}) as r:
        raw = await r.text()
    assert r.status == 200 and "keyed" in raw and UPSTREAM_KEY not in raw and "0123456789" not in raw
    env = relay_env(relay.settings.data_dir, 0, LIGHTRELAY_SECRET_KEY=relay.settings.secret())
    out = await acli(env, "channel", "list")
    assert "keyed" in out and UPSTREAM_KEY not in out and "0123456789" not in out


async def test_admin_routes_refuse_non_admins(relay, http):
    user = await relay.user("u@example.com")
    async with http.get(relay.url + "/api/admin/channels/state", headers={"Authorization": f"Bearer {user}"}) as r:
        assert r.status == 403
    async with http.get(relay.url + "/admin/channels", allow_redirects=False) as r:  # the console's admin pages
        assert r.status in (303, 401, 403) and "keyed" not in await r.text()


async def test_no_secret_in_logs(start_relay, http, caplog):
    caplog.set_level(logging.DEBUG)
    relay = await start_relay(log_level="DEBUG")
    async with MockUpstream(api_key=UPSTREAM_KEY) as good, MockUpstream("echo-auth") as leaky:
        await relay.channel("good", good.base_url, MODEL, api_key=UPSTREAM_KEY, priority=1)
        await relay.channel("leaky", leaky.base_url, "gpt-4", api_key=UPSTREAM_KEY)
        token = await relay.user("logs@example.com", password=PASSWORD, gpt4=True, limit=None)
        seen = []
        for door in ("light", "openai"):
            for stream in (False, True):
                status, raw = await call_text(http, relay.url, door, token, stream=stream)
                assert status == 200
        async with http.post(relay.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                             json={"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}) as r:
            seen.append(await r.text())  # the leaky upstream's error, as the caller sees it
            assert r.status == 502
        assert UPSTREAM_KEY in leaky.requests[-1].headers["Authorization"]  # it did leak, upstream
        guess = "sk-11111111-2222-4333-8444-555555555555"
        await call_text(http, relay.url, "openai", guess, stream=False)
        await relay.lr.recorder.flush()
    env = relay_env(relay.settings.data_dir, 0, LIGHTRELAY_SECRET_KEY=relay.settings.secret(),
                    LIGHTRELAY_LOG_LEVEL="DEBUG")
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lightrelay", "user", "add", "cli@example.com", "--password", PASSWORD, env=env,
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await cli.communicate()
    cli_token = out.decode().strip().splitlines()[-1]
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records) + err.decode()
    assert "lightrelay" in caplog.text  # something was logged at all
    for secret in (token, cli_token, guess, PASSWORD, UPSTREAM_KEY):
        assert secret not in logged
    assert UPSTREAM_KEY not in seen[0] and "***" in seen[0]  # scrubbed before the caller sees it


async def test_token_guessing_is_rate_limited(start_relay, http):
    relay = await start_relay(rate_bad_token="5/1.5")
    good = await relay.user("g@example.com")
    for i in range(5):
        status, _ = await call_text(http, relay.url, "openai", f"sk-guess-{i:04d}", stream=False)
        assert status == 401
    async with http.post(relay.url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-guess-x"},
                         json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]}) as r:
        assert r.status == 429 and int(r.headers["retry-after"]) >= 1
        assert (await r.json())["error"]["code"] == "too_many_invalid_tokens"
    status, body = await relay.light(http, {"token": good, "messages": [{"role": "user", "content": "x"}]})
    assert (status, body["code"]) == (429, 429)  # while blocked, nothing is looked up from this address
    await asyncio.sleep(1.6)
    status, _ = await relay.light(http, {"token": good, "messages": [{"role": "user", "content": "x"}]})
    assert status == 404  # unblocked by itself (404: no channel serves the model in this test)


def test_weak_secret_refused_outside_dev(tmp_path):
    env = relay_env(tmp_path / "data", 1, LIGHTRELAY_SECRET_KEY="changeme", LIGHTRELAY_ENV="production")
    done = subprocess.run([sys.executable, "-m", "lightrelay", "serve"], env=env, capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert done.returncode != 0
    assert "LIGHTRELAY_SECRET_KEY is weak" in done.stderr

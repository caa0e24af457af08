"""The ``lightrelay`` command, run as a real subprocess against the same data dir as a running relay."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest

TOKEN_RE = re.compile(r"^sk-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def cli(relay, *args: str, ok: bool = True) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTRELAY_")}
    env.update(LIGHTRELAY_DATA_DIR=str(relay.settings.data_dir), LIGHTRELAY_ENV="dev",
               LIGHTRELAY_SECRET_KEY=relay.settings.secret(), LIGHTRELAY_URL=relay.url)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "lightrelay", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if ok:
        assert proc.returncode == 0, err.decode()
    return proc.returncode, out.decode(), err.decode()


async def test_fresh_data_dir_user_add_prints_token_last(tmp_path):
    class Fresh:  # no relay: the CLI must create and migrate the database itself
        url = "http://127.0.0.1:9"

        class settings:  # noqa: N801
            data_dir = tmp_path / "fresh"

            @staticmethod
            def secret() -> str:
                return "fresh-secret-0123456789"

    _, out, _ = await cli(Fresh, "user", "add", "New@Example.com", "--daily-limit", "10")
    token = out.strip().splitlines()[-1]
    assert TOKEN_RE.match(token)
    assert (tmp_path / "fresh" / "lightrelay.db").exists()
    _, out, _ = await cli(Fresh, "user", "list")
    assert "new@example.com" in out and " 10 " in out


async def test_user_token_channel_usage_chat(relay, upstream):
    _, out, _ = await cli(relay, "user", "add", "cli@example.com", "--daily-limit", "unlimited", "--gpt4")
    token = out.strip().splitlines()[-1]
    assert TOKEN_RE.match(token)
    code, _, err = await cli(relay, "user", "add", "cli@example.com", ok=False)
    assert code != 0 and "exists" in err

    _, out, _ = await cli(relay, "user", "set", "cli@example.com", "--daily-limit", "5", "--no-gpt4")
    assert "daily limit 5" in out and "gpt4 no" in out
    code, _, err = await cli(relay, "user", "set", "cli@example.com", "--daily-limit", "lots", ok=False)
    assert code != 0 and "unlimited" in err
    code, _, err = await cli(relay, "user", "set", "nobody@example.com", "--gpt4", ok=False)
    assert code != 0 and "no account" in err

    await cli(relay, "channel", "add", "mock", "--base-url", upstream.base_url, "--api-key", "sk-upstream-abcdef123456",
              "--models", "gpt-3.5-turbo-1106,my-alias=gpt-x", "--priority", "3", "--first-byte-timeout", "7.5")
    _, out, _ = await cli(relay, "channel", "list")
    assert "mock" in out and "my-alias=gpt-x" in out and "prio=3" in out
    assert "sk-upstream-abcdef123456" not in out and "3456" in out  # masked
    code, _, err = await cli(relay, "channel", "add", "bad", "--base-url", "ftp://x", "--models", "a", ok=False)
    assert code != 0 and "http" in err
    from lightrelay.services.channels import get_channel

    assert (await get_channel(relay.lr.engine, name="mock"))["first_byte_timeout"] == 7.5
    _, out, _ = await cli(relay, "channel", "test", "mock")
    assert out.startswith("ok: mock answered in") and "echo: Say hi." in out
    assert upstream.requests[-1].headers["Authorization"] == "Bearer sk-upstream-abcdef123456"

    # chat, a client of the running relay (which picks up the channel within seconds)
    await relay.lr.reload_channels()
    relay.lr.relay.auth.invalidate()
    _, out, _ = await cli(relay, "chat", "--token", token, "你好")
    assert out.strip() == "echo: 你好"
    _, out, _ = await cli(relay, "chat", "--token", token, "--stream", "流式")
    assert out.strip() == "echo: 流式"
    code, _, err = await cli(relay, "chat", "--token", "sk-nope", "x", ok=False)
    assert code != 0 and "401" in err

    await relay.lr.recorder.flush()
    _, out, _ = await cli(relay, "usage", "cli@example.com")
    assert out.count("gpt-3.5-turbo-1106") == 2 and "light" in out

    _, out, _ = await cli(relay, "token", "add", "cli@example.com", "--name", "second")
    second = out.strip().splitlines()[-1]
    assert TOKEN_RE.match(second) and second != token
    _, out, _ = await cli(relay, "token", "revoke", second)
    assert "revoked" in out
    code, _, err = await cli(relay, "token", "revoke", second, ok=False)
    assert code != 0 and "no such active token" in err

    await cli(relay, "channel", "disable", "mock")
    _, out, _ = await cli(relay, "channel", "list")
    assert "disabled" in out


@pytest.mark.parametrize("args", [["user", "add", "not-an-email"], ["channel", "add", "x", "--models", ""]])
async def test_bad_arguments_fail_cleanly(relay, args):
    code, out, err = await cli(relay, *args, ok=False)
    assert code != 0
    assert "Traceback" not in err and err.strip()


CHANNEL_ADD = ["channel", "add", "up", "--base-url", "http://127.0.0.1:9/v1", "--models", "m"]
PG_NO_SECRET = {"LIGHTRELAY_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/test"}
WEAK_SECRET = {"LIGHTRELAY_SECRET_KEY": "secret", "LIGHTRELAY_ENV": "production"}
BAD_NUMBER = {"LIGHTRELAY_LOCAL_MAX_QUEUE": "many"}
NO_FILE = {"LIGHTRELAY_CONFIG_FILE": "/nonexistent/lightrelay.env"}


@pytest.mark.parametrize(("command", "env", "says"), [
    (CHANNEL_ADD, PG_NO_SECRET, "LIGHTRELAY_SECRET_KEY must be set"),
    (["serve", "--port", "9"], PG_NO_SECRET, "LIGHTRELAY_SECRET_KEY must be set"),
    (CHANNEL_ADD, WEAK_SECRET, "LIGHTRELAY_SECRET_KEY is weak"),
    (["serve", "--port", "9"], WEAK_SECRET, "LIGHTRELAY_SECRET_KEY is weak"),
    (["user", "list"], BAD_NUMBER, "LIGHTRELAY_LOCAL_MAX_QUEUE"),
    (["serve", "--port", "9"], BAD_NUMBER, "LIGHTRELAY_LOCAL_MAX_QUEUE"),
    (["user", "list"], NO_FILE, "not a file"),
    (CHANNEL_ADD, NO_FILE, "not a file"),
])
def test_configuration_errors_are_one_clean_line(tmp_path, env, says, command):
    import subprocess

    full = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTRELAY_")}
    full.update(LIGHTRELAY_DATA_DIR=str(tmp_path / "data"), **env)
    done = subprocess.run([sys.executable, "-m", "lightrelay", *command], env=full, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("lightrelay: configuration error: ") and says in done.stderr

"""Issue 15, finding 5, with a real ``python -m lightrelay serve`` process: the data directory keeps its
secrets to the server's user (folders 0700; the database, its WAL and shared memory, the secret and the
outbox's mails, which hold live codes, 0600 — also when an older version left them readable), and no
page tells a visitor where the outbox is (only the server's log does)."""

from __future__ import annotations

import stat
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.faults.conftest import acli, relay_env, start_serve
from tests.web.conftest import Page


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(data: Path) -> dict[str, int]:
    found = {"data dir": mode(data), "outbox": mode(data / "outbox")}
    for path in [*data.glob("lightrelay.db*"), data / "secret.key", *(data / "outbox").glob("*.eml")]:
        found[path.name if path.suffix != ".eml" else "mail.eml"] = mode(path)
    return found


async def sign_up_and_look(url: str) -> str:
    """Sign up through the console (a code goes to the outbox), then visit the reset page as anyone."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        page = Page(url, session)
        await page.get("/register")
        await page.post("/register", {"email": "new@example.com", "password": "a-good-password-1"})
        assert page.status == 200, page.text
        shown = page.text
        async with session.get(url + "/reset/confirm?email=x@example.com") as r:
            return shown + await r.text()


async def test_data_dir_is_private_and_pages_do_not_show_the_outbox(tmp_path):
    data = tmp_path / "data"
    env = relay_env(data, free_port())  # no LIGHTRELAY_SECRET_KEY: the generated secret.key is checked too
    await acli(env, "user", "add", "someone@example.com")
    proc = await start_serve(env, tmp_path / "serve.log")
    try:
        pages = await sign_up_and_look(f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}")
        found = modes(data)  # while it runs: SQLite removes its -wal and -shm at a clean exit
    finally:
        proc.terminate()
        await proc.wait()
    assert {"lightrelay.db", "lightrelay.db-wal", "lightrelay.db-shm", "secret.key", "mail.eml"} <= set(found)
    assert found == {name: 0o700 if name in ("data dir", "outbox") else 0o600 for name in found}
    outbox = str((data / "outbox").resolve())
    assert outbox not in pages and "outbox" in pages  # the page says there is an outbox, not where
    assert outbox in (tmp_path / "serve.log").read_text()  # the operator finds it in the log


async def test_files_an_older_version_left_readable_are_closed_at_start(tmp_path):
    data = tmp_path / "data"
    env = relay_env(data, free_port())
    await acli(env, "user", "add", "someone@example.com")
    (data / "secret.key").write_text("an-older-versions-secret-0123456789\n")
    (data / "outbox").mkdir()
    (data / "outbox" / "old.eml").write_text("Subject: code 123456\n")
    for path in [data, data / "outbox"]:
        path.chmod(0o755)
    for path in [*data.glob("lightrelay.db*"), data / "secret.key", data / "outbox" / "old.eml"]:
        path.chmod(0o644)
    proc = await start_serve(env, tmp_path / "serve.log")
    proc.terminate()
    await proc.wait()
    found = modes(data)
    assert found == {name: 0o700 if name in ("data dir", "outbox") else 0o600 for name in found}

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


def test_opening_an_engine_keeps_the_locks_this_process_holds(tmp_path):
    """``make_engine`` (so ``private_data_dir``) on a database this process already has open must not open
    and close the file: closing a descriptor drops all of the process's POSIX locks on it, and another
    process could then switch the journal mode from under the open connection (a corruption: "database
    disk image is malformed")."""
    import sqlite3
    import subprocess
    import sys

    from lightrelay.db.engine import make_engine
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    make_engine(settings)  # creates the file 0600
    db = settings.db_url.split(":///", 1)[1]
    held = sqlite3.connect(db)
    held.execute("PRAGMA journal_mode=WAL")
    held.execute("CREATE TABLE t (i)")
    held.commit()
    held.execute("BEGIN")
    held.execute("SELECT * FROM t").fetchall()  # a read transaction: a lock on the file

    def switch_from_elsewhere() -> str:
        done = subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], "
                               "timeout=0); print(c.execute('PRAGMA journal_mode=DELETE').fetchone()[0])", db],
                              capture_output=True, text=True, timeout=30)
        return done.stdout.strip() or done.stderr.strip().splitlines()[-1]

    assert switch_from_elsewhere() == "sqlite3.OperationalError: database is locked"
    make_engine(settings)
    assert switch_from_elsewhere() == "sqlite3.OperationalError: database is locked"
    assert mode(Path(db)) == 0o600
    held.close()

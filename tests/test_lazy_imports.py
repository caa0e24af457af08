"""Idle memory (issue 14): a serving process imports only what a call needs. Alembic, redis-py (without
LIGHTRELAY_REDIS_URL), the console (Jinja2), cryptography (no keyed channel) and websockets stay out
until used. Checked in a fresh interpreter, since this test process has them all loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CODE = """
import json, sys
from starlette.testclient import TestClient
from lightrelay.http.app import create_app
from lightrelay.settings import load_settings

HEAVY = ("alembic", "redis", "jinja2", "cryptography", "websockets")
seen = {}
with TestClient(create_app(load_settings()), follow_redirects=False) as client:
    for path in ("/healthz", "/readyz", "/v1/models", "/v1/nothing"):
        client.get(path)
    seen["calls"] = [m for m in HEAVY if m in sys.modules]
    seen["login"] = client.get("/login").status_code
    seen["console"] = [m for m in HEAVY if m in sys.modules]
print(json.dumps(seen))
"""


def test_serving_imports_only_what_a_call_needs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTRELAY_")}
    env.update(LIGHTRELAY_DATA_DIR=str(tmp_path), LIGHTRELAY_SECRET_KEY="lazy-imports-secret-0123456789",
               LIGHTRELAY_LOCAL_MODEL="off")
    # a fresh data dir is migrated (Alembic in this process: what the CLI does); then a new process serves
    subprocess.run([sys.executable, "-m", "lightrelay.db.upgrade"], env=env, check=True, timeout=120)
    done = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["calls"] == []
    assert seen["login"] == 200
    assert seen["console"] == ["jinja2", "cryptography"]  # the console's session cookies are Fernet-sealed

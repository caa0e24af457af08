"""``python -m lightrelay.db.upgrade``: bring the database to the package's heads with Alembic.

``serve`` runs it as a child process when the database is behind (``engine.migrate_in_child``), so the
serving process never imports Alembic.
"""

from __future__ import annotations

import logging

from lightrelay.db.engine import migrate_sync
from lightrelay.settings import load_settings


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    migrate_sync(settings)


if __name__ == "__main__":
    main()

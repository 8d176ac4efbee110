"""`make test-mysql` runs this first: is the MySQL/MariaDB server of the test config there?

Without it every test would fail on its own after a minute or two; this says so at once,
with the host, port and user the tests would use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collator.settings")


def main() -> int:
    import django

    django.setup()
    import MySQLdb
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.mysql":
        print(f"check_database: the test config names no MySQL server ({db['ENGINE']})", file=sys.stderr)
        return 1
    where = f"{db['HOST']}:{db['PORT']} as {db['USER'] or '(no user)'}"
    try:
        MySQLdb.connect(
            host=db["HOST"], port=int(db["PORT"]), user=db["USER"], password=db["PASSWORD"], connect_timeout=5
        ).close()
    except MySQLdb.Error as exc:
        print(
            f"make test: cannot reach the MySQL/MariaDB server at {where}: {exc}\n"
            "  The tests need it (README: Quick start). Start it, e.g. on Debian "
            "`start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`, "
            "or point COLLATOR_MYSQL_HOST / COLLATOR_MYSQL_PORT / COLLATOR_MYSQL_USER at one.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

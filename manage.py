#!/usr/bin/env python
import os
import sys


def main() -> None:
    # `--config FILE` anywhere on the command line names the seed's JSON config file,
    # exactly like COLLATOR_CONFIG does (DECISIONS 22). It must be known before settings load.
    if "--config" in sys.argv:
        index = sys.argv.index("--config")
        if index + 1 >= len(sys.argv):
            sys.exit("--config needs a file path")
        os.environ["COLLATOR_CONFIG"] = sys.argv[index + 1]
        del sys.argv[index : index + 2]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collator.settings")
    from django.core.management import execute_from_command_line

    from collator.local_config import LocalConfigError

    try:
        execute_from_command_line(sys.argv)
    except LocalConfigError as exc:
        # A broken config file is the operator's to fix: one line that names it, no traceback.
        sys.exit(f"config error: {exc}")


if __name__ == "__main__":
    main()

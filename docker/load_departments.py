#!/usr/bin/env python
"""Seed the compose stack's department servers from the demo world (see govdata/seeding.py).

    python docker/load_departments.py /opt/govdata/world \
        --target shebao=DEPT_MARIADB_URL --target shichang=DEPT_POSTGRES_URL
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from govdata.seeding import copy_table, move_department, point_source_at, target_column  # noqa: F401


def parse_target(value: str) -> tuple[str, str]:
    source, sep, env_var = value.partition("=")
    if not sep or not source or not env_var:
        raise argparse.ArgumentTypeError(f"--target wants SOURCE=ENV_VAR, got {value!r}")
    return source, env_var


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path, help="folder written by `govdata demo-data`")
    parser.add_argument("--target", type=parse_target, action="append", required=True,
                        help="SOURCE=ENV_VAR: copy that department to the URL in ENV_VAR")
    args = parser.parse_args(argv)
    for source, env_var in args.target:
        rows = move_department(args.world, source, env_var)
        print(f"{source}: {rows} rows -> ${{{env_var}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the command talks: results on stdout, problems on stderr, and exit codes.

Exit codes: 0 success (accepted), 1 rejected (a reason code is printed), 2 unusable input or
usage (a plain message), 3 a service is unreachable.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2
EXIT_UNAVAILABLE = 3


def fail(message: str, code: int = EXIT_UNUSABLE) -> NoReturn:
    typer.echo(f"lienthong: {message}", err=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")

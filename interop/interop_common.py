"""What the Python SDK interop scripts share: their checks, their output lines and the end of their `main`.

Each script (`python_sdk.py`, `python_refusals.py`, `python_input_required.py`) is run as
`python interop/SCRIPT.py` from the repository root, so this directory is first on `sys.path` and the scripts
import this module as `interop_common`.

A script prints `ok: ...` for each thing checked (`step`), raises `Mismatch` on the first thing that is not as
expected (`check`), and ends with `run_script`, which runs its async body and prints `PASS python-sdk LABEL`, or,
after what there is to know about the failure, `FAIL (python-sdk LABEL): CAUSES`; its exit status is what
`run_script` returns.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp.types import CallToolResult, TextContent

# How long a script's calls may take in all; a timeout is named as such in the `FAIL` line.
TIMEOUT_SECONDS = 60


class Mismatch(Exception):
    """Something the server or the SDK did that the script did not expect; its message says what."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def step(message: str) -> None:
    print(f"ok: {message}", flush=True)


def text_of(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, which anyio's task groups raise."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def audit_records(audit: Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines audit log; none if there is no log yet."""
    if not audit.exists():
        return []
    return [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]


def run_script(
    label: str,
    run: Callable[[], Awaitable[None]],
    audit: Path | None = None,
    cleanup: Callable[[], None] | None = None,
) -> int:
    """Runs `run` with anyio and says how it went, as `PASS python-sdk LABEL` or `FAIL (python-sdk LABEL): ...`.

    On a failure (a mismatch, an SDK exception, a timeout): a traceback on stderr unless every cause is a
    `Mismatch` (its message says it all), the records of the `audit` log if there is one, then the `FAIL` line with
    each cause (`leaves`), a timeout named as such; returns 1. On a pass: `cleanup` first, then the `PASS` line;
    returns 0.
    """
    try:
        anyio.run(run)
    except BaseException as error:  # a mismatch, an SDK exception, a timeout
        causes = leaves(error)
        if not all(isinstance(cause, Mismatch) for cause in causes):
            traceback.print_exc()
        if audit is not None:
            print(f"audit log ({audit}):", flush=True)
            for record in audit_records(audit):
                print(f"  {json.dumps(record)}", flush=True)
        said = "; ".join(
            f"timed out after {TIMEOUT_SECONDS} s" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            for e in causes
        )
        print(f"FAIL (python-sdk {label}): {said}", flush=True)
        return 1
    if cleanup is not None:
        cleanup()
    print(f"PASS python-sdk {label}", flush=True)
    return 0

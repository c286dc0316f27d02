"""`chargeagent override`: the operator's override from a shell, a thin client of the local API.

    CHARGEAGENT_API_TOKEN=... chargeagent override --api-url http://127.0.0.1:8080 --no-model
    chargeagent override --max-current-a 40          # cap;  --no-cap removes it
    chargeagent override --pause                     # 0 A;  --resume

It POSTs to `/api/override` (station/api.py) with the bearer token read from the env var named by
`--token-env` (never a command-line argument: those show up in `ps`), prints the override now in force
and exits 1 with the API's message when the agent refuses (401/403/400) or cannot be reached.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from typing import Annotated

import typer


def override(
    api_url: Annotated[str, typer.Option(help="The agent's local API.")] = "http://127.0.0.1:8080",
    model: Annotated[
        bool | None, typer.Option("--model/--no-model", help="Learned curve on / off (CC-CV).")
    ] = None,
    max_current_a: Annotated[float | None, typer.Option(help="Cap the output current (A).")] = None,
    no_cap: Annotated[bool, typer.Option("--no-cap", help="Remove the current cap.")] = False,
    pause: Annotated[bool | None, typer.Option("--pause/--resume", help="Pause (0 A) / resume.")] = None,
    token_env: Annotated[
        str, typer.Option(help="NAME of the env var holding the API token.")
    ] = "CHARGEAGENT_API_TOKEN",  # noqa: S107  # the NAME of an env var, not a password
) -> None:
    """Switch the model off, cap or pause a station through its local API."""
    body: dict[str, object] = {}
    if model is not None:
        body["model_enabled"] = model
    if max_current_a is not None:
        body["max_current_a"] = max_current_a
    if no_cap:
        body["clear_cap"] = True
    if pause is not None:
        body["paused"] = pause
    if not body:
        _fail("nothing to change: give --model/--no-model, --max-current-a, --no-cap or --pause/--resume", 2)
    token = os.environ.get(token_env)
    if not token:
        _fail(f"the env var {token_env} (the API token) is not set", 2)
    request = urllib.request.Request(  # noqa: S310  # the operator's own URL
        api_url.rstrip("/") + "/api/override",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            typer.echo(response.read().decode())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, KeyError, TypeError):  # not our JSON: show it as it came
            detail = json.loads(detail)["error"]
        _fail(f"override refused ({exc.code}): {detail}", 1)
    except (urllib.error.URLError, OSError) as exc:
        _fail(f"cannot reach {api_url}: {getattr(exc, 'reason', exc)}", 1)


def _fail(message: str, code: int) -> None:
    typer.echo(f"chargeagent: {message}", err=True)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command(name="override")(override)

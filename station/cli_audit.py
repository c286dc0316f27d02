"""`chargeagent audit-export`: the charge-decision audit trail of a station, oldest first (station.audit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def audit_export(
    station_id: Annotated[str, typer.Option(help="Station identity (its data directory).")] = "CS001",
    data_dir: Annotated[Path, typer.Option(help="The station's data_dir.")] = Path("var"),
    out: Annotated[Path | None, typer.Option(help="Write here (JSON lines); default stdout.")] = None,
) -> None:
    """Export every audit record (JSON lines) across the rotated files, oldest first."""
    from station.audit import export  # noqa: PLC0415

    directory = data_dir / station_id
    if not directory.is_dir():
        typer.echo(f"chargeagent: no station data in {directory}", err=True)
        raise typer.Exit(2)
    lines = list(export(directory))
    if out is None:
        for line in lines:
            typer.echo(line)
    else:
        out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        typer.echo(f"{len(lines)} audit records -> {out}", err=True)


def register(app: typer.Typer) -> None:
    app.command(name="audit-export")(audit_export)

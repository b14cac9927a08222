"""`govdata share …`, `govdata catalogue` and `govdata serve` (registered by govdata.cli)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

share_app = typer.Typer(help="Data sharing: requests, decisions, grants, clients, the request log.",
                        no_args_is_help=True)
client_app = typer.Typer(help="Service clients (departments with API keys).", no_args_is_help=True)
share_app.add_typer(client_app, name="client")
console = Console(stderr=True)
out = Console()

WAREHOUSE_OPT = typer.Option(None, "--warehouse", envvar="GOVDATA_WAREHOUSE_URL", help="warehouse SQLAlchemy URL")


def _url(warehouse: Optional[str]) -> str:
    from govdata.settings import get_settings

    return warehouse or get_settings().warehouse_url


# a steward's decision: the request, the reason (kept with it) and who decided
REQUEST_ARG = typer.Argument(..., help="request id (govdata share list)")
REASON_OPT = typer.Option(..., "--reason", help="why (kept with the decision)")
WHO_OPT = typer.Option(None, help="steward (default: the login)")


def _fail(exc: Exception) -> None:
    console.print(f"[red]{exc}[/]")
    raise typer.Exit(1)


def _date(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected YYYY-MM-DD") from None


@share_app.command("request")
def share_request(resource: str = typer.Option(..., "--resource", help="catalogue resource code"),
                  department: str = typer.Option(..., "--for", help="consumer department code"),
                  purpose: str = typer.Option(..., "--purpose", help="what the data is for"),
                  until: str = typer.Option(..., "--until", help="last day of access (YYYY-MM-DD)"),
                  who: Optional[str] = typer.Option(None, help="who asks (default: the login)"),
                  warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Ask for a conditional resource for a department (a steward approves or refuses)."""
    from govdata.sharing.store import ShareError, request_access

    try:
        req = request_access(_url(warehouse), resource, department, purpose, _date(until), who)
    except (ShareError, KeyError) as exc:
        _fail(exc)
    print(req.request_id)
    if req.status == "refused":
        console.print(f"[red]request {req.request_id} refused:[/] {req.decision_reason}")
        raise typer.Exit(1)
    console.print(f"request {req.request_id} pending: [bold]govdata share approve|refuse {req.request_id} --reason …[/]")


@share_app.command("approve")
def share_approve(request_id: str = REQUEST_ARG, reason: str = REASON_OPT, who: Optional[str] = WHO_OPT,
                  warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Approve a pending request: the department's consumer role is granted the resource."""
    from govdata.sharing.store import ShareError, approve

    try:
        grant_id = approve(_url(warehouse), request_id, reason, who)
    except (ShareError, KeyError) as exc:
        _fail(exc)
    print(grant_id)
    console.print(f"request {request_id} approved: grant {grant_id}")


@share_app.command("refuse")
def share_refuse(request_id: str = REQUEST_ARG, reason: str = REASON_OPT, who: Optional[str] = WHO_OPT,
                 warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Refuse a pending request."""
    from govdata.sharing.store import ShareError, refuse

    try:
        refuse(_url(warehouse), request_id, reason, who)
    except ShareError as exc:
        _fail(exc)
    console.print(f"request {request_id} refused")


@share_app.command("list")
def share_list(warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Every request with its state."""
    from govdata.sharing.store import list_requests

    table = Table(title="sharing requests")
    for col in ("request", "resource", "for", "purpose", "until", "status", "decided by", "reason"):
        table.add_column(col)
    for row in list_requests(_url(warehouse)):
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


@share_app.command("expire")
def share_expire(warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Revoke the grants whose date has passed (the marts DAG runs this after every load)."""
    from govdata.sharing.store import expire_grants

    expired = expire_grants(_url(warehouse))
    console.print(f"{len(expired)} grant(s) expired" + (f": {', '.join(expired)}" if expired else ""))


@share_app.command("audit")
def share_audit(warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Verify the request log's hash chain; exit 1 naming the first broken row."""
    from govdata.sharing.log import verify_chain

    report = verify_chain(_url(warehouse))
    if report.intact:
        console.print(f"[green]request log intact[/]: {report.rows} row(s)")
        return
    console.print(f"[red]request log broken at row {report.first_broken}[/]: {report.reason} "
                  f"({report.rows} row(s) checked)")
    raise typer.Exit(1)


@client_app.command("add")
def client_add(department: str = typer.Argument(..., help="department code (catalogue)"),
               rate: float = typer.Option(50.0, help="requests per second"),
               warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Register a client; prints `client_id api_key` once (only the key's hash is stored)."""
    from govdata.sharing.store import add_client

    try:
        client_id, key = add_client(_url(warehouse), department, rate)
    except KeyError as exc:
        _fail(exc)
    print(client_id, key)
    console.print("keep the key: it is not stored and cannot be shown again")


def catalogue(sharing_class: Optional[str] = typer.Option(None, "--class", help="无条件 | 有条件 | 不予")) -> None:
    """Print the resource catalogue (GB/T 21063 core metadata)."""
    from govdata.standards.catalogue import load_catalogue

    cat = load_catalogue()
    table = Table(title=f"政务信息资源目录 (version {cat.version})", show_lines=False)
    for col in ("code", "name", "provider", "class", "conditions", "open", "update", "warehouse", "elements"):
        table.add_column(col, overflow="fold")
    for r in cat.resources.values():
        if sharing_class and r.sharing_class != sharing_class:
            continue
        where = r.object + (f" ({len(r.columns)} columns)" if r.columns else "") + (f" where {r.rows}" if r.rows else "")
        table.add_row(r.code, r.name, cat.departments[r.provider].name if r.provider in cat.departments else r.provider,
                      r.sharing_class, r.sharing_conditions, r.open_class, r.update_cycle, where, ", ".join(r.elements))
    out.print(table)


def serve(port: int = typer.Option(8700, "--port", help="TCP port"),
          host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
          warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Serve the verification and prefill API (uvicorn; POST /verify, POST /prefill)."""
    import os

    import uvicorn

    os.environ["GOVDATA_WAREHOUSE_URL"] = _url(warehouse)
    uvicorn.run("govdata.sharing.api:create_app", factory=True, host=host, port=port, loop="uvloop",
                http="httptools", access_log=False, log_level="warning", timeout_graceful_shutdown=10)


def register(app: typer.Typer) -> None:
    """Add `share`, `catalogue` and `serve` to the govdata command line."""
    app.add_typer(share_app, name="share")
    app.command("catalogue")(catalogue)
    app.command("serve")(serve)

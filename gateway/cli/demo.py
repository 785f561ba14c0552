"""`predgate demo`: a working gateway in one command (migrate, train, tenants, keys)."""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING

import click

from auth.api_keys import issue_key
from auth.errors import TenantNotFound
from auth.tenants import assign_model, create_tenant, get_tenant
from gateway.cli.context import CliContext, echo_json, handle_errors, pass_cli, progress_steps
from models.errors import ModelNotFound
from models.registry import get_model

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from audit.acts import OperatorAct

# tenant -> (model, target column, algorithm, sample request)
DEMO_TENANTS = {
    "acme": (
        "house-price",
        "price",
        "random-forest",
        {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1},
    ),
    "globex": (
        "iris",
        "species",
        "logistic",
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    ),
}


def _model_exists(session: Session, name: str) -> bool:
    try:
        get_model(session, name)
    except ModelNotFound:
        return False
    return True


def _tenant_id(session: Session, name: str) -> int | None:
    try:
        return get_tenant(session, name).id
    except TenantNotFound:
        return None


def _train_demo_model(
    act: OperatorAct,
    cli: CliContext,
    name: str,
    target: str,
    algorithm: str,
    *,
    show_progress: bool,
) -> None:
    # Training pulls in pandas and scikit-learn: imported only when a model is to be trained.
    from models.training import make_house_price_data, make_iris_data, train_model

    data_dir = cli.settings.data_dir
    frame = make_house_price_data() if name == "house-price" else make_iris_data()
    csv_path = data_dir / "demo" / f"{name}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False)
    with progress_steps(enabled=show_progress) as progress:
        progress(f"training {name} on {csv_path}")
        result = train_model(
            act.session,
            cli.artifacts,
            data_path=csv_path,
            target=target,
            name=name,
            algorithm=algorithm,  # type: ignore[arg-type]
            registered_by=cli.actor,
            progress=progress,
        )
    meta = result.model_version
    act.details.update(version=meta.version, sha256=meta.artifact_sha256, runtime=meta.runtime)


@click.command()
@click.option(
    "--base-url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The gateway's URL, used in the sample curl commands printed at the end.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the issued keys as JSON.")
@pass_cli
@handle_errors
def demo(cli: CliContext, base_url: str, as_json: bool) -> None:
    """Set up demo models, tenants and keys (safe to re-run; issues fresh keys).

    Creates the instance (data directory, server secret, database) when it does not exist.
    """
    from db.migrations import upgrade

    cli.create_instance()
    upgrade(cli.engine)
    issued: list[dict[str, str]] = []
    for tenant, (model, target, algorithm, _sample) in DEMO_TENANTS.items():
        # Each step is its own audited act, exactly as if typed by hand.
        with cli.session() as session:
            known_model = _model_exists(session, model)
            known_tenant = _tenant_id(session, tenant)
        if not known_model:
            with cli.act("model.register", model=model, demo=True) as act:
                _train_demo_model(act, cli, model, target, algorithm, show_progress=not as_json)
        if known_tenant is None:
            with cli.act("tenant.create", tenant=tenant) as act:
                act.tenant_id = create_tenant(act.session, name=tenant).id
        # Pinned to the version just trained (or the latest one, on a re-run).
        with cli.act("tenant.assign", tenant=tenant, model=model) as act:
            assigned = assign_model(act.session, tenant, model_name=model, version=None)
            act.tenant_id = assigned.tenant.id
            act.details.update(previous=assigned.previous, assigned=assigned.assigned)
        with cli.act("key.issue", tenant=tenant, label="demo") as act:
            key = issue_key(
                act.session,
                cli.settings.secret_key,
                tenant_name=tenant,
                created_by=cli.actor,
                label="demo",
            )
            act.tenant_id = _tenant_id(act.session, tenant)
            act.details["key_id"] = key.key.key_id
        issued.append(
            {"tenant": tenant, "model": model, "key_id": key.key.key_id, "api_key": key.api_key}
        )
    if as_json:
        echo_json({"tenants": issued})
        return
    click.echo("Demo ready. Each key is shown once:\n")
    for entry in issued:
        sample = DEMO_TENANTS[entry["tenant"]][3]
        body = shlex.quote(json.dumps(sample))
        click.echo(f"# {entry['tenant']} -> {entry['model']}")
        click.echo(
            f"curl -s {base_url}/v1/predict -H 'Authorization: Bearer {entry['api_key']}' "
            f"-H 'Content-Type: application/json' -d {body}\n"
        )

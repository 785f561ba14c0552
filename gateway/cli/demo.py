"""`predgate demo`: a working gateway in one command (migrate, train, tenants, keys)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
import pandas as pd
from models.training import make_house_price_data, make_iris_data, train_model
from sqlalchemy.orm import Session

from auth.api_keys import issue_key
from auth.errors import TenantNotFound
from auth.tenants import assign_model, create_tenant, get_tenant
from db.migrations import upgrade
from gateway.cli.context import CliContext, echo_json, handle_errors, pass_cli
from models.artifacts import ArtifactStore
from models.errors import ModelNotFound
from models.registry import get_model

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


def _ensure_model(
    session: Session,
    artifacts: ArtifactStore,
    data_dir: Path,
    name: str,
    target: str,
    algorithm: str,
    actor: str,
) -> None:
    try:
        get_model(session, name)
        return
    except ModelNotFound:
        pass
    frame: pd.DataFrame = make_house_price_data() if name == "house-price" else make_iris_data()
    csv_path = data_dir / "demo" / f"{name}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False)
    click.echo(f"training {name} on {csv_path} ...", err=True)
    train_model(
        session,
        artifacts,
        data_path=csv_path,
        target=target,
        name=name,
        algorithm=algorithm,  # type: ignore[arg-type]
        registered_by=actor,
    )


@click.command()
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
@handle_errors
def demo(cli: CliContext, base_url: str, as_json: bool) -> None:
    """Set up demo models, tenants and keys (safe to re-run; issues fresh keys)."""
    upgrade(cli.engine)
    issued: list[dict[str, str]] = []
    with cli.session() as session:
        for tenant, (model, target, algorithm, _sample) in DEMO_TENANTS.items():
            _ensure_model(
                session, cli.artifacts, cli.settings.data_dir, model, target, algorithm, cli.actor
            )
            try:
                get_tenant(session, tenant)
            except TenantNotFound:
                create_tenant(session, name=tenant)
            assign_model(session, tenant, model_name=model, version=None)
            key = issue_key(
                session,
                cli.settings.secret_key,
                tenant_name=tenant,
                created_by=cli.actor,
                label="demo",
            )
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

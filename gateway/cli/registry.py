"""`predgate models`: register, train, list and show model versions.

The JSON presenters are imported where JSON is printed: they load every resource's tables, and
`models list` needs only the registry's (bench/cli_start.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.context import (
    CliContext,
    echo_json,
    echo_table,
    handle_errors,
    pass_cli,
    progress_steps,
)
from gateway.cli.paging import echo_next_cursor, page_options
from gateway.pages import cut_page, model_position
from models.registry import ModelVersion, get_model, list_models, parse_model_ref, register_model

if TYPE_CHECKING:
    from models.features import FeatureSpec


@click.group()
def models() -> None:
    """The model registry."""


def _registration_details(meta: ModelVersion) -> dict[str, Any]:
    return {
        "version": meta.version,
        "sha256": meta.artifact_sha256,
        "runtime": meta.runtime,
        "task": meta.task,
    }


def _echo_registered(meta: ModelVersion) -> None:
    click.echo(f"registered {meta.ref} ({meta.task}, {len(meta.features)} features)")
    click.echo(f"  artifact sha256 {meta.artifact_sha256} ({meta.artifact_size} bytes)")
    for spec in meta.specs:
        click.echo(f"  feature {spec.name}: {_spec_words(spec)}")
    if meta.runtime == "onnx":
        click.echo(f"  compiled to ONNX: {meta.onnx_note}")
    else:
        click.echo(f"  served with scikit-learn: {meta.onnx_note}")


def _spec_words(spec: FeatureSpec) -> str:
    words = spec.type
    if spec.categories is not None:
        shown = ", ".join(str(c) for c in spec.categories[:8])
        more = f", ... ({len(spec.categories)} in all)" if len(spec.categories) > 8 else ""
        unknown = "others accepted" if spec.unknown_categories else "no others accepted"
        words += f" [{shown}{more}; {unknown}]"
    return words + (", may be missing" if spec.nullable else "")


@models.command("register")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--features", help="Comma-separated feature names, when the model has none.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@pass_cli
@handle_errors
def models_register(
    cli: CliContext, name: str, path: Path, features: str | None, as_json: bool
) -> None:
    """Register a fitted scikit-learn model (a joblib or skops file at PATH) as NAME's next
    version, compiled to ONNX when it can be.

    A joblib file is unpickled, so register only files you trust; uploads over HTTP must be
    skops files.
    """
    feature_list = [f.strip() for f in features.split(",")] if features else None
    with cli.act("model.register", model=name) as act, progress_steps(not as_json) as progress:
        meta = register_model(
            act.session,
            cli.artifacts,
            name=name,
            artifact_path=path,
            registered_by=cli.actor,
            features=feature_list,
            progress=progress,
        )
        act.details.update(_registration_details(meta))
    if as_json:
        from gateway.presenters import model_json

        echo_json(model_json(meta))
    else:
        _echo_registered(meta)


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@page_options("models")
@pass_cli
@handle_errors
def models_list(cli: CliContext, as_json: bool, limit: int, after: str | None) -> None:
    """List registered model versions by name and version, --limit at a time."""
    position = model_position(after) if after is not None else None
    with cli.session() as session:
        fetched = list_models(session, after=position, limit=limit + 1)
    page = cut_page("models", fetched, limit, lambda m: m.ref)
    versions = page.items
    echo_next_cursor(page, "models list")
    if as_json:
        from gateway.presenters import model_json

        echo_json([model_json(m) for m in versions])
        return
    echo_table(
        ["model", "task", "runtime", "features", "sha256", "registered"],
        [
            [m.ref, m.task, m.runtime, len(m.features), m.artifact_sha256[:12], m.registered_at]
            for m in versions
        ],
    )


@models.command("show")
@click.argument("ref")
@pass_cli
@handle_errors
def models_show(cli: CliContext, ref: str) -> None:
    """Show REF, that is NAME (its latest version) or NAME@VERSION, as JSON."""
    from gateway.presenters import model_json

    name, version = parse_model_ref(ref)
    with cli.session() as session:
        echo_json(model_json(get_model(session, name, version)))


@models.command("train")
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The training data: a CSV file with a header row.",
)
@click.option("--target", required=True, help="The column to predict.")
@click.option("--name", required=True, help="The model name to register the result under.")
@click.option(
    "--algorithm",
    type=click.Choice(["random-forest", "linear", "logistic"]),
    default="random-forest",
    show_default=True,
    help="The estimator: linear for regression, logistic for classification, random-forest "
    "for either.",
)
@click.option(
    "--test-size",
    type=click.FloatRange(0.05, 0.5),
    default=0.2,
    show_default=True,
    help="The share of rows held out to compute the test metrics.",
)
@click.option("--grid", is_flag=True, help="Search a small hyper-parameter grid.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@pass_cli
@handle_errors
def models_train(
    cli: CliContext,
    data_path: Path,
    target: str,
    name: str,
    algorithm: str,
    test_size: float,
    grid: bool,
    as_json: bool,
) -> None:
    """Train on a CSV file, report test metrics, and register the result."""
    from models.training import train_model  # pandas and scikit-learn: only when training

    with (
        cli.act("model.register", model=name, trained_from=str(data_path)) as act,
        progress_steps(not as_json) as progress,
    ):
        result = train_model(
            act.session,
            cli.artifacts,
            data_path=data_path,
            target=target,
            name=name,
            algorithm=algorithm,  # type: ignore[arg-type]  # click.Choice guarantees the literal
            test_size=test_size,
            grid=grid,
            registered_by=cli.actor,
            progress=progress,
        )
        act.details.update(_registration_details(result.model_version))
    if as_json:
        from gateway.presenters import model_json

        echo_json({**model_json(result.model_version), "rows_used": result.rows_used})
        return
    _echo_registered(result.model_version)
    for metric, value in result.metrics.items():
        click.echo(f"  {metric}: {value}")

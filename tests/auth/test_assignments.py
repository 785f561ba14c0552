"""Model assignments in the domain: NAME pins the latest version at assignment, NAME@latest
follows each new one, the change summary, and what a dry run or a repeated assignment writes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from auth.assignments import FIRST_MODEL, UNCHANGED, compare_versions
from auth.tenants import LATEST, assign_model, create_tenant, get_tenant, parse_assignment_ref
from db.changes import read_generation
from models.errors import InvalidModelRef
from models.registry import ModelVersion
from tests.conftest import World


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("house-price", ("house-price", None)),
        ("house-price@12", ("house-price", 12)),
        ("house-price@latest", ("house-price", LATEST)),
        ("latest", ("latest", None)),  # a model may be called that
        ("latest@latest", ("latest", LATEST)),
    ],
)
def test_assignment_refs(text: str, parsed: tuple[str, object]) -> None:
    assert parse_assignment_ref(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "@latest", "iris@1@latest", "iris@latest@latest", "Iris@latest", "iris@0"]
)
def test_bad_assignment_refs(text: str) -> None:
    with pytest.raises(InvalidModelRef, match="NAME@latest"):
        parse_assignment_ref(text)


def version(base: ModelVersion, **changed: object) -> ModelVersion:
    return replace(base, **changed)  # type: ignore[arg-type]


def test_changes_between_versions(world: World) -> None:
    house = world.house_price
    assert compare_versions(house, version(house, version=2)) == []
    assert compare_versions(
        house, version(house, features=("rooms", "area", "garage", "location"), runtime="sklearn")
    ) == [
        "features added: garage",
        "features removed: bathrooms",
        "features reordered: area, rooms, location -> rooms, area, location",
        "runtime: onnx -> sklearn",
    ]
    iris = world.iris
    many = tuple(f"label{i}" for i in range(15))
    assert compare_versions(iris, version(iris, classes=many)) == [
        "classes: setosa, versicolor, virginica -> "
        "label0, label1, label2, label3, label4, label5, label6, label7, label8, label9, "
        "... (5 more)"
    ]


def test_what_each_feature_accepts_is_compared(world: World) -> None:
    house = world.house_price
    area, rooms, bathrooms, location = house.specs
    changed = (
        replace(area, nullable=True),
        replace(rooms, type="integer"),
        bathrooms,
        replace(location, type="string", categories=("north", "south"), unknown_categories=False),
    )
    assert compare_versions(house, version(house, specs=changed)) == [
        "feature area: may now be missing",
        "feature rooms: type number -> integer",
        "feature location: type number -> string",
        "feature location: accepted categories changed",
    ]


def test_a_bare_name_pins_the_latest_version_at_assignment(session: Session, world: World) -> None:
    create_tenant(session, name="initech")
    first = assign_model(session, "initech", model_name="iris", version=None)
    assert (first.previous, first.assigned, first.changes) == (None, "iris@1", (FIRST_MODEL,))
    tenant = get_tenant(session, "initech")
    assert tenant.assignment() == ("iris", 1)
    assert tenant.model_ref == "iris@1"

    following = assign_model(session, "initech", model_name="iris", version=LATEST)
    assert following.tenant.assignment() == ("iris", None)
    assert following.tenant.model_ref == "iris@latest"
    moved = assign_model(session, "initech", model_name="house-price", version=1)
    assert moved.previous == "iris@latest"
    assert "task: classification -> regression" in moved.changes


def test_dry_runs_and_repeats_write_nothing(engine: Engine, session: Session, world: World) -> None:
    session.commit()
    before = read_generation(engine)
    preview = assign_model(session, "acme", model_name="iris", version=None, dry_run=True)
    assert preview.dry_run
    assert preview.assigned == "iris@1"
    assert "task: regression -> classification" in preview.changes
    repeat = assign_model(session, "acme", model_name="house-price", version=1)
    assert repeat.unchanged
    assert repeat.changes == (UNCHANGED,)
    session.commit()
    assert read_generation(engine) == before  # no cache is dropped for nothing
    assert get_tenant(session, "acme").model_ref == "house-price@1"

    moved = assign_model(session, "acme", model_name="house-price", version=LATEST)
    assert not moved.unchanged
    session.commit()
    assert read_generation(engine) > before


def test_the_same_version_on_another_channel_says_only_that(session: Session, world: World) -> None:
    pinned = assign_model(session, "acme", model_name="house-price", version=LATEST)
    (following,) = pinned.changes
    assert following.startswith("follows house-price@latest")
    back = assign_model(session, "acme", model_name="house-price", version=None)
    assert back.assigned == "house-price@1"
    (change,) = back.changes  # the same version is served: no NO_CHANGE line
    assert change.startswith("pinned to version 1")

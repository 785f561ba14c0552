"""What moving a tenant from one model version to another changes for its partners, in words an
operator reads before (`--dry-run`) and after an assignment: the task, the features a request
names and what each accepts, the classes an answer names, and the runtime that computes it."""

from __future__ import annotations

from collections.abc import Sequence

from models.registry import ModelVersion

UNCHANGED = "unchanged"
NO_CHANGE = "no change in task, features or classes"
FIRST_MODEL = "no model was served before"
# Enough names to recognise a change; a model with hundreds of features would drown the rest.
NAMES_SHOWN = 10


def describe_assignment(
    before: ModelVersion | None,
    after: ModelVersion,
    *,
    followed_latest: bool,
    follows_latest: bool,
) -> tuple[str, ...]:
    """One line per change from serving `before` (None: nothing) to serving `after`, plus a line
    when the tenant starts or stops following the latest version."""
    lines: list[str] = []
    if before is None:
        lines.append(FIRST_MODEL)
    elif before.ref != after.ref:
        lines.extend(compare_versions(before, after) or [NO_CHANGE])
    if follows_latest and not followed_latest:
        lines.append(
            f"follows {after.name}@latest: each version registered from now on is served without "
            f"another assignment (now version {after.version})"
        )
    elif followed_latest and not follows_latest:
        lines.append(
            f"pinned to version {after.version}: a version registered later is not served until "
            "it is assigned"
        )
    return tuple(lines)


def compare_versions(before: ModelVersion, after: ModelVersion) -> list[str]:
    """What a partner notices when `after` answers instead of `before` (empty: nothing)."""
    lines: list[str] = []
    if before.task != after.task:
        lines.append(f"task: {before.task} -> {after.task}")
    lines.extend(_feature_changes(before.features, after.features))
    lines.extend(_type_changes(before, after))
    if before.classes != after.classes:
        lines.append(f"classes: {_labels(before.classes)} -> {_labels(after.classes)}")
    if before.runtime != after.runtime:
        lines.append(f"runtime: {before.runtime} -> {after.runtime}")
    return lines


def _feature_changes(before: Sequence[str], after: Sequence[str]) -> list[str]:
    kept_before, kept_after = set(before), set(after)
    added = [name for name in after if name not in kept_before]
    removed = [name for name in before if name not in kept_after]
    lines = []
    if added:
        lines.append(f"features added: {_names(added)}")
    if removed:
        lines.append(f"features removed: {_names(removed)}")
    # Requests name their features, so a new order refuses none; it is said because a client
    # that lays out its data in the order `GET /v1/model` lists (a CSV export) sees it.
    common_before = [name for name in before if name in kept_after]
    common_after = [name for name in after if name in kept_before]
    if common_before != common_after:
        lines.append(f"features reordered: {_names(common_before)} -> {_names(common_after)}")
    return lines


def _type_changes(before: ModelVersion, after: ModelVersion) -> list[str]:
    # For a feature both versions take: what a request may send for it (its type, whether it
    # may be missing, which categories are accepted).
    old = {spec.name: spec for spec in before.specs}
    lines = []
    for spec in after.specs:
        was = old.get(spec.name)
        if was is None:
            continue
        if was.type != spec.type:
            lines.append(f"feature {spec.name}: type {was.type} -> {spec.type}")
        if was.nullable != spec.nullable:
            lines.append(
                f"feature {spec.name}: "
                + ("may now be missing" if spec.nullable else "may no longer be missing")
            )
        if (was.categories, was.unknown_categories) != (spec.categories, spec.unknown_categories):
            lines.append(f"feature {spec.name}: accepted categories changed")
    return lines


def _labels(classes: Sequence[object] | None) -> str:
    return "none" if classes is None else _names([str(label) for label in classes])


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    hidden = len(names) - NAMES_SHOWN
    return f"{shown}, ... ({hidden} more)" if hidden > 0 else shown

"""Pages of the log: newest first by default, an opaque cursor that keeps its order, a limit
that says when it cut; time ranges that end before they start are refused; verification and
exports report progress."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

import audit.verify
from audit.export import iter_jsonl, verify_export, write_export
from audit.query import (
    AuditFilter,
    InvalidQuery,
    check_time_range,
    decode_cursor,
    encode_cursor,
    page_records,
)
from audit.recorder import AuditConfig, verify_database
from tests.audit.conftest import fill_chain


def _seqs(page) -> list[int]:
    return [r["seq"] for r in page.records]


def test_pages_walk_newest_first_then_oldest_first(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 7)
    first = page_records(session, AuditFilter(limit=3), count_remaining=True)
    assert (_seqs(first), first.order, first.remaining) == ([7, 6, 5], "newest", 4)
    second = page_records(session, AuditFilter(limit=3), cursor=first.next_cursor)
    assert _seqs(second) == [4, 3, 2]
    last = page_records(session, AuditFilter(limit=3), cursor=second.next_cursor)
    assert (_seqs(last), last.next_cursor) == ([1], None)

    oldest = page_records(session, AuditFilter(limit=4), order="oldest")
    assert _seqs(oldest) == [1, 2, 3, 4]
    rest = page_records(session, AuditFilter(limit=4), cursor=oldest.next_cursor)
    assert (_seqs(rest), rest.next_cursor) == ([5, 6, 7], None)


def test_a_full_last_page_has_no_cursor_and_filters_hold_across_pages(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 6)
    exact = page_records(session, AuditFilter(limit=6), count_remaining=True)
    assert (len(exact.records), exact.next_cursor, exact.remaining) == (6, None, 0)
    one = AuditFilter(request_id="req-4", limit=1)
    page = page_records(session, one)
    assert (_seqs(page), page.next_cursor) == ([5], None)


def test_cursors_are_opaque_and_checked() -> None:
    cursor = encode_cursor(42, "newest")
    assert "42" not in cursor
    assert decode_cursor(cursor) == (42, "newest")
    for bad in ("42", "", "bm90LWEtY3Vyc29y", encode_cursor(1, "newest") + "!!", "////"):
        with pytest.raises(InvalidQuery) as refused:
            decode_cursor(bad)
        assert refused.value.field == "cursor"


def test_a_cursor_of_the_other_order_is_refused(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 3)
    with pytest.raises(InvalidQuery, match="newest-first order"):
        page_records(session, AuditFilter(), order="oldest", cursor=encode_cursor(2, "newest"))


def test_a_range_must_end_after_it_starts() -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    check_time_range(start, end)
    check_time_range(None, end)
    for since, until in ((end, start), (start, start)):
        with pytest.raises(InvalidQuery) as refused:
            check_time_range(since, until)
        assert refused.value.field == "until"


def test_verification_and_export_report_progress(
    session: Session, audit_config: AuditConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit.verify, "PROGRESS_EVERY", 4)
    fill_chain(session, audit_config, 10)
    heard: list[int] = []
    assert verify_database(session, audit_config.public_keys(), progress=heard.append).ok
    assert heard == [4, 8, 10]

    lines = iter_jsonl(session, since=None, until=None, public_keys=audit_config.public_keys())
    written: list[int] = []
    count, _ = write_export(lines, tmp_path / "x.jsonl", progress=written.append)
    assert written[-1] == count

    offline: list[int] = []
    keys = audit_config.public_keys()
    report = verify_export(tmp_path / "x.jsonl", keys, progress=offline.append)
    assert report.ok
    assert offline == [4, 8, 10]

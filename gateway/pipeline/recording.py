"""The audit step: the request's record is committed before its response leaves ("no audit, no
answer"). If it cannot be committed in time the client gets 503 ``audit_unavailable`` instead,
and that 503 is what the record says once it can be written (same event id, so a record that
was in doubt and committed after all is never joined by a second one)."""

from __future__ import annotations

import logging
import os

from flask import Response, request

from audit.chain import Placement
from audit.digests import body_digest, tenant_digest_key
from audit.draft import HttpExchange
from audit.events import AuditEvent
from audit.writer import AuditUnavailable
from gateway.context import RequestContext
from gateway.errors import AUDIT_UNAVAILABLE, problem_response
from gateway.pipeline.bodies import body_already_read
from gateway.pipeline.client_address import client_address

log = logging.getLogger("predgate.audit")
AUDIT_RECORD_HEADER = "Audit-Record"


def record_response(ctx: RequestContext, response: Response) -> Response:
    """Commit this request's record, then return the response to send (503 if it failed)."""
    runtime = ctx.runtime
    if ctx.recorded_status is not None:
        # An administrative act committed it in the transaction of its change.
        _name_record(ctx, response, ctx.recorded_placement)
        return response
    probe = ctx.endpoint is not None and ctx.endpoint.probe
    if probe:
        # Liveness must not depend on the database: probe records are queued, never waited on.
        # A refused probe (a scrape of /metrics from elsewhere) and one made with a credential
        # are always recorded; routine anonymous checks only when configured.
        noted = response.status_code >= 400 or ctx.caller is not None
        if noted or runtime.settings.audit_health_checks:
            runtime.audit_sink.submit(request_event(ctx, response))
        return response
    try:
        placement = runtime.audit_sink.commit(request_event(ctx, response))
    except AuditUnavailable:
        log.error("request %s not answered: its audit record was not committed", ctx.request_id)
        refused = problem_response(503, *AUDIT_UNAVAILABLE)
        runtime.audit_sink.submit(request_event(ctx, refused))
        return refused
    _name_record(ctx, response, placement)
    return response


def _name_record(ctx: RequestContext, response: Response, placement: Placement | None) -> None:
    # Names the record (a header, outside the body the record digests): a partner's handle
    # for GET /v1/receipts/{request_id} and for disputes.
    if placement is not None and ctx.runtime.settings.receipts_enabled:
        response.headers[AUDIT_RECORD_HEADER] = f'seq={placement.seq}, hash="{placement.hash}"'


def request_event(
    ctx: RequestContext, response: Response | None, *, status: int | None = None
) -> AuditEvent:
    """The record of this request answered with `response` (or, for an administrative act
    recorded before its response exists, with `status` and no response digest)."""
    runtime = ctx.runtime
    key = tenant_digest_key(runtime.settings.secret_key, ctx.audit.tenant_id)
    exchange = HttpExchange(
        request_id=ctx.request_id,
        method=request.method,
        route=request.url_rule.rule if request.url_rule is not None else None,
        status=response.status_code if response is not None else status or 200,
        source_ip=client_address(),
        user_agent=request.headers.get("User-Agent"),
        started_at=ctx.started_at,
        duration_ms=ctx.elapsed_ms(),
        request_digest=_request_digest(ctx, key),
        response_digest=None
        if response is None or response.is_streamed
        else body_digest(key, response.get_data()),
    )
    return ctx.audit.to_event(
        exchange, instance_id=runtime.settings.instance_id, process_id=os.getpid()
    )


def _request_digest(ctx: RequestContext, key: bytes) -> str | None:
    # Only a body the request path read (a JSON body it parsed): one refused unread (413, 401,
    # 404...) is not read now, which would defeat the size limit or let a client that sends
    # it slowly hold this thread; an upload (a model file) is not read again.
    body = body_already_read()
    return body_digest(key, body) if body else None

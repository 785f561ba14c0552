"""The request path, in the order it runs. Every request passes `begin_request`, then (for a
route) the steps its `endpoint` declaration asks for, then `finish_request`:

    begin_request      1. request id and clock            (RequestContext, one `g` key)
                       2. body size                       413 on the declared length (a
                                                          chunked body: at step 6)
                       3. no credentials in the URL       400 credentials_in_query
    run_endpoint       4. resolve the caller              401 / 403 (a refused credential is
                                                          counted by address; 429 past the
                                                          limit); an OAuth client's own
                                                          endpoints: 429 up front when its
                                                          address or client id has no failed
                                                          attempt left
                       5. check the route's scope         403 insufficient_scope
                       6. parse the body / query          400 / 413 / 415 / 422
                       7. rate limit, cost = rows         422 batch_too_large / 429 / 503
                       8. the view: one domain call       its answer, or a domain error
    finish_request     9. close the database session      (nothing later touches the database)
                      10. headers                         X-Request-ID, rate-limit headers,
                                                          nosniff, no-store unless set
                      11. commit the audit record         503 audit_unavailable if it cannot
                      12. log one line, count it          (gateway.logs, gateway.metrics)

Errors at any step become problem+json through `gateway.errors` and still pass `finish_request`,
so 404s, 405s and 413s get the same id, headers, record and log line as everything else.
Nothing after step 11 can change the response.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from spectree import Response as Responses

from audit.draft import AUTHENTICATION_FAILED, AUTHORIZATION_DENIED
from auth.errors import AuthError
from auth.principal import Principal
from gateway.context import Endpoint, RequestContext, current_context
from gateway.errors import ApiError
from gateway.extensions import spec
from gateway.logs import log_request
from gateway.metrics import observe_request
from gateway.pipeline.bodies import (
    parse_json_body,
    parse_optional_json_body,
    parse_query_args,
    read_chunked_body,
    refuse_oversized_body,
)
from gateway.pipeline.caller import oauth_client_id, refuse_credentials_in_url, resolve_caller
from gateway.pipeline.client_address import TrustedProxies
from gateway.pipeline.rate_limiting import charge, refuse_spent_failure_budget, response_headers
from gateway.pipeline.recording import record_response
from gateway.pipeline.whole_answers import WholeAnswers
from gateway.runtime import get_runtime

REQUEST_ID_HEADER = "X-Request-ID"
ViewT = TypeVar("ViewT", bound=Callable[..., ResponseReturnValue])


def begin_request() -> None:
    """Steps 1-3, for every request (also those no route matches)."""
    ctx = current_context()  # 1. its id and clock start here
    ctx.runtime.housekeeping.ensure_started()
    ctx.runtime.watcher.refresh()
    ctx.endpoint = _declared_endpoint()
    ctx.audit.event_type = ctx.endpoint.event if ctx.endpoint else None
    settings = ctx.runtime.settings
    upload = ctx.endpoint is not None and ctx.endpoint.upload
    refuse_oversized_body(settings.max_model_upload_bytes if upload else settings.max_body_bytes)
    refuse_credentials_in_url()  # 3.


def run_endpoint(
    spec_: Endpoint, view: Callable[..., ResponseReturnValue], args: dict[str, Any]
) -> ResponseReturnValue:
    """Steps 4-8 for one route."""
    ctx = current_context()
    ctx.audit.event_type = spec_.event
    caller = None
    if spec_.scope is not None:
        caller = authenticate(ctx)  # 4.
    if spec_.client_auth:
        refuse_spent_failure_budget(ctx, oauth_client_id())  # 4. (the view authenticates)
    try:
        if caller is not None:
            require_scope(ctx, caller, spec_.scope or "")  # 5.
        inputs = _parse_inputs(spec_)  # 6.
    except (ApiError, AuthError):
        if spec_.limited:
            charge(ctx, caller, cost=1)  # a refused request spends one unit
        raise
    if spec_.limited:  # 7.
        body = inputs.get("body")
        max_batch = ctx.runtime.settings.max_batch
        charge(ctx, caller, cost=spec_.cost(body, max_batch) if spec_.cost and body else 1)
    answer = view(ctx, **inputs, **args)  # 8.
    if spec_.client_auth and ctx.audit.reason_code == "invalid_client":
        charge(ctx, None, cost=1, client_id=oauth_client_id())
    return answer


def finish_request(response: Response) -> Response:
    """Steps 9-12, for every response."""
    ctx = current_context()
    ctx.close_db()  # 9.
    _add_headers(ctx, response)  # 10.
    sent = record_response(ctx, response)  # 11.
    if sent is not response:
        _add_headers(ctx, sent)
    log_request(ctx, sent)  # 12.
    observe_request(ctx, sent)
    return sent


def endpoint(
    event: str,
    *,
    scope: str | None,
    body: type[BaseModel] | None = None,
    optional_body: bool = False,
    query: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    limited: bool = False,
    cost: Callable[[Any, int], int] | None = None,
    probe: bool = False,
    upload: bool = False,
    client_auth: bool = False,
    responses: Responses | None = None,
    tags: list[str] | None = None,
) -> Callable[[ViewT], ViewT]:
    """Declare a route where it is defined: its audit event type, the scope it needs (None:
    open), what it parses, whether it is rate limited and at what cost, and its documentation.
    The view is called as `view(ctx, body=..., query=..., **path_args)` after steps 4-7."""
    declared = Endpoint(
        event=event,
        scope=scope,
        body=body,
        optional_body=optional_body,
        query=query,
        limited=limited,
        cost=cost,
        probe=probe,
        upload=upload,
        client_auth=client_auth,
    )

    def decorate(view: ViewT) -> ViewT:
        # spectree documents a copy of the view; requests never pass through spectree.
        documented = spec.validate(
            skip_validation=True,
            json=body,
            query=query,
            form=form,
            resp=responses,
            tags=tags or [],
            security={} if scope is None else None,
        )(view)

        @wraps(view)
        def run(**args: Any) -> ResponseReturnValue:
            return run_endpoint(declared, view, args)

        # spectree finds its documentation of the view through __wrapped__; the request path
        # finds the declaration through `endpoint` (and the URL-map tests the scope).
        for name, value in (
            ("__wrapped__", documented),
            ("endpoint", declared),
            ("required_scope", scope),
        ):
            setattr(run, name, value)
        return cast(ViewT, run)

    return decorate


def _declared_endpoint() -> Endpoint | None:
    view = current_app.view_functions.get(request.endpoint or "")
    declared = getattr(view, "endpoint", None)
    return declared if isinstance(declared, Endpoint) else None


def authenticate(ctx: RequestContext) -> Principal:
    """Step 4: the verified caller, or the refusal recorded and counted against the address."""
    try:
        ctx.caller = resolve_caller(ctx.runtime, ctx.audit)
    except AuthError as refused:
        kind = AUTHENTICATION_FAILED if refused.status == 401 else AUTHORIZATION_DENIED
        ctx.audit.refused(kind, refused.code)
        charge(ctx, None, cost=1)  # guessing credentials is slow: counted by address
        raise
    return ctx.caller


def require_scope(ctx: RequestContext, caller: Principal, scope: str) -> None:
    """Step 5: 403 `insufficient_scope` unless the caller's credential holds `scope`."""
    if not caller.has_scope(scope):
        ctx.audit.refused(AUTHORIZATION_DENIED, "insufficient_scope")
        raise ApiError(
            403,
            "insufficient_scope",
            "Forbidden",
            "This credential is not allowed to use this operation.",
        )


def _parse_inputs(spec_: Endpoint) -> dict[str, Any]:
    read_chunked_body()
    inputs: dict[str, Any] = {}
    if spec_.body is not None:
        parse = parse_optional_json_body if spec_.optional_body else parse_json_body
        inputs["body"] = parse(spec_.body)
    if spec_.query is not None:
        inputs["query"] = parse_query_args(spec_.query)
    return inputs


def _add_headers(ctx: RequestContext, response: Response) -> None:
    response.headers[REQUEST_ID_HEADER] = ctx.request_id
    response.headers["X-Content-Type-Options"] = "nosniff"
    if "Cache-Control" not in response.headers:
        # Answers carry keys, secrets, audit records or a partner's predictions: no cache may
        # keep one. A route whose answer is public says so itself (the JWKS).
        response.headers["Cache-Control"] = "no-store"
    for name, value in response_headers(ctx).items():
        response.headers[name] = value


def init_pipeline(app: Flask) -> None:
    """Run begin_request first and finish_request last, for every request; believe forwarding
    headers only from the configured proxies (step 0, before Flask sees the request); hand the
    server each buffered answer in one piece (gateway.pipeline.whole_answers)."""
    settings = get_runtime(app).settings
    app.wsgi_app = WholeAnswers(  # type: ignore[method-assign]
        TrustedProxies(app.wsgi_app, settings.trusted_proxies, hops=settings.trusted_proxy_hops)
    )
    app.before_request_funcs.setdefault(None, []).insert(0, begin_request)
    app.after_request(finish_request)
    app.teardown_request(_close_if_still_open)


def _close_if_still_open(_exc: BaseException | None) -> None:
    # finish_request closed it already; this only covers a response that never reached it.
    current_context().close_db()

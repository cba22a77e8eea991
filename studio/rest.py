"""The labelling REST API: JSON over HTTP on the same server as the UI, under ``/api/v1`` (OpenAPI at
``/api/v1/openapi.json``, interactive docs at ``/api/v1/docs``). See docs/rest_api.md.

- ``GET    /api/v1/comparisons``                 comparisons to label (filters: prompt_set, unlabelled_by, limit)
- ``GET    /api/v1/comparisons/{id}``            the prompt and the answers by position (A, B, ...); strategy and
                                                 model names only once the caller has labelled it (when blind)
- ``POST   /api/v1/comparisons/{id}/votes``      {"choice": "A"|"B"|"tie"|"both_bad"} or {"ranks": [...]}
- ``GET    /api/v1/comparisons/{id}/votes``      the votes on it (annotators: only once they labelled it)
- ``DELETE /api/v1/votes/{id}``                  your own label (admins: anyone's)

Who is calling: with ``--auth``, ``Authorization: Bearer <token>`` (``studio users token NAME``); the label's
annotator is always the token's user. Without ``--auth``, the single local user names themself with an
``annotator`` body field or an ``X-Annotator`` header, as they type their name in the UI.

The same store verbs and checks as the UI. Votes go through :class:`studio.labels.LabelWriter` (group
commit). Errors are JSON ``{"error": "<one message>"}`` with 400, 401, 403 or 404. No gradio here.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures (closures) at runtime
import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storage import StoreError
from storage.store import MAX_COMMENT_CHARS
from studio.access import ADMIN, User
from studio.arena import ArenaColumn, annotator_name  # annotator_name: the UI's rule for a typed name
from studio.context import AppContext
from studio.errors import StudioError
from studio.labels import LabelWriter

PREFIX = "/api/v1"
Choice = Literal["A", "B", "tie", "both_bad"]


def position(i: int) -> str:
    """A screen position as the UI names it: A, B, C, ... (a number past Z)."""
    return chr(ord("A") + i) if i < 26 else str(i + 1)


# -- wire format ----------------------------------------------------------------------------------------------
class VoteIn(BaseModel):
    """A pairwise ``choice`` (two-answer comparisons) or a full ``ranks`` list (1 = best, equal = tie)."""

    model_config = ConfigDict(extra="forbid")
    choice: Choice | None = Field(None, description="A = the first answer is better; tie; both_bad")
    ranks: list[Annotated[int, Field(strict=True)]] | None = Field(
        None,
        description="the rank of each answer by position (1 = best; equal ranks = tie)",
        examples=[[1, 2, 2]],
    )
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)
    annotator: str | None = Field(
        None,
        description="without --auth: your name (or the X-Annotator header); with --auth it must be omitted "
        "or equal to the token's user",
    )


class VoteOut(BaseModel):
    id: int
    comparison_id: int
    annotator: str
    choice: Choice | None
    ranks: list[int] | None
    comment: str | None
    replaced: bool = Field(
        description="true when this replaced the annotator's earlier label on the comparison"
    )


class VoteRow(BaseModel):
    id: int
    comparison_id: int
    annotator: str
    kind: str
    choice: str | None
    ranks: list[int] | None
    comment: str | None
    created_at: datetime


class Answer(BaseModel):
    position: str
    text: str


class ColumnOut(BaseModel):
    position: str
    strategy: str
    variant: str | None
    model: str
    label: str


class ComparisonSummary(BaseModel):
    id: int
    prompt_id: int
    prompt_set: str
    prompt: str
    answers: int
    blind: bool
    labelled: bool = Field(description="whether the caller has labelled it")
    created_at: datetime


class ComparisonOut(BaseModel):
    id: int
    prompt_id: int
    prompt_set: str
    prompt: str
    blind: bool
    created_at: datetime
    answers: list[Answer]
    columns: list[ColumnOut] | None = Field(
        description="strategy and model by position; null while blind and not yet labelled by the caller"
    )
    your_label: VoteRow | None


class ErrorOut(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": what}
    for code, what in [(400, "bad input"), (401, "no valid token"), (403, "not allowed"), (404, "not found")]
}


# -- errors ---------------------------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status(e: Exception) -> int:
    """The HTTP status of a store or studio error: its message says which kind it is."""
    text = str(e)
    if text.startswith("no ") and " with id " in text:
        return 404
    if "only change your own" in text or text.startswith("only an admin"):
        return 403
    return 400


def _validation_message(e: RequestValidationError | ValidationError, *, in_body: bool = False) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())[0 if in_body else 1 :]) or "the request"
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    if first.get("type") == "extra_forbidden":
        return f"unknown field {where!r}"
    return f"{where}: {first.get('msg', 'invalid')}"


def _parse_vote(raw: bytes) -> VoteIn:
    try:
        return VoteIn.model_validate_json(raw)
    except ValidationError as e:
        raise ApiError(400, _validation_message(e, in_body=True)) from None


VOTE_BODY = {"required": True, "content": {"application/json": {"schema": VoteIn.model_json_schema()}}}


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _JSONErrors(APIRoute):
    """Every failure of this router's routes as ``{"error": "<one message>"}``; gradio's routes are untouched."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as e:
                return _error(400, _validation_message(e))
            except ApiError as e:
                return _error(e.status, str(e))
            except (StudioError, StoreError) as e:
                return _error(_status(e), str(e))

        return route


# -- who is calling -------------------------------------------------------------------------------------------
class Tokens:
    """``user_for_token`` with a cache that is dropped whenever the users file changes (a revoked token stops
    working on its next request). Keys are sha256 digests, not the tokens."""

    MAX = 10_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, User | None] = {}
        self._key: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def cached(self, token: str) -> User | None | object:
        """The token's user (or None) if known since the users file last changed, else :data:`UNKNOWN`."""
        from studio.auth import file_key, token_hash  # the users file's own change test and token digest

        try:
            key = file_key(self.path)
        except OSError:
            return None
        with self._lock:
            if key != self._key or len(self._cache) > self.MAX:
                self._cache, self._key = {}, key
            return self._cache.get(token_hash(token), UNKNOWN)

    def user(self, token: str) -> User | None:
        """The token's user, reading the users file when the cache does not know it."""
        from studio.auth import token_hash, user_for_token

        user = self.cached(token)
        if user is UNKNOWN:
            user = user_for_token(self.path, token)
            with self._lock:
                self._cache[token_hash(token)] = user
        return user  # type: ignore[return-value]


UNKNOWN = object()


# The bearer scheme, described in the OpenAPI document; checked by hand (FastAPI's security dependencies cost
# more per request than the rest of a vote).
BEARER = {"bearer": {"type": "http", "scheme": "bearer", "description": "with --auth: a token from "
                     "`studio users token NAME --file users.toml`; without --auth, send X-Annotator instead"}}  # fmt: skip
SECURED: dict[str, Any] = {"security": [{"bearer": []}]}


def _local(request: Request) -> User:
    """No --auth: the single local user (an admin), named per request as they type their name in the UI."""
    return User(request.headers.get("x-annotator", "").strip() or "local", ADMIN)


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "log in: send 'Authorization: Bearer <token>' (make one with `studio users token`)"
        )
    return token.strip()


def _known(user: User | None) -> User:
    if user is None:
        raise ApiError(401, "that token is not valid (revoked, or for another users file)")
    return user


class Api:
    """The routes, bound to one app context (its store) and one label writer."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.tokens = Tokens(Path(ctx.settings.auth_file)) if ctx.settings.auth_file else None
        self.writer: LabelWriter | None = None
        self._comparisons: dict[int, dict[str, Any]] = {}  # comparisons never change once stored
        self._prompts: dict[int, dict[str, Any]] = {}  # nor do prompts
        self.router = self._routes()

    @property
    def store(self) -> Any:
        return self.ctx.store

    def start(self) -> None:
        if self.writer is None:
            self.writer = LabelWriter(self.store)

    def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def caller(self, request: Request) -> User:
        """Who is calling (in a worker thread: a token the cache does not know is looked up in the file)."""
        if self.tokens is None:
            return _local(request)
        return _known(self.tokens.user(_bearer_token(request)))

    async def caller_async(self, request: Request) -> User:
        """Who is calling, without blocking the event loop on a file read."""
        if self.tokens is None:
            return _local(request)
        token = _bearer_token(request)
        user = self.tokens.cached(token)
        if user is UNKNOWN:
            user = await run_in_threadpool(self.tokens.user, token)
        return _known(user)  # type: ignore[arg-type]

    # -- cached reads -----------------------------------------------------------------------------------------
    def comparison(self, cid: int) -> dict[str, Any]:
        cmp = self._comparisons.get(cid)
        if cmp is None:
            cmp = self.store.get_comparison(cid)
            if cmp is None:
                raise ApiError(404, f"no comparison with id {cid}")
            if len(self._comparisons) > 100_000:
                self._comparisons.clear()
            self._comparisons[cid] = cmp
        return cmp

    def prompt(self, pid: int) -> dict[str, Any]:
        p = self._prompts.get(pid)
        if p is None:
            p = self.store.get_prompt(pid) or {"id": pid, "text": "", "prompt_set": ""}
            if len(self._prompts) > 100_000:
                self._prompts.clear()
            self._prompts[pid] = p
        return p

    # -- the routes -------------------------------------------------------------------------------------------
    def _routes(self) -> APIRouter:
        router = APIRouter(prefix=PREFIX, route_class=_JSONErrors, responses=ERRORS, tags=["labels"])

        @router.get("/comparisons", response_model=list[ComparisonSummary], openapi_extra=SECURED)
        def list_comparisons(
            request: Request,
            prompt_set: str | None = None,
            unlabelled_by: str | None = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        ) -> list[dict[str, Any]]:
            """Comparisons in id order, optionally only those of one prompt set and/or those ``unlabelled_by`` an
            annotator has not labelled yet (annotators may ask only about themselves)."""
            user = self.caller(request)
            if unlabelled_by and unlabelled_by != user.name and not user.is_admin:
                raise ApiError(403, f"{user.name} may list only their own unlabelled comparisons")
            in_set = (
                {p["id"] for p in self.store.list_prompts(prompt_set, limit=None)} if prompt_set else None
            )
            done = self._labelled_by(unlabelled_by) if unlabelled_by else set()
            mine = done if unlabelled_by == user.name else self._labelled_by(user.name)
            out = []
            for c in reversed(self.store.list_comparisons(limit=None)):
                if (in_set is not None and c["prompt_id"] not in in_set) or c["id"] in done:
                    continue
                p = self.prompt(c["prompt_id"])
                out.append(
                    c
                    | {
                        "prompt": p["text"],
                        "prompt_set": p["prompt_set"],
                        "answers": len(c["run_ids"]),
                        "labelled": c["id"] in mine,
                    }  # fmt: skip
                )
                if len(out) >= limit:
                    break
            return out

        @router.get("/comparisons/{comparison_id}", response_model=ComparisonOut, openapi_extra=SECURED)
        def get_comparison(comparison_id: int, request: Request) -> dict[str, Any]:
            """The prompt and the answers by position. While the comparison is blind, strategy and model names
            appear only once the caller has labelled it."""
            user = self.caller(request)
            cmp = self.comparison(comparison_id)
            p = self.prompt(cmp["prompt_id"])
            runs = [self.store.get_run(rid) or {} for rid in cmp["run_ids"]]
            label = self.store.get_label(comparison_id, user.name)
            columns = None
            if label is not None or not cmp["blind"]:
                columns = [
                    {"position": position(i), "strategy": r.get("strategy", "?"), "variant": r.get("variant"),
                     "model": r.get("model", "?"),
                     "label": ArenaColumn.of(r).label}
                    for i, r in enumerate(runs)
                ]  # fmt: skip
            return cmp | {
                "prompt": p["text"],
                "prompt_set": p["prompt_set"],
                "answers": [
                    {"position": position(i), "text": r.get("answer", "")} for i, r in enumerate(runs)
                ],
                "columns": columns,
                "your_label": label,
            }

        @router.post(
            "/comparisons/{comparison_id}/votes",
            response_model=VoteOut,
            status_code=201,
            openapi_extra=SECURED | {"requestBody": VOTE_BODY},
        )
        async def vote(comparison_id: int, request: Request) -> JSONResponse:
            """Label a comparison: ``{"choice": ...}`` on two answers, ``{"ranks": [...]}`` on any number.
            A second label by the same annotator replaces the first (``replaced``: true)."""
            user = await self.caller_async(request)  # before reading the body: no login, no other answer
            body = _parse_vote(await request.body())
            who = self._annotator(user, body, request)
            if (body.choice is None) == (body.ranks is None):
                raise ApiError(
                    400, 'send either "choice" (A, B, tie or both_bad) or "ranks" (1 = best), not both'
                )
            if comparison_id not in self._comparisons:
                await run_in_threadpool(self.comparison, comparison_id)
            if self.writer is None:
                raise ApiError(400, "the server is starting or stopping; try again")
            comment = (body.comment or "").strip() or None
            done = self.writer.submit(
                comparison_id, who, choice=body.choice, ranks=body.ranks, comment=comment
            )
            saved = await asyncio.wrap_future(done)
            out = {"id": saved.vote_id, "comparison_id": comparison_id, "annotator": who, "choice": body.choice,
                   "ranks": body.ranks, "comment": comment, "replaced": saved.replaced}  # fmt: skip
            return JSONResponse(out, status_code=201)  # the hot path: no second validation of our own output

        @router.get("/comparisons/{comparison_id}/votes", response_model=list[VoteRow], openapi_extra=SECURED)
        def list_votes(comparison_id: int, request: Request) -> list[dict[str, Any]]:
            """The votes on a comparison, oldest first. An annotator sees the others' votes only once they have
            labelled it themselves (so a blind labeller is not swayed); admins see all."""
            user = self.caller(request)
            self.comparison(comparison_id)
            votes = self.store.list_votes(comparison_id=comparison_id, limit=None)
            if not user.is_admin and not any(v["annotator"] == user.name for v in votes):
                votes = []
            return [v | {"choice": v.get("choice"), "ranks": v.get("ranks")} for v in reversed(votes)]

        @router.delete("/votes/{vote_id}", status_code=204, response_class=Response, openapi_extra=SECURED)
        def delete_vote(vote_id: int, request: Request) -> Response:
            """Delete a label: annotators only their own; admins anyone's (the store's audit keeps who did it)."""
            user = self.caller(request)
            self.store.delete_vote(vote_id, actor=user.name, admin=user.is_admin)
            return Response(status_code=204)

        @router.get("/openapi.json", include_in_schema=False)
        def openapi() -> dict[str, Any]:
            return self.openapi()

        @router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
        def docs() -> HTMLResponse:
            root = self.ctx.settings.root_path.rstrip("/")
            return get_swagger_ui_html(
                openapi_url=f"{root}{PREFIX}/openapi.json", title="Reasoning Studio API"
            )

        return router

    def openapi(self) -> dict[str, Any]:
        root = self.ctx.settings.root_path.rstrip("/")
        spec = get_openapi(
            title="Reasoning Studio labelling API",
            version="1",
            description=(__doc__ or "").split("\n\n")[0],
            routes=self.router.routes,
            servers=[{"url": root}] if root else None,
        )
        spec.setdefault("components", {})["securitySchemes"] = BEARER
        return spec

    def _annotator(self, user: User, body: VoteIn, request: Request) -> str:
        if self.tokens is not None:  # with --auth the label is the token's, whatever the body says
            if body.annotator not in (None, user.name):
                raise ApiError(
                    403, f"you are {user.name}: a label carries its author's name, not {body.annotator!r}"
                )
            return user.name
        return annotator_name(body.annotator or request.headers.get("x-annotator", ""))

    def _labelled_by(self, annotator: str) -> set[int]:
        return {v["comparison_id"] for v in self.store.list_votes(annotator=annotator, limit=None)}


def lifespan(api: Api) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for the app gradio builds: add the REST routes before the first request, and store every
    queued vote before the server stops."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        app.include_router(api.router)
        api.start()
        try:
            yield
        finally:
            await run_in_threadpool(api.stop)

    return run

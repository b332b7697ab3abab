"""The human-feedback web app: a FastAPI JSON API (OpenAPI at /openapi.json) and a static page.

Every endpoint that writes a label (or reads one's queue) needs an annotator token
(`Authorization: Bearer TOKEN`); importing items, exporting labels and the statistics need an
admin token. Model text is only ever sent as JSON and put on the page with `textContent`; the
Content-Security-Policy forbids inline scripts as a second line of defence.
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations of the endpoint
# closures (Annotated[..., Depends(annotator)]) at run time, and a string cannot name a closure.
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from rlhfkit.feedback.importing import items_from_json
from rlhfkit.feedback.labels import TASKS, LabelError
from rlhfkit.feedback.store import (
    Annotator,
    Conflict,
    FeedbackStore,
    NotFound,
    StoreError,
)

STATIC = Path(__file__).parent / "static"

INSTRUCTIONS = {
    "pairwise": "Which response is better?",
    "ranking": "Rank the responses from best to worst.",
    "rating": "How good is this response, from 1 (bad) to 10 (excellent)?",
    "thumbs": "Is this response acceptable?",
    "rewrite": "Correct the response: fix what is wrong and keep what is right.",
    "demonstration": "Write the response you would want the assistant to give.",
}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


# -- request and reply models (these make the OpenAPI description) ----------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PairwiseValue(_Strict):
    preferred: StrictInt | Literal["tie", "both_bad"] = Field(
        description="index (0 or 1, in the item's stored order) of the better response, 'tie' or 'both_bad'")


class RankingValue(_Strict):
    order: list[StrictInt] = Field(description="every response index once, best first")


class RatingValue(_Strict):
    rating: StrictInt = Field(ge=1, le=10, description="1 (bad) to 10 (excellent)")


class ThumbsValue(_Strict):
    thumbs_up: StrictBool


class RewriteValue(_Strict):
    rewrite: str = Field(min_length=1, description="the corrected response")


class DemonstrationValue(_Strict):
    completion: str = Field(min_length=1, description="the response written by the annotator")


LabelValue = Union[PairwiseValue, RankingValue, RatingValue, ThumbsValue, RewriteValue, DemonstrationValue]


class LabelIn(BaseModel):
    submission_id: str = Field(min_length=1, max_length=100,
                               description="chosen by the client, one per answer: resending it is a no-op")
    value: LabelValue
    seconds: float | None = Field(default=None, ge=0, description="time spent on the item")


class Progress(BaseModel):
    annotator: str
    labelled: int
    remaining: int = Field(description="items this annotator could still label")
    total_items: int
    complete_items: int = Field(description="items with at least `overlap` labels")
    overlap: int


class Candidate(BaseModel):
    index: int = Field(description="the response's index in the item (use it in labels)")
    text: str


class ItemOut(BaseModel):
    id: int
    task: Literal["pairwise", "ranking", "rating", "thumbs", "rewrite", "demonstration"]
    instructions: str
    guidelines: str = Field(description="the labelling guidelines of the import the item came in ('' if none)")
    prompt: str
    responses: list[Candidate] = Field(description="in the order to show them (shuffled per annotator)")


class NextOut(BaseModel):
    item: ItemOut | None = Field(description="null when the queue is empty")
    progress: Progress


class LabelOut(BaseModel):
    label_id: int
    item_id: int
    duplicate: bool = Field(description="true if this answer had already been stored")
    progress: Progress


class ItemIn(BaseModel):
    prompt: str
    responses: list[str] = []
    task: Literal["pairwise", "ranking", "rating", "thumbs", "rewrite", "demonstration"] | None = Field(
        default=None, description="default: from the number of responses (0 demonstration, 1 rating, 2 pairwise, 3+ ranking)")
    meta: dict[str, Any] = {}


class ImportIn(BaseModel):
    items: list[ItemIn]
    guidelines: str | None = Field(default=None, max_length=20_000,
                                   description="labelling guidelines shown with these items (replaces earlier ones)")


class ImportOut(BaseModel):
    added: int
    already_present: int


class Me(BaseModel):
    name: str
    admin: bool


def create_app(store: FeedbackStore, overlap: int | None = None) -> FastAPI:
    """The app over `store`. `overlap` (labels wanted per item) is saved in the store."""
    if overlap is not None:
        store.set_overlap(overlap)
    app = FastAPI(
        title="rlhfkit feedback",
        version="1",
        description="Collect human feedback on model responses. Label-writing endpoints need "
        "`Authorization: Bearer <annotator token>` (from `rlhfkit feedback add-annotator`).",
        docs_url=None,  # the interactive docs load their scripts from a CDN; /openapi.json is served
        redoc_url=None,
    )
    annotator, admin = _auth(store)
    _add_security(app)
    _add_labelling_routes(app, store, annotator)
    _add_admin_routes(app, store, admin)
    _add_pages(app)
    return app


def _auth(store: FeedbackStore):
    """FastAPI dependencies: the annotator a bearer token belongs to, and the same for admins only."""
    bearer = HTTPBearer(auto_error=False, description="annotator token")

    def annotator(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Annotator:
        if credentials is None:
            raise HTTPException(401, "missing annotator token (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        who = store.annotator_for_token(credentials.credentials)
        if who is None:
            raise HTTPException(401, "unknown annotator token", headers={"WWW-Authenticate": "Bearer"})
        return who

    def admin(who: Annotated[Annotator, Depends(annotator)]) -> Annotator:
        if not who.is_admin:
            raise HTTPException(403, "this needs an admin token (rlhfkit feedback add-annotator NAME --admin)")
        return who

    return annotator, admin


def _add_security(app: FastAPI) -> None:
    """Security headers on every response; store and label errors as JSON with their status."""
    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(StoreError)
    async def store_error(request: Request, err: StoreError):
        status = 404 if isinstance(err, NotFound) else 409 if isinstance(err, Conflict) else 400
        return JSONResponse({"detail": str(err)}, status_code=status)

    @app.exception_handler(LabelError)
    async def label_error(request: Request, err: LabelError):
        return JSONResponse({"detail": str(err)}, status_code=422)


def _add_labelling_routes(app: FastAPI, store: FeedbackStore, annotator) -> None:
    """What an annotator does: who am I, progress, next item, submit, undo, skip."""
    def item_out(item, who: Annotator) -> ItemOut:
        return ItemOut(id=item.id, task=item.task, instructions=INSTRUCTIONS[item.task], guidelines=item.guidelines,
                       prompt=item.prompt,
                       responses=[Candidate(index=i, text=item.responses[i]) for i in item.display_order(who.id)])

    @app.get("/api/me", response_model=Me, tags=["annotators"])
    def me(who: Annotated[Annotator, Depends(annotator)]):
        return Me(name=who.name, admin=who.is_admin)

    @app.get("/api/progress", response_model=Progress, tags=["annotators"])
    def progress(who: Annotated[Annotator, Depends(annotator)]):
        return store.progress(who)

    @app.get("/api/next", response_model=NextOut, tags=["labelling"],
             summary="The next item in this annotator's queue (held for them for 10 minutes)")
    def next_item(who: Annotated[Annotator, Depends(annotator)]):
        item = store.next_item(who)
        return NextOut(item=None if item is None else item_out(item, who), progress=store.progress(who))

    @app.get("/api/items/{item_id}", response_model=ItemOut, tags=["labelling"])
    def get_item(item_id: int, who: Annotated[Annotator, Depends(annotator)]):
        return item_out(store.get_item(item_id), who)

    @app.post("/api/items/{item_id}/labels", response_model=LabelOut, tags=["labelling"],
              summary="Submit an answer (idempotent for the same submission_id or value)",
              responses={404: {"description": "no such item"}, 409: {"description": "already labelled differently"},
                         422: {"description": "the answer does not fit the item's task"}})
    def submit(item_id: int, body: LabelIn, who: Annotated[Annotator, Depends(annotator)]):
        label_id, duplicate = store.submit(who, item_id, body.submission_id, body.value.model_dump(), body.seconds)
        return LabelOut(label_id=label_id, item_id=item_id, duplicate=duplicate, progress=store.progress(who))

    @app.delete("/api/labels/{label_id}", response_model=NextOut, tags=["labelling"],
                summary="Undo one of your own labels; the item comes back to you (returned here)")
    def retract(label_id: int, who: Annotated[Annotator, Depends(annotator)]):
        item = store.retract(who, label_id)
        return NextOut(item=item_out(item, who), progress=store.progress(who))

    @app.post("/api/items/{item_id}/skip", response_model=Progress, tags=["labelling"])
    def skip(item_id: int, who: Annotated[Annotator, Depends(annotator)]):
        store.skip(who, item_id)
        return store.progress(who)


def _add_admin_routes(app: FastAPI, store: FeedbackStore, admin) -> None:
    """Admin token only: import items, export labels, statistics."""
    @app.post("/api/items", response_model=ImportOut, tags=["admin"], summary="Import items")
    def import_items(body: ImportIn, who: Annotated[Annotator, Depends(admin)]):
        added, present = store.add_items(items_from_json([i.model_dump() for i in body.items]), body.guidelines)
        return ImportOut(added=added, already_present=present)

    @app.get("/api/export", tags=["admin"], summary="Labels as training rows of one record kind")
    def export(who: Annotated[Annotator, Depends(admin)],
               kind: Literal["pairwise", "ranking", "rating", "thumbs", "rewrite", "sft"] = "pairwise",
               aggregate: Literal["each", "mean"] = "each") -> dict[str, Any]:
        rows, report = store.export(kind, aggregate)
        return {"kind": kind, "aggregate": aggregate, "report": report, "rows": rows}

    @app.get("/api/stats", tags=["admin"], summary="Progress per annotator and agreement per task")
    def stats(who: Annotated[Annotator, Depends(admin)]) -> dict[str, Any]:
        return store.stats()


def _add_pages(app: FastAPI) -> None:
    """Health check, the labelling page, the admin page and their static files."""
    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/admin", include_in_schema=False)
    def admin_page():
        return FileResponse(STATIC / "admin.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


class _MaskTokens:
    """A logging filter for the access log: a `token=...` in a logged path (someone typed the
    sign-in link with `?` instead of `#`) is written as `token=***`. Tokens sent the intended
    way, in the Authorization header or after `#`, never reach the log at all."""

    PATTERN = re.compile(r"(token=)[^&#\s]+", re.IGNORECASE)

    def filter(self, record) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8000, overlap: int | None = None,
          access_log: bool = False) -> None:
    """Run the app with uvicorn until interrupted. The socket is bound first, so that a port in
    use fails with OSError before anything changes. `access_log`: one line per request on stderr."""
    import logging
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio turns Nagle's algorithm off only on sockets whose proto is IPPROTO_TCP,
    # and with it on, every keep-alive reply waited ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    store = FeedbackStore(db_path)
    app = create_app(store, overlap or None)
    config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log)
    logging.getLogger("uvicorn.access").addFilter(_MaskTokens())  # after Config, which sets up logging
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        store.close()


__all__ = ["TASKS", "create_app", "serve"]

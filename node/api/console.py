"""The admin console: server-rendered pages at ``/`` of the API port (Jinja2 templates in
``node/api/templates``), behind the API's users and roles (``node.api.auth``).

Pages read the same services as the JSON API; actions (re-queue, re-send, promote,
roll back, shadow) are form POSTs that need an operator, come only from the console's own
pages (Origin checked: basic auth alone would let another site post in the user's name),
and answer with a redirect that says what happened.

No ``from __future__ import annotations`` here: FastAPI reads the annotations at run time.
"""

from collections.abc import Sequence
from dataclasses import asdict, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from node.api.auth import Principal, require
from node.api.deliveries import DeliveryServices, job_deliveries
from node.api.jobs import JobServices, job_view
from node.api.review import ReviewServices
from node.config import Settings
from node.errors import MammoNodeError
from node.ingest.rule_tester import try_study
from node.jobs.states import JobState
from node.net.orthanc_rest import OrthancRest

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters["when"] = lambda at: (
    datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else ""
)
STYLE = (Path(__file__).parent / "static" / "console.css").read_text(encoding="utf-8")
_SECRET = ("password", "token")


class Check(Protocol):
    """One line of ``mammo-node doctor`` (node.runtime.checks)."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def detail(self) -> str: ...


class ConsoleServices(JobServices, ReviewServices, DeliveryServices, Protocol):
    """What the console needs of the running node."""

    settings: Settings
    orthanc: OrthancRest

    @property
    def model_warning(self) -> str | None: ...

    def health(self) -> dict[str, Any]: ...

    def checks(self) -> Sequence[Check]: ...

    def refresh_models(self) -> None: ...


def effective_configuration(settings: Settings) -> dict[str, Any]:
    """The settings as the node runs them, secrets replaced by '***'."""

    def clean(value: Any, key: str = "") -> Any:
        if any(word in key for word in _SECRET):
            return "***" if value else ""
        if is_dataclass(value) and not isinstance(value, type):
            return {f.name: clean(getattr(value, f.name), f.name) for f in fields(value)}
        if isinstance(value, tuple | list):
            return [clean(item) for item in value]
        if isinstance(value, Path):
            return str(value)
        return value

    result: dict[str, Any] = clean(settings)
    return result


async def form_fields(request: Request) -> dict[str, str]:
    """An HTML form's fields (application/x-www-form-urlencoded; no multipart needed)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {key: values[-1] for key, values in parse_qs(body).items()}


FormFields = Annotated[dict[str, str], Depends(form_fields)]


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None or urlsplit(origin).netloc != request.url.netloc:
        raise HTTPException(403, "console actions come from the console's own pages")


def console_router(node: ConsoleServices, authenticated: Any) -> APIRouter:
    """The pages and the actions of the admin console."""
    router = APIRouter(include_in_schema=False)
    Caller = Annotated[Principal, Depends(authenticated)]

    def page(request: Request, name: str, who: Principal, **context: Any) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {
                "who": who,
                "running": node.running_models,
                "model_warning": node.model_warning,
                "message": request.query_params.get("done"),
                "error": request.query_params.get("error"),
                **context,
            },
        )

    def back(path: str, *, done: str = "", error: str = "") -> RedirectResponse:
        query = f"?done={quote(done)}" if done else f"?error={quote(error)}"
        return RedirectResponse(path + query, status_code=303)

    @router.get("/console.css")
    def style() -> Response:
        return Response(STYLE, media_type="text/css")

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request, who: Caller) -> HTMLResponse:
        counts = {state.value: 0 for state in JobState}
        counts.update({state.value: n for state, n in node.store.counts_by_state().items()})
        dead = node.deliveries.recent(None, 1000)
        return page(
            request,
            "overview.html",
            who,
            counts=counts,
            jobs=[job_view(j) for j in node.store.list_jobs(limit=15)],
            dead_letters=sum(1 for d in dead if d.state.value == "dead_letter"),
            health=node.health(),
        )

    @router.get("/jobs", response_class=HTMLResponse)
    def jobs(request: Request, who: Caller, state: JobState | None = None) -> HTMLResponse:
        listed = [job_view(j) for j in node.store.list_jobs(state=state, limit=500)]
        return page(request, "jobs.html", who, jobs=listed, state=state, states=list(JobState))

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job(request: Request, who: Caller, job_id: int) -> HTMLResponse:
        found = node.store.get(job_id)
        return page(
            request,
            "job.html",
            who,
            job=job_view(found),
            history=[asdict(e) for e in node.store.history(job_id)],
            deliveries=job_deliveries(node, job_id)["deliveries"],
            feedback=node.feedback.for_job(job_id),
        )

    @router.post("/jobs/{job_id}/requeue")
    def requeue(request: Request, who: Caller, job_id: int) -> RedirectResponse:
        _same_origin(request)
        try:
            node.store.requeue(job_id, f"re-queued by {who.name} in the console")
        except MammoNodeError as error:
            return back(f"/jobs/{job_id}", error=str(error))
        return back(f"/jobs/{job_id}", done=f"job {job_id} re-queued")

    @router.post("/jobs/{job_id}/deliveries/{destination}/resend")
    def resend(request: Request, who: Caller, job_id: int, destination: str) -> RedirectResponse:
        _same_origin(request)
        try:
            node.deliveries.resend(job_id, destination)
        except MammoNodeError as error:
            return back(f"/jobs/{job_id}", error=str(error))
        return back(f"/jobs/{job_id}", done=f"job {job_id}: re-sending to {destination}")

    @router.get("/deliveries", response_class=HTMLResponse)
    def deliveries(request: Request, who: Caller) -> HTMLResponse:
        rows = [{"job_id": d.job_id, **d.view()} for d in node.deliveries.recent(None, 500)]
        dead = [row for row in rows if row["state"] == "dead_letter"]
        return page(request, "deliveries.html", who, deliveries=rows, dead=dead)

    @router.get("/routing", response_class=HTMLResponse)
    def routing(request: Request, who: Caller, study: str = "") -> HTMLResponse:
        decisions = node.store.routing_decisions(study or None)[-500:][::-1]
        trials = []
        tester_error = None
        if study:
            try:
                trials = [t.view() for t in try_study(node.orthanc, study, node.settings.routing)]
            except MammoNodeError as error:
                tester_error = str(error)
        return page(
            request,
            "routing.html",
            who,
            decisions=decisions,
            study=study,
            trials=trials,
            tester_error=tester_error,
            rules=asdict(node.settings.routing),
        )

    @router.get("/models", response_class=HTMLResponse)
    def models(request: Request, who: Caller) -> HTMLResponse:
        state = node.lifecycle.read() if node.lifecycle.path.exists() else None
        return page(
            request,
            "models.html",
            who,
            models=node.lifecycle.models(),
            history=list(reversed(state.history)) if state else [],
            agreement=node.shadow_results.agreement(),
            feedback=node.feedback.stats(),
        )

    @router.post("/models/promote")
    def promote(request: Request, who: Caller, form: FormFields) -> RedirectResponse:
        _same_origin(request)
        try:
            entry = node.lifecycle.promote(
                form.get("ref", ""), margins=node.settings.promotion, reason=_reason(form, who)
            )
        except MammoNodeError as error:
            return back("/models", error=str(error))
        node.refresh_models()  # in effect now; inferences in flight finish first
        return back("/models", done=f"{entry.model} is live (was {entry.previous})")

    @router.post("/models/rollback")
    def rollback(request: Request, who: Caller, form: FormFields) -> RedirectResponse:
        _same_origin(request)
        try:
            entry = node.lifecycle.rollback(_reason(form, who))
        except MammoNodeError as error:
            return back("/models", error=str(error))
        node.refresh_models()  # in effect now; inferences in flight finish first
        return back("/models", done=f"{entry.model} is live again (was {entry.previous})")

    @router.post("/models/shadow")
    def shadow(request: Request, who: Caller, form: FormFields) -> RedirectResponse:
        _same_origin(request)
        try:
            entry = node.lifecycle.set_shadow(form.get("ref") or None, _reason(form, who))
        except MammoNodeError as error:
            return back("/models", error=str(error))
        node.refresh_models()  # in effect now; inferences in flight finish first
        done = f"{entry.model} runs in shadow" if entry.model else "shadow mode is off"
        return back("/models", done=done)

    @router.get("/health", response_class=HTMLResponse)
    def health(request: Request, who: Caller) -> HTMLResponse:
        return page(request, "health.html", who, checks=node.checks())

    @router.get("/configuration", response_class=HTMLResponse)
    def configuration(request: Request, who: Caller) -> HTMLResponse:
        require("admin", who)
        return page(
            request, "configuration.html", who, config=effective_configuration(node.settings)
        )

    return router


def _reason(form: dict[str, str], who: Principal) -> str:
    """The reason recorded in the history names who acted, and where."""
    return f"{form.get('reason', '').strip() or 'no reason given'} ({who.name}, console)"

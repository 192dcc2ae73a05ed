"""The node's own commands: ``up`` and ``serve`` run it; ``predict``, ``send``, ``synth`` and
``jobs`` are the tools around it (wired into ``node.cli.main`` by ``add_parser``)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from node.cli.settings import NODE_OPTIONS, add_settings_options, settings_from
from node.config import Settings
from node.errors import ConfigError, MammoNodeError

log = logging.getLogger("node.cli")

NOT_FOR_CLINICAL_USE = "Results are NOT FOR CLINICAL USE: the shipped models are trained on synthetic or small public data."


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add up, serve, predict, send, synth and jobs to the CLI's subcommands."""
    up = commands.add_parser(
        "up",
        help="run the embedded node: Orthanc + API + workers (foreground)",
        description="Runs Orthanc (generated config, plugin, DICOMweb), the node's "
        "HTTP API and its workers until Ctrl-C / SIGTERM. Credentials come from "
        "MAMMO_NODE_HTTP_USER / MAMMO_NODE_HTTP_PASSWORD, generated when unset.",
    )
    add_settings_options(up, *NODE_OPTIONS)
    up.add_argument(
        "--demo",
        action="store_true",
        help="send a synthetic 4-view exam once ready and print its results",
    )
    up.set_defaults(handler=cmd_up)

    serve = commands.add_parser(
        "serve", help="run API + workers against an existing Orthanc (MAMMO_NODE_ORTHANC_URL)"
    )
    add_settings_options(serve, *NODE_OPTIONS)
    serve.set_defaults(handler=cmd_serve)

    predict = commands.add_parser(
        "predict",
        help="run the model on image files; one JSON line per file",
        description="Prints {path, score, findings:[{x, y, radius, score}], compared} per file, "
        "pixel coordinates of the input image. Reads DICOM, PNG and PGM. Files are grouped "
        "into exams (DICOM: patient/study, laterality and view from the header; image files: "
        "--manifest), so an exam-aware model compares each breast with the other breast.",
    )
    add_settings_options(predict, "model")
    predict.add_argument("files", nargs="+", type=Path, metavar="FILES")
    predict.add_argument(
        "--manifest",
        type=Path,
        help="CSV with columns path, patient, laterality, view for image files",
    )
    predict.set_defaults(handler=cmd_predict)

    send = commands.add_parser("send", help="C-STORE DICOM files or folders to a DICOM node")
    send.add_argument("files", nargs="+", type=Path, metavar="FILES")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=4242)
    send.add_argument("--called-aet", default="MAMMONODE")
    send.add_argument("--calling-aet", default="MODALITY1")
    send.set_defaults(handler=cmd_send)

    synth = commands.add_parser(
        "synth", help="write a synthetic 4-view screening exam (phantom) as DICOM"
    )
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--seed", type=int, default=1)
    synth.add_argument("--lesions", type=int, default=1, help="masses per image")
    synth.set_defaults(handler=cmd_synth)

    jobs = commands.add_parser(
        "jobs", help="list jobs, or show one job's history (reads the job database)"
    )
    jobs.add_argument("job_id", nargs="?", type=int)
    add_settings_options(jobs, "data_dir")
    jobs.add_argument("--state", help="only jobs in this state")
    jobs.set_defaults(handler=cmd_jobs)


def cmd_up(args: argparse.Namespace) -> int:
    return _run_node(args, embedded=True)


def cmd_serve(args: argparse.Namespace) -> int:
    return _run_node(args, embedded=False)


def _run_node(args: argparse.Namespace, *, embedded: bool) -> int:
    import uvicorn

    from node.api.app import create_api
    from node.observability.logs import configure_logging
    from node.runtime.embedded import EmbeddedOrthanc
    from node.runtime.node import Node

    configured = settings_from(args)
    settings = configured.with_secrets()
    configure_logging(settings.log_level)
    if embedded and not configured.http_password:
        print(
            f"Orthanc HTTP user {settings.http_user!r}, generated password {settings.http_password!r} "
            "(set MAMMO_NODE_HTTP_PASSWORD to choose one)",
            file=sys.stderr,
            flush=True,
        )
    if not embedded and (not configured.http_password or not configured.api_token):
        raise ConfigError(
            "serve needs MAMMO_NODE_HTTP_PASSWORD and MAMMO_NODE_API_TOKEN (those of the Orthanc plugin)"
        )

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    orthanc = EmbeddedOrthanc(settings) if embedded else None
    node = None
    server = None
    server_thread = None
    viewer = None
    try:
        if orthanc is not None:
            orthanc.start()
        node = Node(settings)
        node.start()
        config = uvicorn.Config(
            create_api(node),
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        server_thread = threading.Thread(target=server.run, name="api", daemon=True)
        server_thread.start()
        viewer = _start_viewer(settings) if embedded else None
        print(
            f"mammo-node ready: DICOM {settings.aet}@127.0.0.1:{settings.dicom_port}, "
            f"Orthanc {settings.orthanc_base_url}, API http://{settings.api_host}:{settings.api_port} "
            f"(/healthz, /metrics). {NOT_FOR_CLINICAL_USE}",
            file=sys.stderr,
            flush=True,
        )
        if viewer is not None:
            print(f"OHIF viewer: {viewer.url}", file=sys.stderr, flush=True)
        if getattr(args, "demo", False):
            viewer_url = viewer.url if viewer is not None else None
            threading.Thread(
                target=_demo, args=(settings, node, stop, viewer_url), name="demo", daemon=True
            ).start()
        while not stop.is_set():
            if orthanc is not None and not orthanc.is_running():
                log.error("Orthanc exited; stopping the node")
                return 1
            if not server_thread.is_alive():
                log.error("the API server stopped (port %s in use?)", settings.api_port)
                return 1
            stop.wait(0.5)
        return 0
    finally:
        if viewer is not None:
            viewer.stop()
        if server is not None:
            server.should_exit = True
        if node is not None:
            node.stop(timeout=5.0)
        if server_thread is not None:
            server_thread.join(5.0)
        if orthanc is not None:
            orthanc.stop(timeout=8.0)


def _start_viewer(settings: Settings) -> Any:
    """The OHIF viewer beside the embedded Orthanc, when `make viewer` installed it."""
    from node.runtime.viewer import ViewerNotInstalled, ViewerServer

    if not settings.viewer_port:
        return None
    try:
        return ViewerServer(
            settings.orthanc_base_url,
            (settings.http_user, settings.http_password),
            port=settings.viewer_port,
        ).start()
    except ViewerNotInstalled as error:
        log.info("no OHIF viewer: %s", error)
    except OSError as error:
        log.warning("OHIF viewer not started on port %s: %s", settings.viewer_port, error)
    return None


def _demo(settings: Settings, node: Any, stop: threading.Event, viewer_url: str | None) -> None:
    """Send a synthetic exam as MODALITY1, wait for its results, print where to see them."""
    from node.domain import ExamRequest, ExamSummary
    from node.jobs.states import JobState
    from node.net.dimse import Peer, send
    from node.synthetic.dicom import synthetic_exam

    deadline = time.monotonic() + 60
    while not node.health()["ok"] and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.5)
    datasets = [ds for ds, _truth in synthetic_exam(seed=2026, lesions_per_image=1)]
    calling = settings.modalities[0].aet if settings.modalities else "MODALITY1"
    try:
        outcome = send(Peer("127.0.0.1", settings.dicom_port, settings.aet, calling), datasets)
    except MammoNodeError as error:
        print(f"demo: could not send the exam: {error}", file=sys.stderr, flush=True)
        return
    study_uid = str(datasets[0].StudyInstanceUID)
    print(
        f"demo: sent {outcome.sent} synthetic images (study {study_uid}); waiting for AI results...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < 180:
        jobs = node.store.list_jobs(study_instance_uid=study_uid)
        final = [j for j in jobs if j.state in (JobState.DONE, JobState.FAILED)]
        if final:
            job = final[0]
            if job.state is JobState.FAILED:
                print(f"demo: job {job.id} failed: {job.last_error}", file=sys.stderr, flush=True)
                return
            result = ExamSummary.from_json(job.result)
            request = ExamRequest.from_json(job.payload)
            base = settings.orthanc_base_url
            print(
                json.dumps(
                    {
                        "job": job.id,
                        "seconds": round(time.monotonic() - started, 1),
                        "exam_score": result.score,
                        "recall": result.recall,
                        "outputs": [o.Modality for o in result.outputs],
                    }
                ),
                flush=True,
            )
            print(
                f"demo: results are in Orthanc: {base}/app/explorer.html#study?uuid={request.orthanc_study_id}\n"
                f"      DICOMweb: {base}/dicom-web/studies/{study_uid}  job: http://{settings.api_host}:{settings.api_port}/api/v1/jobs/{job.id}\n"
                f"      metrics: http://{settings.api_host}:{settings.api_port}/metrics   (Ctrl-C stops the node)"
                + (
                    f"\n      OHIF viewer: {viewer_url}/viewer?StudyInstanceUIDs={study_uid}"
                    if viewer_url
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )
            return
        time.sleep(0.5)
    print("demo: no result within 180 s; see `mammo-node jobs`", file=sys.stderr, flush=True)


def cmd_predict(args: argparse.Namespace) -> int:
    from node.inference.predict import predict_paths, read_manifest_csv
    from node.models.lifecycle import live_model_ref
    from node.models.registry import load_model

    settings = settings_from(args)  # --model overrides the setting
    model = load_model(settings.models_dir, live_model_ref(settings.models_dir, settings.model))
    manifest = read_manifest_csv(args.manifest) if args.manifest else None
    failures = 0
    for row in predict_paths(args.files, model, manifest):
        failures += "error" in row
        print(json.dumps(row), flush=True)
    return 1 if failures else 0


def cmd_send(args: argparse.Namespace) -> int:
    from node.net.dimse import Peer, read_files, send

    datasets = read_files(args.files)
    outcome = send(Peer(args.host, args.port, args.called_aet, args.calling_aet), datasets)
    print(
        json.dumps(
            {
                "sent": outcome.sent,
                "failed": [
                    {"SOPInstanceUID": u, "status": f"0x{s:04X}"} for u, s in outcome.failed
                ],
            }
        )
    )
    return 1 if outcome.failed else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from node.synthetic.dicom import write_exam

    for path in write_exam(args.out, args.seed, lesions_per_image=args.lesions):
        print(path)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from node.db import create_engine
    from node.domain import ExamSummary
    from node.jobs.states import JobState
    from node.jobs.store import JobStore

    settings = settings_from(args)
    store = JobStore(create_engine(settings.effective_database_url))
    if args.job_id is not None:
        job = store.get(args.job_id)
        view = asdict(job) | {
            "state": job.state.value,
            "history": [asdict(e) for e in store.history(job.id)],
        }
        print(json.dumps(view, indent=2, default=str))
        return 0
    state = JobState(args.state) if args.state else None
    for job in store.list_jobs(state=state):
        score = ExamSummary.from_json(job.result).score if job.result else None
        print(
            f"{job.id:6d}  {job.state.value:10s}  attempts={job.attempts}  score={score}  "
            f"{job.study_instance_uid}  {job.last_error or ''}"
        )
    return 0

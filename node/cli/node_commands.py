"""The node's own commands: ``up`` and ``serve`` run it; ``predict``, ``send`` and ``synth``
are the tools around it (wired into ``node.cli.main`` by ``add_parser``; ``jobs`` is in
``node.cli.jobs``)."""

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

from node.cli.settings import (
    NODE_OPTIONS,
    add_settings_options,
    node_settings_from,
    settings_from,
)
from node.config import Settings
from node.errors import ConfigError, MammoNodeError
from node.jobs.states import JobState

log = logging.getLogger("node.cli")

NOT_FOR_CLINICAL_USE = "Results are NOT FOR CLINICAL USE: the shipped models are trained on synthetic or small public data."


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add up, serve, predict, send and synth to the CLI's subcommands."""
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
        "serve",
        help="run API + workers against an existing Orthanc (MAMMO_NODE_ORTHANC_URL)",
        description="Runs the node's HTTP API and its workers beside an Orthanc you run "
        "yourself, with the plugin installed: its URL is the setting `orthanc_url` "
        "(MAMMO_NODE_ORTHANC_URL, default http://127.0.0.1:<http_port>); MAMMO_NODE_HTTP_USER "
        "/ MAMMO_NODE_HTTP_PASSWORD are its credentials and MAMMO_NODE_API_TOKEN the plugin's "
        "token. Like `up`, it writes node.json into the data folder so the other commands "
        "find it. On a PostgreSQL job store several serve processes may share one data "
        "folder (the Helm chart's pods share its volume, the result outbox).",
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
    predict.add_argument(
        "files", nargs="+", type=Path, metavar="FILES", help="DICOM, PNG or PGM image files"
    )
    predict.add_argument(
        "--manifest",
        type=Path,
        help="CSV with columns path, patient, laterality, view for image files",
    )
    predict.set_defaults(handler=cmd_predict)

    send = commands.add_parser(
        "send",
        help="C-STORE DICOM files or folders to a DICOM node",
        description="Sends every DICOM file (folders recursively) in one association and "
        "prints {sent, failed}. A refused or silent peer ends the command within --timeout "
        "seconds with the reason.",
    )
    send.add_argument("files", nargs="+", type=Path, metavar="FILES", help="DICOM files or folders")
    send.add_argument("--host", default="127.0.0.1", help="the receiver's host")
    send.add_argument(
        "--port", type=int, help="the receiver's DICOM port (default: the running node's)"
    )
    send.add_argument("--called-aet", help="the receiver's AE title (default: the running node's)")
    send.add_argument(
        "--calling-aet",
        default="MODALITY1",
        help="the AE title to send as (the node accepts its configured modalities only)",
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the association and for each answer",
    )
    add_settings_options(send, "data_dir")
    send.set_defaults(handler=cmd_send)

    synth = commands.add_parser(
        "synth", help="write a synthetic 4-view screening exam (phantom) as DICOM"
    )
    synth.add_argument("--out", type=Path, required=True, help="folder for the DICOM files")
    synth.add_argument("--seed", type=int, default=1, help="random seed of the phantom")
    synth.add_argument("--lesions", type=int, default=1, help="masses per image")
    synth.add_argument(
        "--modality", choices=["MG", "MR"], default="MG", help="MR: a breast DCE-MRI study"
    )
    synth.set_defaults(handler=cmd_synth)


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
    from node.runtime.runfile import remove_runtime_file, write_runtime_file

    configured = node_settings_from(args, embedded=embedded)
    settings = configured.with_secrets()
    configure_logging(settings.log_level, debug=getattr(args, "debug", False))
    if embedded and not configured.http_password:
        print(
            f"Orthanc HTTP user {settings.http_user!r}, generated password {settings.http_password!r} "
            "(set MAMMO_NODE_HTTP_PASSWORD to choose one)",
            file=sys.stderr,
            flush=True,
        )
    if not configured.console_users:
        user = settings.console_users[0]
        print(
            f"Admin console user {user.name!r}, generated password {user.password!r} "
            "(set MAMMO_NODE_CONSOLE_USERS to choose the console's users and roles)",
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
        write_runtime_file(settings, viewer.url if viewer is not None else None)
        print(
            f"mammo-node ready: DICOM {settings.aet}@127.0.0.1:{settings.dicom_port}, "
            f"Orthanc {settings.orthanc_base_url}, API http://{settings.api_host}:{settings.api_port} "
            f"(/healthz, /metrics), admin console http://{settings.api_host}:{settings.api_port}/. "
            f"{NOT_FOR_CLINICAL_USE}",
            file=sys.stderr,
            flush=True,
        )
        if node.model_warning:
            print(f"mammo-node: WARNING: {node.model_warning}", file=sys.stderr, flush=True)
        if viewer is not None:
            print(f"OHIF viewer: {viewer.url}", file=sys.stderr, flush=True)
        if getattr(args, "demo", False):
            viewer_url = viewer.url if viewer is not None else None
            threading.Thread(
                target=_demo, args=(settings, node, stop, viewer_url), name="demo", daemon=True
            ).start()
        while not stop.is_set():
            if orthanc is not None:
                orthanc.keep_alive(node.bus)  # restarted with backoff when it exits
            if not server_thread.is_alive():
                log.error("the API server stopped (port %s in use?)", settings.api_port)
                return 1
            stop.wait(0.5)
        return 0
    finally:
        remove_runtime_file(settings.data_dir)
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
    from node.models.trained_on import synthetic_only_warning

    settings = settings_from(args)  # --model overrides the setting
    model = load_model(settings.models_dir, live_model_ref(settings.models_dir, settings.model))
    warning = synthetic_only_warning(model.spec)
    if warning:
        print(f"mammo-node: WARNING: {warning}", file=sys.stderr, flush=True)
    manifest = read_manifest_csv(args.manifest) if args.manifest else None
    failures = 0
    for row in predict_paths(args.files, model, manifest):
        failures += "error" in row
        print(json.dumps(row), flush=True)
    if failures:
        print(
            f"mammo-node: {failures} of {len(args.files)} files could not be analysed",
            file=sys.stderr,
        )
    return 1 if failures else 0


def cmd_send(args: argparse.Namespace) -> int:
    from node.net.dimse import Peer, read_files, send

    datasets = read_files(args.files)
    settings = settings_from(args)  # the running node's DICOM port and AE title
    peer = Peer(
        args.host,
        args.port or settings.dicom_port,
        args.called_aet or settings.aet,
        args.calling_aet,
    )
    print(f"sending {len(datasets)} instances to {peer}...", file=sys.stderr, flush=True)
    outcome = send(peer, datasets, timeout=args.timeout)
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
    from node.mri.synthetic_dicom import write_dce_exam
    from node.synthetic.dicom import write_exam

    if args.modality == "MR":
        paths = write_dce_exam(args.out, args.seed)
    else:
        paths = write_exam(args.out, args.seed, lesions_per_image=args.lesions)
    for path in paths:
        print(path)
    return 0

"""Destinations with real peers on 127.0.0.1: a pynetdicom Storage SCP as a second PACS,
STOW-RS into a real Orthanc, and a destination that is down (a closed port)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import yaml
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from node.cli import main
from node.config import Destination, load_settings
from node.db import create_engine
from node.delivery.echo import echo_destination
from node.delivery.publishers import publisher_for
from node.delivery.selection import KNOWN_OUTPUT_KINDS, selected_kinds, union_of_kinds
from node.delivery.service import Deliveries
from node.delivery.states import DeliveryState
from node.errors import ConfigError, FinalError, PeerUnavailable
from node.jobs.store import JobStore
from node.synthetic.dicom import synthetic_exam
from node.writers.outputs import DEFAULT_OUTPUT_KINDS, Output
from tests.harness import (
    NodeProcess,
    OrthancClient,
    free_port,
    make_settings,
    needs_orthanc,
    orthanc_destination,
    start_orthanc,
    wait_for,
)

MG_AND_RESULTS = [
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography For Presentation
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.50",  # Mammography CAD SR
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
]


class StorageSCP:
    """A second PACS: a real pynetdicom Storage SCP that keeps what it receives."""

    def __init__(self, aet: str = "PACS2") -> None:
        self.aet = aet
        self.port = free_port()
        self.received: list[pydicom.Dataset] = []
        self._lock = threading.Lock()
        ae = AE(ae_title=aet)
        ae.require_called_aet = True  # a wrong called AE title is rejected, as PACS do
        for sop_class in MG_AND_RESULTS:
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self.server: ThreadedAssociationServer = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )

    def _on_store(self, event: evt.Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self._lock:
            self.received.append(dataset)
        return 0x0000

    def uids(self) -> set[str]:
        with self._lock:
            return {str(ds.SOPInstanceUID) for ds in self.received}

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def scp() -> Iterator[StorageSCP]:
    server = StorageSCP()
    yield server
    server.stop()


def dimse(name: str, port: int, **extra: object) -> Destination:
    return Destination(
        name=name, kind="dimse", host="127.0.0.1", port=port, called_aet="PACS2", **extra
    )  # type: ignore[arg-type]


def outputs_of(seed: int) -> list[Output]:
    """Stand-in result objects: the synthetic exam's images as 'seg' outputs."""
    return [Output("seg", ds) for ds, _ in synthetic_exam(seed, rows=96, columns=64)]


# -- config ---------------------------------------------------------------------------------


def test_destinations_from_yaml_with_output_selection(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "destinations": [
                    {"name": "web", "url": "https://pacs.example/dicom-web", "outputs": ["all"]},
                    {
                        "name": "dimse",
                        "kind": "dimse",
                        "host": "10.0.0.5",
                        "port": "11112",
                        "called_aet": "PACS",
                        "outputs": ["tid1500"],
                        "max_attempts": 3,
                    },
                ]
            }
        )
    )
    settings = load_settings(config, environ={})
    web, pacs = settings.effective_destinations
    assert selected_kinds(web) == KNOWN_OUTPUT_KINDS  # mammography and MRI kinds
    assert selected_kinds(pacs) == ("tid1500",) and pacs.port == 11112 and pacs.max_attempts == 3
    assert union_of_kinds([pacs]) == ("tid1500",)
    assert selected_kinds(Destination(name="d", url="http://x")) == DEFAULT_OUTPUT_KINDS


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"name": "x", "kind": "dimse", "host": "h"}, "needs host and called_aet"),
        ({"name": "x", "kind": "ftp", "url": "http://x"}, "kind must be one of"),
        ({"name": "x", "url": "ftp://x"}, "url must be http"),
        ({"name": "x", "url": "http://x", "max_attempts": 0}, "max_attempts"),
        (
            {"name": "x", "kind": "dimse", "host": "h", "called_aet": "A", "tls_ca_file": "/no"},
            "does not exist",
        ),
    ],
)
def test_bad_destinations_are_refused_at_start(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Destination(**values)  # type: ignore[arg-type]


def test_unknown_output_kind_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown output kinds nope"):
        selected_kinds(Destination(name="d", url="http://x", outputs=("nope",)))


# -- deliveries against a real Storage SCP and a closed port --------------------------------


def test_down_destination_is_dead_lettered_and_the_healthy_one_is_not_resent(
    tmp_path: Path, scp: StorageSCP
) -> None:
    store = JobStore(create_engine(f"sqlite:///{tmp_path / 'jobs.sqlite'}"))
    job, _ = store.create_job(
        idempotency_key="k", study_instance_uid="1.2.3", model_ref="m/1", payload={}, max_attempts=1
    )
    closed = free_port()
    deliveries = Deliveries(
        store.engine,
        [
            publisher_for(dimse("pacs2", scp.port)),
            publisher_for(dimse("down", closed, max_attempts=3, backoff_seconds=0.0)),
        ],
        tmp_path / "outbox",
    )
    outputs = outputs_of(seed=301)
    first = {d.destination: d for d in deliveries.deliver_job(job.id, outputs)}
    assert first["pacs2"].state is DeliveryState.DELIVERED and first["pacs2"].sent == 4
    assert scp.uids() == {str(o.dataset.SOPInstanceUID) for o in outputs}
    assert first["down"].state is DeliveryState.RETRY
    assert "connection refused" in (first["down"].last_error or "")

    for _ in range(5):  # bounded: the retry loop, pass by pass
        deliveries.run_due()
    down = deliveries.get(job.id, "down")
    assert down.state is DeliveryState.DEAD_LETTER and down.attempts == 3
    assert "dead-lettered after 3 attempts" in (down.last_error or "")
    assert len(scp.received) == 4  # the healthy destination got everything exactly once
    assert deliveries.counts()[("down", "dead_letter")] == 1
    assert (tmp_path / "outbox" / f"job-{job.id}").is_dir()  # kept for a re-send

    # The job runs again (a crashed worker): nothing is sent twice.
    deliveries.deliver_job(job.id, outputs)
    assert len(scp.received) == 4
    assert deliveries.get(job.id, "down").state is DeliveryState.DEAD_LETTER

    # An administrator re-sends the dead letter once the peer is back (here: to the SCP).
    revived = Deliveries(
        store.engine, [publisher_for(dimse("down", scp.port))], tmp_path / "outbox"
    )
    assert revived.resend(job.id, "down").state is DeliveryState.RETRY
    revived.run_due()
    assert revived.get(job.id, "down").state is DeliveryState.DELIVERED
    assert len(scp.received) == 8


def test_echo_names_the_cause(scp: StorageSCP) -> None:
    assert "C-ECHO" in echo_destination(dimse("pacs2", scp.port))
    with pytest.raises(PeerUnavailable, match="connection refused"):
        echo_destination(dimse("down", free_port()))
    with pytest.raises(PeerUnavailable, match="rejected the association"):
        echo_destination(
            Destination(
                name="wrong",
                kind="dimse",
                host="127.0.0.1",
                port=scp.port,
                called_aet="NOT-PACS2",
            )
        )
    with pytest.raises(PeerUnavailable, match="connection refused"):
        echo_destination(Destination(name="web", url=f"http://127.0.0.1:{free_port()}/dicom-web"))


def test_echo_command_lists_known_destinations(
    tmp_path: Path, scp: StorageSCP, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "destinations": [
                    {
                        "name": "pacs2",
                        "kind": "dimse",
                        "host": "127.0.0.1",
                        "port": scp.port,
                        "called_aet": "PACS2",
                    },
                    {
                        "name": "down",
                        "kind": "dimse",
                        "host": "127.0.0.1",
                        "port": free_port(),
                        "called_aet": "PACS2",
                    },
                ]
            }
        )
    )
    assert main(["echo", "pacs2", "--config", str(config)]) == 0
    assert "C-ECHO to PACS2@127.0.0.1" in capsys.readouterr().out
    assert main(["echo", "down", "--config", str(config)]) == 1
    assert "connection refused" in capsys.readouterr().err
    assert main(["echo", "nowhere", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown destination 'nowhere'" in err and "pacs2, down" in err


# -- the node end to end: STOW-RS into Orthanc, C-STORE to a second PACS, one down ----------


@pytest.mark.slow
@needs_orthanc
def test_node_delivers_to_each_destination_and_dead_letters_the_down_one(
    tmp_path: Path, scp: StorageSCP
) -> None:
    settings = make_settings(tmp_path)
    orthanc_dest = orthanc_destination(settings)
    destinations = [
        orthanc_dest,
        {
            "name": "pacs2",
            "kind": "dimse",
            "host": "127.0.0.1",
            "port": scp.port,
            "called_aet": "PACS2",
            "outputs": ["tid1500"],
        },
        {
            "name": "down",
            "kind": "dimse",
            "host": "127.0.0.1",
            "port": free_port(),
            "called_aet": "PACS2",
            "max_attempts": 2,
            "backoff_seconds": 0.2,
        },
    ]
    orthanc = start_orthanc(settings)
    node = NodeProcess(
        settings, extra_env={"MAMMO_NODE_DESTINATIONS": yaml.safe_dump(destinations)}
    )
    try:
        node.start()
        datasets = [ds for ds, _ in synthetic_exam(302)]
        study_uid = str(datasets[0].StudyInstanceUID)
        from node.net.dimse import Peer, send

        send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
        job = node.wait_final(study_uid)
        assert job["state"] == "done", job["last_error"]

        def dead_lettered() -> dict[str, object] | None:
            view: dict[str, object] = node.get(f"/api/v1/jobs/{job['id']}")
            return view if view["delivery"] == "dead_letter" else None

        view = wait_for("the down destination to be dead-lettered", dead_lettered, timeout=30)
        by_name = {d["destination"]: d for d in view["deliveries"]}  # type: ignore[attr-defined]
        assert by_name["orthanc"]["state"] == "delivered"
        assert by_name["pacs2"]["state"] == "delivered" and by_name["pacs2"]["attempts"] == 1
        assert by_name["down"]["state"] == "dead_letter" and by_name["down"]["attempts"] == 2
        # The second PACS got exactly the SR it asked for, once; Orthanc got SEG and SR.
        sr_uids = {o["SOPInstanceUID"] for o in job["result"]["outputs"] if o["kind"] == "tid1500"}
        assert scp.uids() == sr_uids and len(scp.received) == 1
        assert set(OrthancClient(settings).outputs(study_uid)) >= {"SR", "SEG"}
        metrics = node.get_text("/metrics")
        assert 'mammo_node_deliveries{destination="down",state="dead_letter"} 1.0' in metrics
        dead = node.get("/api/v1/deliveries", state="dead_letter")
        assert [(d["job_id"], d["destination"]) for d in dead] == [(job["id"], "down")]
        # DICOMweb echo against the real Orthanc, with good and with wrong credentials.
        assert "QIDO-RS" in echo_destination(Destination(**orthanc_dest))  # type: ignore[arg-type]
        with pytest.raises(FinalError, match="authentication failed"):
            echo_destination(Destination(**{**orthanc_dest, "password": "wrong"}))  # type: ignore[arg-type]
    finally:
        node.stop()
        orthanc.stop()

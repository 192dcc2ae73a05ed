"""Patient data and injection in logs, end to end: an exam whose names carry distinctive
identifiers, newlines, ANSI escapes, NUL, a forged JSON log line and 10,000 characters goes
through a real node; no byte of its output or of Orthanc's log holds an identifier, and
every line the node logged is one JSON object of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from tests.harness import NodeProcess, make_settings, needs_orthanc, start_orthanc

pytestmark = [pytest.mark.slow, needs_orthanc]

FORGED = '{"level":"error","msg":"forged by the sender"}'
PATIENT_NAME = "Zqxjkvw"  # one component: highdicom warns, quoting it
PATIENT_ID = "PID7734918"
REFERRING = "Wvbnmq\r\n" + FORGED + "\n\x1b[31mRED\x1b[0m\x00" + "R" * 10_000
IDENTIFIERS = [PATIENT_NAME, PATIENT_ID, "Wvbnmq", "forged by the sender", "R" * 64, "\x1b[31m"]
# The human start-up lines of ``serve``/``up`` (node.cli): the banner, generated credentials
# shown to the operator once, the model warning; every other line is a log record.
BANNERS = (
    "mammo-node ready:",
    "Admin console user ",
    "Orthanc HTTP user ",
    "mammo-node: WARNING:",
    "OHIF viewer:",
)


def test_no_identifier_reaches_a_log_and_every_line_is_one_json_object(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        datasets = [ds for ds, _truth in synthetic_exam(117)]
        for dataset in datasets:
            dataset.PatientName = PATIENT_NAME
            dataset.PatientID = PATIENT_ID
            dataset.ReferringPhysicianName = REFERRING
        study_uid = str(datasets[0].StudyInstanceUID)
        # A hostile sender does not validate what it writes.
        pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
        send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
        job = node.wait_final(study_uid)
        assert job["state"] in ("done", "failed")
    finally:
        node.stop()
        orthanc.stop()

    for log in (node.log_path, orthanc.log_path):
        content = log.read_bytes()
        for identifier in IDENTIFIERS:
            assert identifier.encode() not in content, (log.name, identifier)
    lines = node.log_path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if not line.startswith(BANNERS)]
    assert records and all(set(r) >= {"ts", "level", "logger", "msg"} for r in records)
    for banner in BANNERS:  # each human line once, never repeated per exam
        assert sum(line.startswith(banner) for line in lines) <= 1, banner

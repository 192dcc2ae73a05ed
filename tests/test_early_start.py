"""An exam with every expected view starts as its last image arrives, not after Orthanc's
StableAge; an incomplete one still waits for it. Real parts: Orthanc + plugin, C-STORE and
the node process, with a StableAge far longer than the exam takes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from tests.harness import NodeProcess, OrthancClient, make_settings, needs_orthanc, start_orthanc

pytestmark = [pytest.mark.slow, needs_orthanc]

STABLE_AGE = 600  # seconds: no study of this test becomes stable while it runs


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    settings = make_settings(tmp_path_factory.mktemp("node"), stable_age=STABLE_AGE)
    orthanc = start_orthanc(settings)
    process = NodeProcess(settings)
    try:
        process.start()
        yield process
    finally:
        process.stop()
        orthanc.stop()


def test_a_complete_exam_is_done_before_its_study_is_stable(node: NodeProcess) -> None:
    settings = node.settings
    peer = Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1")
    incomplete = [ds for ds, _ in synthetic_exam(311)][:3]
    complete = [ds for ds, _ in synthetic_exam(312)]
    assert send(peer, incomplete).sent == 3
    assert send(peer, complete).sent == 4

    job = node.wait_final(str(complete[0].StudyInstanceUID), timeout=STABLE_AGE / 4)
    assert job["state"] == "done", job["last_error"]
    assert len(job["result"]["images"]) == 4 and job["result"]["complete"] is True
    assert not OrthancClient(settings).has_stable_study()  # it did not wait for StableAge
    # Three views are not an exam: that study waits for its stable wait, no job yet.
    assert node.jobs(str(incomplete[0].StudyInstanceUID)) == []

"""Hostile input never stalls the node and never yields a result (issue 10, defects 1, 5, 6, 7).

Broken inputs come from node.synthetic.hostile (the same generator as bench/fuzz.py); each is
run through the real pipeline and worker (in-memory peers, a real job store) and must end in
one attempt with a reason: bombs refused before decoding, a stage past its limit abandoned,
malformed headers final (never retried), invalid UIDs never in a URL or a result.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from node.config import (
    MG_FOR_PRESENTATION,
    MG_FOR_PROCESSING,
    ConfigError,
    Destination,
    RoutingRules,
    load_settings,
)
from node.dicom.limits import check_pixel_budget
from node.dicom.pixels import presentation_pixels
from node.domain import ExamRequest, ImagePrediction, InstanceRef
from node.errors import InvalidInput, StageTimedOut
from node.ingest.routing import route
from node.jobs.pipeline import run_bounded
from node.jobs.states import JobState
from node.jobs.store import Job
from node.jobs.worker import Worker, WorkerOptions
from node.net.dicomweb import DicomWebClient
from node.net.http import path_segment
from node.net.multipart import build_related
from node.synthetic.hostile import HOSTILE_UIDS, BrokenInput, broken_inputs, mutations
from tests.harness import make_settings, needs_orthanc, start_orthanc
from tests.memory import MemoryModel
from tests.test_pipeline import Harness
from tests.test_routing import MG

OPTIONS = WorkerOptions(
    lease_seconds=60.0, backoff_seconds=0.0, backoff_max_seconds=0.0, poll_seconds=0.01
)
BY_KIND: dict[str, BrokenInput] = {b.kind: b for b in broken_inputs(len(mutations()), seed=3)}


@pytest.fixture(scope="module")
def model() -> MemoryModel:
    return MemoryModel()


@pytest.fixture
def harness(tmp_path: Path, model: MemoryModel) -> Iterator[Harness]:
    harness = Harness(tmp_path, model, [])
    yield harness
    harness.store.engine.dispose()


def run_job(harness: Harness, data: bytes, max_attempts: int = 5) -> Job:
    """Store ``data`` in the source, queue a job for it and let a worker run until it ends."""
    ds = pydicom.dcmread(io.BytesIO(data))
    uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    harness.source.stored[uids[2]] = data
    job, _ = harness.store.create_job(
        idempotency_key=uids[2][:64] or "none",
        study_instance_uid="1.2",
        model_ref=harness.pipeline.model.spec.ref,
        payload=ExamRequest("s1", (InstanceRef(*uids),)).to_json(),
        max_attempts=max_attempts,
    )
    worker = Worker(harness.store, harness.pipeline, harness.bus, OPTIONS)
    for _ in range(max_attempts + 1):
        harness.clock.now += 1000
        if worker.run_once() is None:
            break
    return harness.store.get(job.id)


class TestBombs:
    """Defect 1: pixels limited before decoding, by the header and by the codestream."""

    @pytest.mark.parametrize(
        ("kind", "reason"),
        [
            ("bomb-j2k-16384", "268435456 samples"),
            ("bomb-j2k-siz-lies", "codestream claims 16384 x 16384"),
            ("bomb-jpeg-sof", "codestream claims 65535 x 65535"),
            ("huge-native-rows", "exceeds the limit"),
        ],
    )
    def test_refused_before_decoding(
        self, kind: str, reason: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ds = pydicom.dcmread(io.BytesIO(BY_KIND[kind].data))

        def never(*_args: object) -> None:
            raise AssertionError("decoded")

        monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(never))
        started = time.monotonic()
        with pytest.raises(InvalidInput, match=reason):
            presentation_pixels(ds)
        assert time.monotonic() - started < 1.0

    def test_codestream_size_must_match_rows_and_columns(self) -> None:
        ds = pydicom.dcmread(io.BytesIO(BY_KIND["bomb-j2k-siz-lies"].data))
        with pytest.raises(InvalidInput, match="but Rows"):
            check_pixel_budget(ds, max_pixels=1 << 30)

    def test_the_cap_is_a_setting(self) -> None:
        ds = pydicom.dcmread(io.BytesIO(BY_KIND["hostile-name-6"].data))  # a sound 256 x 208
        presentation_pixels(ds, max_pixels=256 * 208)
        with pytest.raises(InvalidInput, match="setting max_image_pixels"):
            presentation_pixels(ds, max_pixels=256 * 208 - 1)
        settings = load_settings(environ={"MAMMO_NODE_MAX_IMAGE_PIXELS": "1000000"})
        assert settings.max_image_pixels == 1_000_000
        with pytest.raises(ConfigError, match="max_image_pixels"):
            load_settings(environ={"MAMMO_NODE_MAX_IMAGE_PIXELS": "0"})
        with pytest.raises(ConfigError, match="stage_timeout_seconds"):
            load_settings(environ={"MAMMO_NODE_STAGE_TIMEOUT_SECONDS": "0"})

    def test_a_bomb_fails_its_job_once(self, harness: Harness) -> None:
        job = run_job(harness, BY_KIND["bomb-j2k-16384"].data)
        assert job.state is JobState.FAILED and job.attempts == 1
        assert "exceeds the limit" in (job.last_error or "")


class SlowModel(MemoryModel):
    def predict(
        self, pixels: npt.NDArray[np.floating] | npt.NDArray[np.integer], laterality: str
    ) -> ImagePrediction:
        time.sleep(3.0)
        return super().predict(pixels, laterality)


class TestStageTimeout:
    """Defect 1: every stage bounded in time; one exam never holds up the others."""

    def test_run_bounded_answers_raises_and_gives_up(self) -> None:
        assert run_bounded("x", 1.0, lambda: 42) == 42
        with pytest.raises(InvalidInput, match="inner"):
            run_bounded("x", 1.0, lambda: (_ for _ in ()).throw(InvalidInput("inner")))
        started = time.monotonic()
        with pytest.raises(StageTimedOut, match=r"inferring ran past its limit of 0\.2 s"):
            run_bounded("inferring", 0.2, lambda: time.sleep(2.0))
        assert time.monotonic() - started < 1.0

    def test_a_slow_inference_fails_the_job_with_the_reason(self, tmp_path: Path) -> None:
        harness = Harness(tmp_path, SlowModel(), [])
        harness.pipeline.stage_timeout = 0.5
        started = time.monotonic()
        job = run_job(harness, BY_KIND["hostile-name-6"].data)
        assert time.monotonic() - started < 2.5
        assert job.state is JobState.FAILED and job.attempts == 1
        assert "inferring ran past its limit of 0.5 s" in (job.last_error or "")
        harness.store.engine.dispose()


class TestMalformedIsFinal:
    """Defect 5: malformed input is a final, explained outcome after one attempt."""

    @pytest.mark.parametrize(
        ("kind", "reason"),
        [
            ("missing-patient-id", "no PatientID (0010,0020)"),
            ("patient-name-vr-us", "PatientName (0010,0010) has VR US"),
            ("sop-class-vr-us", "SOPClassUID (0008,0016) has VR US"),
            ("rows-vr-lo", "Rows (0028,0010) has VR LO"),
            ("bits-allocated-vr-ds", "BitsAllocated (0028,0100) has VR DS"),
            ("hostile-name-5", "PatientName (0010,0010) holds 2 values (a backslash)"),
            ("hostile-name-0", "PatientName (0010,0010) holds control characters"),
            ("hostile-name-3", "PatientName (0010,0010) is not a valid PN value"),
            ("bogus-syntax", "names no transfer syntax"),
            ("truncated", "pixel data cannot be decoded"),
            ("window-center-unreadable", "grayscale pipeline attributes (PS3.3 C.11)"),
        ],
    )
    def test_one_attempt_and_a_reason(self, harness: Harness, kind: str, reason: str) -> None:
        job = run_job(harness, BY_KIND[kind].data)
        assert job.state is JobState.FAILED and job.attempts == 1, job.last_error
        assert reason in (job.last_error or "")
        assert "Doe" not in (job.last_error or "")  # reasons never quote patient data


class TestUids:
    """Defect 6: invalid UIDs ignored at routing, and never unescaped in a URL."""

    @pytest.mark.parametrize("uid", HOSTILE_UIDS)
    @pytest.mark.parametrize("field", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
    def test_ignored_at_routing_with_the_reason(self, uid: str, field: str) -> None:
        decision = route(replace(MG, **{field: uid}), RoutingRules())
        assert not decision.routed and decision.code == "invalid_uid"
        assert decision.reason == f"invalid UID (PS3.5 9.1) in {field}"

    @pytest.mark.parametrize("uid", HOSTILE_UIDS)
    def test_every_path_segment_is_percent_encoded(self, uid: str) -> None:
        segment = path_segment(uid)
        assert "/" not in segment and "\\" not in segment and ";" not in segment
        assert segment not in (".", "..")
        assert httpx.URL("http://h/a/" + segment + "/b").raw_path.count(b"/") == 3

    def test_wado_rs_never_asks_for_an_invalid_uid(self) -> None:
        asked: list[str] = []
        client = DicomWebClient(Destination(name="pacs", url="http://pacs.invalid/dicom-web"))
        client._http = httpx.Client(
            base_url="http://pacs.invalid/dicom-web",
            transport=httpx.MockTransport(
                lambda r: asked.append(str(r.url)) or httpx.Response(500)
            ),
        )
        for uid in HOSTILE_UIDS:
            with pytest.raises(InvalidInput, match="invalid UID"):
                client.retrieve_instance(uid, "1.2", "1.2.3")
        assert asked == []

    def test_a_multipart_answer_without_a_boundary_is_final(self) -> None:
        client = DicomWebClient(Destination(name="pacs", url="http://pacs.invalid/dicom-web"))
        client._http = httpx.Client(
            base_url="http://pacs.invalid/dicom-web",
            transport=httpx.MockTransport(
                lambda r: httpx.Response(
                    200, headers={"content-type": "multipart/related"}, content=b"x"
                )
            ),
        )
        with pytest.raises(InvalidInput, match="without a boundary"):
            client.retrieve_instance("1.2", "1.2.3", "1.2.3.4")


class TestQuality:
    """Defect 7: an image unfit to score is skipped with its reason, never scored."""

    @pytest.mark.parametrize(
        ("kind", "reason"),
        [
            ("tiny-2x2", "image too small to score: 2 x 2"),
            ("high-bit-20", "HighBit (0028,0102) 20 is not Bits Stored - 1"),
            ("frames-0", "NumberOfFrames (0028,0008) 0"),
            ("empty-image", "no breast in the image"),
        ],
    )
    def test_skipped_and_the_exam_fails_with_the_reason(
        self, harness: Harness, model: MemoryModel, kind: str, reason: str
    ) -> None:
        scored = len(model.calls)
        job = run_job(harness, BY_KIND[kind].data)
        assert job.state is JobState.FAILED and job.attempts == 1
        assert f"no usable image in the exam: {reason}" in (job.last_error or "")
        assert len(model.calls) == scored

    def test_a_sound_image_is_still_scored(self, harness: Harness) -> None:
        assert run_job(harness, BY_KIND["hostile-name-6"].data).state is JobState.DONE

    def test_no_presentation_intent_is_ignored_with_the_reason(self) -> None:
        # Type 1 in the DX Series Module (PS3.3 C.8.11.1): missing, the image may be raw.
        wide = RoutingRules(sop_classes=(MG_FOR_PRESENTATION, MG_FOR_PROCESSING))
        for sop_class in wide.sop_classes:
            tags = replace(MG, SOPClassUID=sop_class, PresentationIntentType="")
            decision = route(tags, wide)
            assert not decision.routed and decision.code == "presentation_intent"
            assert "no Presentation Intent Type (0008,0068)" in decision.reason
        assert route(MG, RoutingRules()).reason == "matches the routing rules"


@pytest.mark.slow
@needs_orthanc
def test_a_uid_orthanc_rewrote_into_a_duplicate_is_named_so_not_called_gone(
    tmp_path: Path,
) -> None:
    """Orthanc indexes SOP Instance UID "1.2.3 4" as "1.2.34": two such instances share one
    UID and its WADO-RS serves neither. The reason says that; "no longer in" only when the
    instance is gone."""
    settings = make_settings(tmp_path)
    orthanc = start_orthanc(settings)
    rest = httpx.Client(
        base_url=settings.orthanc_base_url, auth=(settings.http_user, settings.http_password)
    )
    client = DicomWebClient(
        Destination(
            name="orthanc",
            url=f"{settings.orthanc_base_url}/dicom-web",
            username=settings.http_user,
            password=settings.http_password,
        )
    )
    try:
        rewritten = [i for i in broken_inputs(120) if i.kind == "hostile-sop-uid-8"][:2]
        studies = []
        for item in rewritten:
            body, content_type = build_related([item.data])
            stored = rest.post(
                "/dicom-web/studies", content=body, headers={"Content-Type": content_type}
            )
            assert stored.status_code == 200
            studies.append(item.study_instance_uid)
        series = [str(i.dataset.SeriesInstanceUID) for i in rewritten if i.dataset is not None]
        with pytest.raises(
            InvalidInput, match=r"holds 2 instances under SOP Instance UID 1\.2\.34"
        ):
            client.retrieve_instance(studies[0], series[0], "1.2.34")
        for orthanc_id in rest.get("/instances").json():
            rest.delete(f"/instances/{orthanc_id}").raise_for_status()
        with pytest.raises(InvalidInput, match=r"instance 1\.2\.34 is no longer in orthanc"):
            client.retrieve_instance(studies[0], series[0], "1.2.34")
    finally:
        client.close()
        rest.close()
        orthanc.stop()

"""A breast DCE-MRI study and the node's results in stock OHIF 3.13.2 (headless Chromium),
served by node/runtime/viewer.py against the embedded Orthanc, as tests/test_viewer.py does
for mammography (its page, browser and service probes are reused here).

The synthetic DCE study (node/mri/synthetic_dicom.py) goes through a real node; OHIF must
list the DCE phases, lay the candidates' SEG over the post-contrast phase it references, and
read the TID 1500 report and place every lesion group on its slice, drawing its shape. The
figures go to ``test-artifacts/ohif-mri.json``; the screenshot to ``docs/ohif-mri.png``
(the README's Breast MRI section).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pydicom
import pytest

from node.mri.phantom import make_dce_phantom
from node.mri.synthetic_dicom import dce_study
from node.net.dimse import Peer, send
from node.runtime.viewer import ViewerServer
from tests.harness import (
    NodeProcess,
    OrthancClient,
    make_settings,
    needs_orthanc,
    start_orthanc,
    wait_for,
)
from tests.test_viewer import (
    ARTIFACTS,
    DOCS,
    LOAD_TIMEOUT,
    MEASUREMENT_SERVICE_JS,
    SEG_BINDINGS_JS,
    SEG_OVERLAYS_JS,
    SEGMENTS_ON_VIEWPORTS_JS,
    SHAPES_DRAWN_JS,
    Page,
    _bright_fraction,
    _colour_fraction,
    browser,  # noqa: F401  (the fixture, shared)
    needs_chromium,
    needs_viewer,
)

pytestmark = [pytest.mark.slow, needs_orthanc, needs_viewer, needs_chromium]

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


@dataclass
class MriStudy:
    """The viewer on a node that processed one synthetic DCE study."""

    viewer: ViewerServer
    study_uid: str
    phases: int
    lesion_groups: int  # measurement groups of the node's TID 1500 report
    regions: int  # their SCOORD image regions


def _report_groups(client: OrthancClient, study_uid: str) -> tuple[int, int]:
    """(measurement groups, SCOORD regions) of the MR TID 1500 report as Orthanc stores it,
    read with pydicom rather than by the code under test."""
    for instance in client.outputs(study_uid).get("SR", []):
        sr = pydicom.dcmread(io.BytesIO(client.instance_file(instance["ID"])))
        if sr.SOPClassUID != COMPREHENSIVE_SR:
            continue
        container = next(
            i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"
        )
        groups = list(container.ContentSequence)
        regions = sum(1 for g in groups for i in g.ContentSequence if i.ValueType == "SCOORD")
        return len(groups), regions
    raise AssertionError("no TID 1500 report in Orthanc")


@pytest.fixture(scope="module")
def mri_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MriStudy]:
    """A synthetic DCE study (T2, six phases, a subtraction) through the node, and OHIF."""
    settings = make_settings(tmp_path_factory.mktemp("viewer-mri"))
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        phantom = make_dce_phantom(seed=41, slices=16, rows=96, columns=128)
        datasets, _ = dce_study(41, phantom)
        study_uid = str(datasets[0].StudyInstanceUID)
        outcome = send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
        assert outcome.sent == len(datasets), outcome
        job = node.wait_final(study_uid, timeout=300)
        assert job["state"] == "done", job["last_error"]
        written = len(job["result"]["outputs"])
        client = OrthancClient(settings)
        wait_for(
            "the MR results in Orthanc",
            lambda: sum(len(v) for v in client.outputs(study_uid).values()) == written,
            timeout=60,
        )
        groups, regions = _report_groups(client, study_uid)
        with ViewerServer(
            settings.orthanc_base_url, (settings.http_user, settings.http_password)
        ) as viewer:
            yield MriStudy(viewer, study_uid, len(phantom.times_s), groups, regions)
    finally:
        node.stop()
        orthanc.stop()


def test_stock_ohif_shows_the_mri_results(mri_study: MriStudy, browser: Any) -> None:  # noqa: F811
    viewer, study_uid = mri_study.viewer, mri_study.study_uid
    ARTIFACTS.mkdir(exist_ok=True)
    ohif = Page(browser, ARTIFACTS / "ohif-mri-console.log")
    page = ohif.page
    figures: dict[str, Any] = {
        "report_lesion_groups": mri_study.lesion_groups,
        "report_regions": mri_study.regions,
    }
    try:
        page.goto(f"{viewer.url}/viewer?StudyInstanceUIDs={study_uid}")

        def dce_phases() -> list[dict[str, Any]]:
            return [
                d
                for d in ohif.display_sets("MR")
                if d["description"].startswith("ax DCE ") and "SUB" not in d["description"]
            ]

        wait_for(
            "OHIF to list the DCE phases, the SR and the SEG",
            lambda: (
                len(dce_phases()) == mri_study.phases
                and ohif.display_sets("SR")
                and ohif.display_sets("SEG")
            ),
            timeout=LOAD_TIMEOUT,
            every=0.5,
        )
        figures["mr_display_sets"] = len(ohif.display_sets("MR"))
        figures["dce_phase_display_sets"] = len(dce_phases())
        reports = ohif.display_sets("SR")
        figures["sr_display_sets"] = len(reports)
        figures["sr_display_sets_unsupported"] = [
            d["description"] for d in reports if d["unsupported"]
        ]
        pane = page.locator("[data-cy=viewport-pane]").first
        wait_for("the first image to render", lambda: _bright_fraction(pane) > 0.02, LOAD_TIMEOUT)
        page.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT * 1000)
        page.evaluate(
            "() => window.commandsManager.runCommand("
            "'setViewportGridLayout', {numRows: 1, numCols: 2})"
        )
        panes = page.locator("[data-cy=viewport-pane]")
        wait_for("two viewports", lambda: panes.count() == 2, timeout=LOAD_TIMEOUT)

        # The candidates' SEG in the first viewport, over the post-contrast phase it references.
        pane.click()
        seg = ohif.display_sets("SEG")[0]
        page.dblclick(f"#thumbnail-{seg['uid']}")
        page.get_by_role("button", name="Yes").click()
        segments = wait_for(
            "the SEG's segments on a viewport",
            lambda: page.evaluate(SEGMENTS_ON_VIEWPORTS_JS),
            timeout=LOAD_TIMEOUT,
        )
        figures["seg_segments_on_screen"] = segments
        figures["seg_on_its_series"] = page.evaluate(SEG_BINDINGS_JS)
        figures["seg_overlays_on_screen"] = page.evaluate(SEG_OVERLAYS_JS)
        assert all("candidate" in label for label in segments), segments
        assert len(segments) == mri_study.lesion_groups
        assert figures["seg_on_its_series"] and all(figures["seg_on_its_series"])
        # The segments are drawn: colour over the grey MR, on whichever slice OHIF opens
        # (a slice without a candidate shows none, so the overlay count is the check there).
        figures["seg_colour_fraction"] = round(_colour_fraction(pane), 5)

        # The TID 1500 report in the second viewport: every lesion group placed on its slice.
        panes.nth(1).click()
        report = next(d for d in reports if not d["unsupported"])
        page.dblclick(f"#thumbnail-{report['uid']}")
        loaded = wait_for(
            "OHIF to read the MR report",
            lambda: [d for d in ohif.display_sets("SR") if d["loaded"] and d["measurements"]],
            timeout=LOAD_TIMEOUT,
        )[0]
        figures["sr_measurement_groups_read"] = len(loaded["measurements"])

        def placed() -> bool:
            # Placed: OHIF put the group on the image its region references (its SR loader's
            # "loaded"), where its SR display tool draws it.
            figures["measurements_placed"] = sum(d["placed"] for d in ohif.display_sets("SR"))
            return bool(figures["measurements_placed"] == mri_study.lesion_groups)

        wait_for("the groups on their slices", placed, timeout=LOAD_TIMEOUT)
        page.wait_for_timeout(3000)  # what OHIF draws of it, or the error it shows
        figures["measurement_service_count"] = page.evaluate(MEASUREMENT_SERVICE_JS)
        figures["shapes_drawn"] = page.evaluate(SHAPES_DRAWN_JS)
        figures["errors"] = ohif.errors + [line[:200] for line in ohif.error_boundaries()]
        page.mouse.move(0, 0)  # no hover highlight in the picture
        page.screenshot(path=str(ARTIFACTS / "ohif-mri.png"))

        assert mri_study.lesion_groups > 0 and mri_study.regions == mri_study.lesion_groups
        assert figures["sr_measurement_groups_read"] == mri_study.lesion_groups, figures
        assert all("candidate" in name for name in loaded["measurements"]), loaded
        assert figures["shapes_drawn"] > 0, figures
        assert figures["errors"] == [], figures
        shutil.copyfile(ARTIFACTS / "ohif-mri.png", DOCS / "ohif-mri.png")  # README
    finally:
        (ARTIFACTS / "ohif-mri.json").write_text(json.dumps(figures, indent=1) + "\n")
        print("stock OHIF 3.13.2, breast MRI:", json.dumps(figures))
        ohif.save_console()

"""The results as a radiologist would see them: OHIF in headless Chromium, served by
node/runtime/viewer.py against the embedded Orthanc, shows the SR measurements and the SEG overlay.

The screenshot is kept as ``test-artifacts/ohif-study.png`` (the README's docs/ohif-study.png
is one of these, of a synthetic phantom study).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from node.net.dimse import Peer, send
from node.runtime.viewer import DEFAULT_DIST, ViewerServer, adapt_dicom_json
from node.synthetic.dicom import synthetic_exam
from tests.harness import (
    NodeProcess,
    OrthancClient,
    make_settings,
    needs_orthanc,
    start_orthanc,
    wait_for,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless flags that work on a machine with no network beyond loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOAD_TIMEOUT = 60.0

needs_viewer = pytest.mark.skipif(
    not (DEFAULT_DIST / "index.html").is_file(),
    reason="the OHIF viewer is not installed (make viewer)",
)
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)"
)

# What OHIF itself knows about the study, read from its services (window.services).
DISPLAY_SETS_JS = """() => {
  const s = window.services;
  if (!s || !s.displaySetService) return null;
  return s.displaySetService.getActiveDisplaySets().map(d => ({
    uid: d.displaySetInstanceUID, modality: d.Modality, loaded: d.isLoaded === true,
    measurements: (d.measurements || []).map(m => m.TrackingIdentifier),
  }));
}"""
# Whether OHIF put each SEG over the image it references (not another image of the series).
SEG_BINDINGS_JS = """() => {
  const s = window.services;
  return s.displaySetService.getActiveDisplaySets().filter(d => d.Modality === 'SEG').map(d => {
    const image = s.displaySetService.getDisplaySetByUID(d.referencedDisplaySetInstanceUID);
    const wanted = d.instance.ReferencedSeriesSequence[0].ReferencedInstanceSequence
      .map(x => x.ReferencedSOPInstanceUID);
    return !!image && image.instances.some(i => wanted.includes(i.SOPInstanceUID));
  });
}"""
SEGMENTS_ON_VIEWPORTS_JS = """() => {
  const s = window.services;
  const shown = [];
  for (const viewportId of s.viewportGridService.getState().viewports.keys()) {
    for (const r of s.segmentationService.getSegmentationRepresentations(viewportId)) {
      const seg = s.segmentationService.getSegmentation(r.segmentationId);
      shown.push(...Object.values(seg.segments).filter(Boolean).map(x => x.label));
    }
  }
  return shown;
}"""


def test_proxy_drops_voi_lut_function_and_lists_images_first() -> None:
    seg = {"00080060": {"vr": "CS", "Value": ["SEG"]}}
    image = {
        "00080060": {"vr": "CS", "Value": ["MG"]},
        "00281056": {"vr": "CS", "Value": ["LINEAR"]},
    }
    adapted = json.loads(adapt_dicom_json(json.dumps([seg, image]).encode()))
    assert adapted == [{"00080060": {"vr": "CS", "Value": ["MG"]}}, seg]
    assert adapt_dicom_json(b'{"not": "a list"}') == b'{"not": "a list"}'


@pytest.fixture
def processed_study(tmp_path: Path) -> Iterator[tuple[ViewerServer, str, dict[str, Any]]]:
    """A synthetic exam sent to the embedded node, its results back in Orthanc, and OHIF."""
    settings = make_settings(tmp_path)
    orthanc = start_orthanc(settings)
    node = NodeProcess(settings)
    try:
        node.start()
        datasets = [ds for ds, _truth in synthetic_exam(seed=301)]
        study_uid = str(datasets[0].StudyInstanceUID)
        send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
        job = node.wait_final(study_uid)
        assert job["state"] == "done", job["last_error"]
        client = OrthancClient(settings)
        wait_for(
            "SR and SEG in Orthanc",
            lambda: {"SR", "SEG"} <= set(client.outputs(study_uid)),
            timeout=30,
        )
        with ViewerServer(
            settings.orthanc_base_url, (settings.http_user, settings.http_password)
        ) as viewer:
            yield viewer, study_uid, job
    finally:
        node.stop()
        orthanc.stop()


@pytest.mark.slow
@needs_orthanc
@needs_viewer
@needs_chromium
def test_ohif_shows_the_sr_measurements_and_the_seg_overlay(
    processed_study: tuple[ViewerServer, str, dict[str, Any]],
) -> None:
    from playwright.sync_api import Page, sync_playwright

    viewer, study_uid, _job = processed_study

    # The proxy answers without credentials from the browser, and refuses writes.
    studies = httpx.get(f"{viewer.url}/dicom-web/studies", timeout=10)
    assert studies.status_code == 200 and study_uid in studies.text
    assert httpx.post(f"{viewer.url}/dicom-web/studies", timeout=10).status_code == 405

    def display_sets(page: Page) -> list[dict[str, Any]]:
        return page.evaluate(DISPLAY_SETS_JS) or []

    def of(page: Page, modality: str) -> list[dict[str, Any]]:
        return [d for d in display_sets(page) if d["modality"] == modality]

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(LOAD_TIMEOUT * 1000)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            console: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.goto(f"{viewer.url}/viewer?StudyInstanceUIDs={study_uid}")

            wait_for(
                "OHIF to list the study's MG, SR and SEG series",
                lambda: len(of(page, "MG")) == 4 and of(page, "SR") and of(page, "SEG"),
                timeout=LOAD_TIMEOUT,
                every=0.5,
            )
            labels = page.locator(
                "[data-cy=series-modality-label], [data-cy=study-browser-thumbnail-no-image]"
            )
            assert {"SR", "SEG"} <= {
                word for text in labels.all_inner_texts() for word in text.split()
            }

            # The first MG image renders with contrast: not black (VOI LUT Function dropped).
            pane = page.locator("[data-cy=viewport-pane]").first
            wait_for(
                "the first image to render",
                lambda: _bright_fraction(pane) > 0.05,
                timeout=LOAD_TIMEOUT,
            )

            # Opening a SEG while the study still loads can raise an error toast in OHIF.
            page.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT * 1000)

            # SR first (opened after a SEG, OHIF 3.13 may hit an error): a second viewport, drawn
            # over its image.
            page.evaluate(
                "() => window.commandsManager.runCommand("
                "'setViewportGridLayout', {numRows: 1, numCols: 2})"
            )
            panes = page.locator("[data-cy=viewport-pane]")
            wait_for("two viewports", lambda: panes.count() == 2, timeout=LOAD_TIMEOUT)
            panes.nth(1).click()
            sr = of(page, "SR")[0]
            page.dblclick(f"#thumbnail-{sr['uid']}")
            loaded_sr = wait_for(
                "the SR's measurements",
                lambda: [d for d in of(page, "SR") if d["loaded"] and d["measurements"]],
                timeout=LOAD_TIMEOUT,
            )[0]
            tracked = loaded_sr["measurements"]
            assert {"Exam", "Left breast", "Right breast"} <= set(tracked), tracked
            assert any("finding" in name for name in tracked), tracked
            wait_for(
                "the SR's regions drawn with their probability",
                lambda: (
                    "Probability of cancer" in panes.nth(1).inner_text()
                    and _colour_fraction(panes.nth(1)) > 0.0005
                ),
                timeout=LOAD_TIMEOUT,
            )
            # SEG in the first viewport; OHIF asks before hydrating; the segments go onto the image.
            pane.click()
            seg = of(page, "SEG")[0]
            page.dblclick(f"#thumbnail-{seg['uid']}")
            page.get_by_role("button", name="Yes").click()
            segments = wait_for(
                "the SEG's segments on a viewport",
                lambda: page.evaluate(SEGMENTS_ON_VIEWPORTS_JS),
                timeout=LOAD_TIMEOUT,
            )
            assert all("finding" in label for label in segments), segments
            assert all(page.evaluate(SEG_BINDINGS_JS)), "a SEG is over the wrong image"
            wait_for(
                "the SEG overlay's colours",
                lambda: _colour_fraction(pane) > 0.0005,
                timeout=LOAD_TIMEOUT,
            )

            page.mouse.move(0, 0)  # no hover highlight in the picture
            page.screenshot(path=str(ARTIFACTS / "ohif-study.png"))
            assert errors == [], errors
            assert not [line for line in console if "Error Boundary" in line], console
        finally:
            (ARTIFACTS / "ohif-console.log").write_text("\n".join(console) + "\n")
            browser.close()


def _bright_fraction(pane: Any) -> float:
    """Share of a viewport's pixels brighter than near-black (the black-MG check)."""
    image = Image.open(io.BytesIO(pane.screenshot())).convert("L")
    histogram = image.histogram()
    return sum(histogram[40:]) / max(1, sum(histogram))


def _colour_fraction(pane: Any) -> float:
    """Share of a viewport's pixels in colour: overlays, over a grey mammogram."""
    image = Image.open(io.BytesIO(pane.screenshot())).convert("HSV")
    saturation = image.getchannel("S").histogram()
    return sum(saturation[100:]) / max(1, sum(saturation))

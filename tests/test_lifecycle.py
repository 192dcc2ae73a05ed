"""The model lifecycle on real model folders in tmp dirs: registry file, promotion rule,
rollback, shadow, and the commands that drive them."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.cli.review import add_parser
from node.config import PromotionMargins, Settings, load_settings
from node.errors import ConfigError, InvalidRegistryFile, LifecycleError, PromotionRefused
from node.models.lifecycle import ModelLifecycle, live_model_ref
from node.models.promotion import EvaluationSummary, check_promotion
from node.models.registry import device_uid

MODELS = Path(__file__).resolve().parent.parent / "models"
SHIPPED = MODELS / "synthetic-unet" / "0.1.0"
MARGINS = PromotionMargins(max_auc_drop=0.0, max_sensitivity_drop=0.02)


def add_model(models: Path, ref: str, **evaluation: Any) -> Path:
    """A copy of the shipped model as ``ref``, with these evaluation figures."""
    model_id, version = ref.split("/")
    folder = models / model_id / version
    shutil.copytree(SHIPPED, folder)
    raw = yaml.safe_load((folder / "model.yaml").read_text())
    raw.update(id=model_id, version=version, device_uid=device_uid(model_id, version))
    raw["evaluation"] = {"heldout_images": 100, **evaluation}
    (folder / "model.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def locked(auc: float, sensitivity: float, name: str = "locked-v1") -> dict[str, Any]:
    return {"locked_set": name, "auc": auc, "sensitivity_at_operating_point": sensitivity}


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    add_model(folder, "demo/1.0.0", **locked(0.80, 0.80))
    add_model(folder, "demo/1.1.0", **locked(0.82, 0.79))  # sensitivity within 0.02
    add_model(folder, "demo/1.2.0", **locked(0.79, 0.90))  # AUC worse
    add_model(folder, "other/2.0.0", **locked(0.95, 0.95, name="locked-v2"))
    add_model(folder, "unvalidated/0.1.0")
    return folder


@pytest.fixture
def lifecycle(models: Path) -> ModelLifecycle:
    cycle = ModelLifecycle(models, clock=lambda: "2026-01-01T00:00:00Z")
    cycle.promote("demo/1.0.0", margins=MARGINS)
    return cycle


class TestPromotionRule:
    def test_not_worse_within_the_margins_passes(self) -> None:
        live = EvaluationSummary("set", 0.80, 0.80, None)
        check_promotion(EvaluationSummary("set", 0.80, 0.78, None), live, MARGINS)

    @pytest.mark.parametrize(
        ("candidate", "message"),
        [
            (EvaluationSummary("set", 0.799, 0.80, None), "AUC 0.799 is worse"),
            (EvaluationSummary("set", 0.90, 0.77, None), "sensitivity 0.770 is worse"),
            (EvaluationSummary("other", 0.90, 0.90, None), "not evaluated on the same locked set"),
            (EvaluationSummary(None, 0.90, 0.90, None), "candidate has no evaluation"),
            (EvaluationSummary("set", None, 0.90, None), "AUC is missing"),
        ],
    )
    def test_refusals_say_why(self, candidate: EvaluationSummary, message: str) -> None:
        live = EvaluationSummary("set", 0.80, 0.80, None)
        with pytest.raises(PromotionRefused, match=message):
            check_promotion(candidate, live, MARGINS)

    def test_margins_are_settings_validated_at_start(self, tmp_path: Path) -> None:
        config = tmp_path / "node.yaml"
        config.write_text("promotion: {max_auc_drop: 0.01, max_sensitivity_drop: 0.05}\n")
        settings = load_settings(config, environ={})
        assert settings.promotion == PromotionMargins(0.01, 0.05)
        assert Settings().promotion == MARGINS
        config.write_text("promotion: {max_auc_drop: 2}\n")
        with pytest.raises(ConfigError, match=r"promotion.max_auc_drop must be a number in 0..1"):
            load_settings(config, environ={})
        config.write_text("promotion: {max_auc: 0.1}\n")
        with pytest.raises(ConfigError, match="promotion"):
            load_settings(config, environ={})


class TestPromote:
    def test_first_promotion_needs_no_comparison(self, models: Path) -> None:
        entry = ModelLifecycle(models).promote("unvalidated/0.1.0", margins=MARGINS)
        assert (entry.model, entry.previous, entry.forced) == ("unvalidated/0.1.0", None, False)
        assert ModelLifecycle(models).live_ref() == "unvalidated/0.1.0"

    def test_a_candidate_not_worse_becomes_live_with_its_reason(
        self, lifecycle: ModelLifecycle
    ) -> None:
        entry = lifecycle.promote("demo/1.1.0", margins=MARGINS)
        state = lifecycle.read()
        assert state.live == "demo/1.1.0"
        assert state.history[-1] == entry
        assert entry.previous == "demo/1.0.0" and not entry.forced
        assert "not worse than demo/1.0.0 on locked-v1" in entry.reason
        assert entry.at == "2026-01-01T00:00:00Z"

    def test_a_worse_candidate_is_refused_and_nothing_changes(
        self, lifecycle: ModelLifecycle
    ) -> None:
        before = lifecycle.path.read_text()
        with pytest.raises(PromotionRefused, match=r"AUC 0.790 is worse .* 0.800 on locked-v1"):
            lifecycle.promote("demo/1.2.0", margins=MARGINS)
        assert lifecycle.path.read_text() == before

    def test_another_locked_set_needs_force_and_a_reason(self, lifecycle: ModelLifecycle) -> None:
        with pytest.raises(PromotionRefused, match=r"same locked set.*--force --reason"):
            lifecycle.promote("other/2.0.0", margins=MARGINS)
        with pytest.raises(LifecycleError, match="--force needs --reason"):
            lifecycle.promote("other/2.0.0", margins=MARGINS, force=True)
        entry = lifecycle.promote(
            "other/2.0.0", margins=MARGINS, force=True, reason="new locked set adopted"
        )
        assert entry.forced and entry.reason == "new locked set adopted"
        recorded = yaml.safe_load(lifecycle.path.read_text())
        assert recorded["live"] == "other/2.0.0"
        assert recorded["history"][-1]["forced"] is True

    @pytest.mark.parametrize(
        ("ref", "message"),
        [
            ("demo", "name the version explicitly"),
            ("demo/9.9.9", "no model 'demo/9.9.9'"),
            ("demo/1.0.0", "already the live model"),
        ],
    )
    def test_unusable_refs_are_refused(
        self, lifecycle: ModelLifecycle, ref: str, message: str
    ) -> None:
        with pytest.raises(LifecycleError, match=message):
            lifecycle.promote(ref, margins=MARGINS)

    def test_broken_weights_are_refused_before_promotion(self, lifecycle: ModelLifecycle) -> None:
        (lifecycle.models_dir / "demo" / "1.1.0" / "weights.pt").write_bytes(b"broken")
        with pytest.raises(LifecycleError, match="weights do not fit"):
            lifecycle.promote("demo/1.1.0", margins=MARGINS)
        assert lifecycle.live_ref() == "demo/1.0.0"


class TestRollback:
    def test_rollback_walks_back_through_the_history(self, lifecycle: ModelLifecycle) -> None:
        lifecycle.promote("demo/1.1.0", margins=MARGINS)
        lifecycle.promote("other/2.0.0", margins=MARGINS, force=True, reason="new set")
        assert lifecycle.rollback("bad in production").model == "demo/1.1.0"
        assert lifecycle.rollback().model == "demo/1.0.0"
        with pytest.raises(LifecycleError, match="no earlier live model"):
            lifecycle.rollback()
        state = lifecycle.read()
        assert state.live == "demo/1.0.0"
        assert [e.action for e in state.history] == [
            "promote",
            "promote",
            "promote",
            "rollback",
            "rollback",
        ]
        assert state.history[3].reason == "bad in production"

    def test_nothing_to_roll_back_without_a_registry(self, models: Path) -> None:
        with pytest.raises(LifecycleError, match="nothing to roll back"):
            ModelLifecycle(models).rollback()


class TestShadow:
    def test_shadow_on_and_off(self, lifecycle: ModelLifecycle) -> None:
        assert lifecycle.set_shadow("demo/1.2.0").model == "demo/1.2.0"
        assert lifecycle.shadow_ref() == "demo/1.2.0"
        markers = {e.ref: (e.live, e.shadow) for e in lifecycle.models()}
        assert markers["demo/1.0.0"] == (True, False)
        assert markers["demo/1.2.0"] == (False, True)
        entry = lifecycle.set_shadow(None, "enough data")
        assert (entry.model, entry.previous, entry.reason) == (None, "demo/1.2.0", "enough data")
        assert lifecycle.shadow_ref() is None

    def test_the_live_model_cannot_shadow_itself(self, lifecycle: ModelLifecycle) -> None:
        with pytest.raises(LifecycleError, match="is the live model"):
            lifecycle.set_shadow("demo/1.0.0")

    def test_promoting_the_shadow_ends_shadow_mode(self, lifecycle: ModelLifecycle) -> None:
        lifecycle.set_shadow("demo/1.1.0")
        lifecycle.promote("demo/1.1.0", margins=MARGINS)
        assert lifecycle.read().shadow is None


class TestRegistryFile:
    def test_the_shipped_registry_makes_the_exam_aware_model_live(self) -> None:
        assert Settings().model == ""
        # promoted through the gate over synthetic-unet/0.1.0, then 1.0.0 (issue 8)
        assert live_model_ref(MODELS, Settings().model) == "mias-contralateral/1.1.0"
        assert live_model_ref(MODELS, "demo/1.0.0") == "demo/1.0.0"  # the setting overrides
        assert ModelLifecycle(MODELS).read().shadow is None

    def test_a_missing_registry_says_what_to_do(self, models: Path) -> None:
        with pytest.raises(InvalidRegistryFile, match="mammo-node models promote"):
            live_model_ref(models, "")

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("live: demo/1.0.0\n", "needs exactly the keys"),
            ("live: demo\nshadow: null\nhistory: []\n", "live must be 'id/version'"),
            ("live: demo/x\nshadow: null\nhistory: []\n", "version 'x'"),
            ("live: demo/1.0.0\nshadow: null\nhistory: {}\n", "history must be a list"),
            ("live: demo/1.0.0\nshadow: null\nhistory: [{at: 1}]\n", r"history\[0\] needs"),
            ("[unclosed\n", "not YAML"),
        ],
    )
    def test_malformed_registry_is_refused_clearly(
        self, models: Path, text: str, message: str
    ) -> None:
        (models / "registry.yaml").write_text(text)
        with pytest.raises(InvalidRegistryFile, match=message):
            ModelLifecycle(models).read()


def run_command(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mammo-node")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


class TestCommands:
    def test_models_list_promote_rollback_shadow(
        self, models: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        where = ("--models-dir", str(models))
        assert run_command("models", "promote", "demo/1.0.0", *where) == 0
        assert run_command("models", "promote", "demo/1.1.0", "--reason", "better", *where) == 0
        assert "demo/1.1.0 is live, was demo/1.0.0: better" in capsys.readouterr().out
        with pytest.raises(PromotionRefused, match=r"AUC 0\.790 is worse"):
            run_command("models", "promote", "demo/1.2.0", *where)
        assert run_command("models", "shadow", "demo/1.2.0", *where) == 0
        assert run_command("models", "list", *where) == 0
        lines = capsys.readouterr().out.splitlines()
        row = {line.split()[0]: line for line in lines}
        assert (
            "live" in row["demo/1.1.0"] and "locked-v1: AUC 0.820, sens 0.790" in row["demo/1.1.0"]
        )
        assert "shadow" in row["demo/1.2.0"]
        assert "not evaluated on a locked set" in row["unvalidated/0.1.0"]
        assert run_command("models", "shadow", "--off", *where) == 0
        assert run_command("models", "rollback", *where) == 0
        assert ModelLifecycle(models).read().live == "demo/1.0.0"


def test_reads_the_block_that_evaluate_records() -> None:
    """`mammo-node evaluate --record` writes evaluation.validation; promotion reads it."""
    recorded = {
        "validation": {
            "dataset_id": "mias-dev",
            "split": "val",
            "figures": {
                "auc": {"value": 0.61, "ci": [0.5, 0.7]},
                "sensitivity_at_operating_point": {"value": 0.7, "ci": [0.5, 0.8]},
                "specificity_at_operating_point": {"value": 0.4, "ci": [0.3, 0.6]},
            },
        }
    }
    summary = EvaluationSummary.from_evaluation(recorded)
    assert summary == EvaluationSummary("mias-dev/val", 0.61, 0.7, 0.4)
    assert summary.describe() == "mias-dev/val: AUC 0.610, sens 0.700, spec 0.400"

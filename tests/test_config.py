"""Settings: file, then environment, then flags; bad values refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.config import SUMMARY_LANGUAGES, load_settings, validate_ae_title
from node.errors import ConfigError


def test_defaults_accept_modality1_to_mammonode() -> None:
    settings = load_settings(environ={})
    assert settings.aet == "MAMMONODE" and [m.aet for m in settings.modalities] == ["MODALITY1"]
    assert settings.effective_database_url.startswith("sqlite:///")


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("api_port: 9000\nhttp_port: 9001\nworkers: 2\n")
    settings = load_settings(
        config, environ={"MAMMO_NODE_HTTP_PORT": "9002"}, overrides={"workers": 3}
    )
    assert (settings.api_port, settings.http_port, settings.workers) == (9000, 9002, 3)


def test_structured_values_from_environment() -> None:
    settings = load_settings(
        environ={
            "MAMMO_NODE_MODALITIES": "[{aet: UNIT2, host: 127.0.0.1, port: 11112}]",
            "MAMMO_NODE_ROUTING": "{modalities: [MG], sop_classes: ['1.2.840.10008.5.1.4.1.1.7']}",
        }
    )
    assert settings.modalities[0].port == 11112
    assert settings.routing.sop_classes == ("1.2.840.10008.5.1.4.1.1.7",)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAMMO_NODE_API_PORT", "70000", "api_port"),
        ("MAMMO_NODE_API_PORT", "eighty", "api_port"),
        ("MAMMO_NODE_AET", "A\\B", "AE title"),
        ("MAMMO_NODE_AET", "MUCH-TOO-LONG-AE-TITLE", "AE title"),
        ("MAMMO_NODE_LOG_LEVEL", "LOUD", "log_level"),
        ("MAMMO_NODE_WORKERS", "-1", "workers"),
        ("MAMMO_NODE_TORCH_THREADS", "-1", "torch_threads"),
    ],
)
def test_bad_values_are_refused(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={variable: value})


def test_unknown_setting_in_file(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("api_prot: 9000\n")
    with pytest.raises(ConfigError, match="unknown settings api_prot"):
        load_settings(config, environ={})


def test_generated_secrets_are_fresh() -> None:
    settings = load_settings(environ={})
    a, b = settings.with_secrets(), settings.with_secrets()
    assert a.http_password and a.http_password != b.http_password and a.api_token


@given(
    st.text(
        min_size=1,
        max_size=16,
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="\\"),
    )
)
def test_valid_ae_titles(title: str) -> None:
    assert validate_ae_title(title) == title.strip()


@given(st.text(min_size=17, max_size=40, alphabet="ABC"))
def test_long_ae_titles_are_refused(title: str) -> None:
    with pytest.raises(ConfigError):
        validate_ae_title(title)


def test_summary_languages_match_the_locale_files() -> None:
    locales = Path(__file__).resolve().parents[1] / "node" / "writers" / "locales"
    assert {p.stem for p in locales.glob("*.yaml")} == set(SUMMARY_LANGUAGES)
    assert load_settings(environ={"MAMMO_NODE_SUMMARY_LANGUAGE": "kk"}).summary_language == "kk"
    with pytest.raises(ConfigError, match="summary_language 'de'"):
        load_settings(environ={"MAMMO_NODE_SUMMARY_LANGUAGE": "de"})

"""Settings: the only module that reads the environment.

Precedence (lowest first): built-in defaults, a YAML file (``--config`` or
``MAMMO_NODE_CONFIG``), environment variables ``MAMMO_NODE_<FIELD>``, command-line flags.
Everything is validated once, at start-up, and a bad value raises ConfigError naming it.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from node.errors import ConfigError

# PS3.5 6.2: AE titles are up to 16 characters, no backslash or control characters.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?)$")

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
# Secondary Capture with Modality MG: digitised film and archive exports (CBIS-DDSM) come so.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
# Breast MRI: the dynamic contrast-enhanced series go to the kinetic CAD (node.mri).
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"

ENV_PREFIX = "MAMMO_NODE_"
#: Languages of the summaries (node/writers/locales holds one file per language).
SUMMARY_LANGUAGES = ("en", "ru", "kk")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def validate_ae_title(value: str) -> str:
    """Return the AE title stripped of padding, or raise ConfigError (PS3.5 6.2)."""
    stripped = value.strip()
    if not _AE_TITLE.match(stripped):
        raise ConfigError(f"invalid AE title {value!r}: 1-16 printable characters, no backslash")
    return stripped


def validate_device(name: str) -> str:
    """The ``device`` setting's value, or ConfigError: auto, cpu, cuda or cuda:N."""
    if not _DEVICE_NAME.match(name):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, not {name!r}")
    return name


def validate_port(name: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


@dataclass(frozen=True)
class RoutingRules:
    """Which instances are analysed: SOP class AND Modality AND Presentation Intent.

    Secondary Capture is routed by default, but only with Modality MG (the Modality rule
    still applies): digitised screen-film mammograms and research archives are stored so.
    The node's own Secondary Capture summaries are skipped by the own-output guard first.

    Breast MRI has a rule of its own: Modality MR AND an ``mr_sop_classes`` SOP Class AND a
    breast (Body Part Examined in ``mr_body_parts``, or, when it is empty, "breast" in the
    study or series description) AND a dynamic contrast-enhanced series (T2, diffusion and
    subtraction series are ignored with the reason). An empty ``mr_sop_classes`` turns it off.
    """

    sop_classes: tuple[str, ...] = (MG_FOR_PRESENTATION, SECONDARY_CAPTURE)
    modalities: tuple[str, ...] = ("MG",)
    presentation_intents: tuple[str, ...] = ("FOR PRESENTATION",)
    mr_sop_classes: tuple[str, ...] = (MR_IMAGE_STORAGE, ENHANCED_MR_IMAGE_STORAGE)
    mr_body_parts: tuple[str, ...] = ("BREAST",)


@dataclass(frozen=True)
class Modality:
    """A DICOM peer allowed to send to the node's Orthanc (unknown AE titles are refused)."""

    aet: str
    host: str = "127.0.0.1"
    port: int = 104


DESTINATION_KINDS = ("dicomweb", "dimse")
#: Output selection meaning "every output kind the node can build".
ALL_OUTPUTS = "all"
DEFAULT_EXPECTED_VIEWS = ("R CC", "L CC", "R MLO", "L MLO")
#: How images make an exam (node/ingest/grouping.py): "study", one exam per Study Instance
#: UID; "patient", a woman's studies of one Accession Number, else of one Study Date (sites
#: and archives that send one study per view).
EXAM_GROUPINGS = ("study", "patient")
#: Largest image the node decodes, in samples (Rows x Columns x frames x samples per pixel):
#: a full-field mammogram is 5-30 million; a header claiming more is refused undecoded.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
#: Longest a job's fetch, inference or writing may run before the job fails with the reason.
DEFAULT_STAGE_TIMEOUT_SECONDS = 300.0
_VIEW_LABEL = re.compile(r"^[RL] [A-Z]{2,5}$")


@dataclass(frozen=True)
class Destination:
    """Where results are published: DICOMweb STOW-RS or DIMSE C-STORE (optionally over TLS).

    ``outputs`` names the output kinds (node.writers.outputs.OUTPUT_KINDS) this destination
    receives; empty means the node's default selection, ``["all"]`` every kind. Each
    destination retries on its own (``max_attempts``, exponential backoff) and ends
    dead-lettered after its last attempt, without holding up the others.
    """

    name: str
    url: str = ""  # kind dicomweb: DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web
    username: str | None = None
    password: str | None = None
    kind: str = "dicomweb"
    host: str = ""  # kind dimse
    port: int = 104
    called_aet: str = ""
    calling_aet: str = "MAMMONODE"
    tls_ca_file: str = ""  # PEM CA bundle: enables TLS (DICOM TLS, PS3.15 B.1)
    tls_cert_file: str = ""  # PEM client certificate and key, when the peer asks for them
    tls_key_file: str = ""
    outputs: tuple[str, ...] = ()
    # 40 attempts, 5 s doubling to 600 s: about 5.8 hours of retrying, so a PACS down for a
    # maintenance window or an afternoon gets its results without anyone acting.
    max_attempts: int = 40
    backoff_seconds: float = 5.0
    backoff_max_seconds: float = 600.0
    timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        where = f"destination {self.name!r}"
        if not self.name or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", self.name):
            raise ConfigError(f"{where}: name must be 1-64 letters, digits, '_', '.' or '-'")
        if self.kind not in DESTINATION_KINDS:
            raise ConfigError(f"{where}: kind must be one of {', '.join(DESTINATION_KINDS)}")
        if self.kind == "dicomweb" and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"destination {self.name}: url must be http(s)://")
        if self.kind == "dimse":
            if not self.host or not self.called_aet:
                raise ConfigError(f"{where}: a dimse destination needs host and called_aet")
            validate_ae_title(self.called_aet)
            validate_ae_title(self.calling_aet)
            validate_port(f"{where} port", self.port)
            if bool(self.tls_cert_file) != bool(self.tls_key_file):
                raise ConfigError(f"{where}: tls_cert_file and tls_key_file go together")
            if self.tls_cert_file and not self.tls_ca_file:
                raise ConfigError(f"{where}: a client certificate needs tls_ca_file (TLS)")
            for path in (self.tls_ca_file, self.tls_cert_file, self.tls_key_file):
                if path and not Path(path).is_file():
                    raise ConfigError(f"{where}: TLS file {path} does not exist")
        if self.max_attempts < 1 or self.max_attempts > 100:
            raise ConfigError(f"{where}: max_attempts must be 1-100")
        if self.backoff_seconds < 0 or self.backoff_max_seconds < self.backoff_seconds:
            raise ConfigError(f"{where}: need 0 <= backoff_seconds <= backoff_max_seconds")
        if self.timeout_seconds <= 0:
            raise ConfigError(f"{where}: timeout_seconds must be > 0")

    @property
    def uses_tls(self) -> bool:
        return self.kind == "dimse" and bool(self.tls_ca_file)

    def describe(self) -> str:
        """Where it points, without credentials (for logs and the CLI)."""
        if self.kind == "dimse":
            tls = " (TLS)" if self.uses_tls else ""
            return f"DIMSE {self.called_aet}@{self.host}:{self.port}{tls}"
        return f"DICOMweb {self.url}"


CONSOLE_ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class ConsoleUser:
    """A person who may use the admin console and the node's API with a password.

    viewer: reads everything but the configuration; operator: also re-queues, re-sends and
    promotes / rolls back models; admin: also sees the effective configuration. These are
    the node's own credentials, never Orthanc's (``http_user``), which can delete studies.
    """

    name: str
    password: str
    role: str = "viewer"

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ConfigError(f"console user {self.name!r}: a name without ':' is needed")
        if self.role not in CONSOLE_ROLES:
            raise ConfigError(
                f"console user {self.name}: role must be one of {', '.join(CONSOLE_ROLES)}"
            )
        if len(self.password) < 8:
            raise ConfigError(f"console user {self.name}: password of at least 8 characters")

    def __repr__(self) -> str:  # never the password, in logs or tracebacks
        return f"ConsoleUser(name={self.name!r}, role={self.role!r})"


@dataclass(frozen=True)
class PromotionMargins:
    """How much worse than the live model a candidate may be on the locked validation set."""

    max_auc_drop: float = 0.0
    max_sensitivity_drop: float = 0.02

    def __post_init__(self) -> None:
        for name in ("max_auc_drop", "max_sensitivity_drop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(f"promotion.{name} must be a number in 0..1, got {value!r}")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    aet: str = "MAMMONODE"
    dicom_port: int = 4242
    http_port: int = 8042
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    viewer_port: int = 3000  # OHIF + read-only DICOMweb proxy (when installed); 0: off
    http_user: str = "mammo"
    http_password: str = ""  # generated at start-up when empty
    api_token: str = ""  # shared secret of the Orthanc plugin -> node calls; generated when empty
    orthanc_url: str = ""  # empty: the embedded Orthanc at http://127.0.0.1:<http_port>
    database_url: str = ""  # empty: SQLite in <data_dir>/jobs.sqlite
    models_dir: Path = PROJECT_ROOT / "models"
    model: str = ""  # empty: the live model of <models_dir>/registry.yaml; set: an override
    workers: int = 1
    # torch's threads in this process, shared by its workers; 0: the usable CPUs divided
    # among the workers (node.inference.threads)
    torch_threads: int = 0
    # CPU priority (nice, 0-19) the workers compute at: 10 lets DICOM reception, the API and
    # intake go first on a shared host; 0 leaves them at the process's own priority
    worker_nice: int = 10
    # where the models compute: auto (the GPU when torch sees one, else the CPU), cpu, cuda
    # or cuda:N; an explicit cuda without a GPU stops start-up (node.inference.device)
    device: str = "auto"
    lease_seconds: float = 120.0
    max_attempts: int = 5
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    poll_seconds: float = 0.5
    stable_age: int = 3
    reconcile_seconds: float = 30.0
    log_level: str = "INFO"
    modalities: tuple[Modality, ...] = (Modality(aet="MODALITY1"),)
    routing: RoutingRules = field(default_factory=RoutingRules)
    destinations: tuple[Destination, ...] = ()  # empty: back into the embedded Orthanc
    # Exam assembly: the views a complete exam has ("R CC" = laterality and view), and how
    # long after the study first became stable the node waits for missing ones before it
    # scores what arrived and marks the exam incomplete.
    expected_views: tuple[str, ...] = DEFAULT_EXPECTED_VIEWS
    assembly_timeout_seconds: float = 120.0
    # "study" (one exam per Study Instance UID) or "patient" (patient + accession, else
    # patient + study date: for sites that send one study per view). Study by default: it is
    # the one exam identity every modality guarantees, and a wrong merge is worse than a split.
    exam_grouping: str = "study"
    promotion: PromotionMargins = field(default_factory=PromotionMargins)
    # Language of the human-readable summaries (Secondary Capture and PDF report).
    summary_language: str = "en"
    # People of the admin console and the API; empty: one "admin" with a generated password.
    console_users: tuple[ConsoleUser, ...] = ()
    # DICOM TLS of the embedded Orthanc (PEM files, all three or none): its DICOM port then
    # speaks only TLS, and a caller must present a certificate signed by dicom_tls_ca_file.
    dicom_tls_cert_file: str = ""
    dicom_tls_key_file: str = ""
    dicom_tls_ca_file: str = ""
    # Hostile input: the largest image decoded (samples, checked against the header and the
    # codestream before decoding), and how long one stage of a job may run before the job
    # fails with the reason, so one exam never holds up the others.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    stage_timeout_seconds: float = DEFAULT_STAGE_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        validate_ae_title(self.aet)
        if self.summary_language not in SUMMARY_LANGUAGES:
            raise ConfigError(
                f"summary_language {self.summary_language!r} is not one of {', '.join(SUMMARY_LANGUAGES)}"
            )
        for name in ("dicom_port", "http_port", "api_port"):
            validate_port(name, getattr(self, name))
        if self.viewer_port:
            validate_port("viewer_port", self.viewer_port)
        for modality in self.modalities:
            validate_ae_title(modality.aet)
            validate_port(f"modality {modality.aet} port", modality.port)
        self._check_compute()
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be >= 1")
        if self.lease_seconds <= 0 or self.poll_seconds <= 0:
            raise ConfigError("lease_seconds and poll_seconds must be > 0")
        if not 1 <= self.stable_age <= 3600:
            raise ConfigError("stable_age must be 1-3600 seconds")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(
                f"log_level must be DEBUG, INFO, WARNING or ERROR, not {self.log_level}"
            )
        if self.http_user and ":" in self.http_user:
            raise ConfigError("http_user must not contain ':' (HTTP basic auth)")
        names = [destination.name for destination in self.destinations]
        if len(set(names)) != len(names):
            raise ConfigError(f"destination names must be unique, got {', '.join(names)}")
        for label in self.expected_views:
            if not _VIEW_LABEL.match(label):
                raise ConfigError(
                    f"expected view {label!r} must be laterality and view, e.g. 'R CC', 'L MLO'"
                )
        if not 0 <= self.assembly_timeout_seconds <= 86400:
            raise ConfigError("assembly_timeout_seconds must be 0-86400")
        if self.exam_grouping not in EXAM_GROUPINGS:
            raise ConfigError(
                f"exam_grouping {self.exam_grouping!r} is not one of {', '.join(EXAM_GROUPINGS)}"
            )
        if self.exam_grouping == "patient" and self.assembly_timeout_seconds <= 0:
            raise ConfigError(
                "exam_grouping patient needs assembly_timeout_seconds > 0: the node waits that "
                "long for the other studies of an exam, else each study would start alone"
            )
        users = [user.name for user in self.console_users]
        if len(set(users)) != len(users):
            raise ConfigError(f"console user names must be unique, got {', '.join(users)}")
        for user in self.console_users:
            if self.http_password and user.password == self.http_password:
                raise ConfigError(
                    f"console user {user.name}: use a password other than Orthanc's "
                    "(http_password gives full control of Orthanc)"
                )
        tls = (self.dicom_tls_cert_file, self.dicom_tls_key_file, self.dicom_tls_ca_file)
        if any(tls) and not all(tls):
            raise ConfigError(
                "DICOM TLS needs all of dicom_tls_cert_file, dicom_tls_key_file and dicom_tls_ca_file"
            )
        if not 1 <= self.max_image_pixels <= 1 << 31:
            raise ConfigError("max_image_pixels must be 1-2147483648 samples")
        if not 0 < self.stage_timeout_seconds <= 86400:
            raise ConfigError("stage_timeout_seconds must be > 0 and at most 86400")

    def _check_compute(self) -> None:
        """The workers, their threads and priority, and the device the models compute on."""
        if self.workers < 0:
            raise ConfigError("workers must be >= 0")
        if not 0 <= self.torch_threads <= 1024:
            raise ConfigError("torch_threads must be 0 (automatic) to 1024")
        if not 0 <= self.worker_nice <= 19:
            raise ConfigError("worker_nice must be 0 (as the process) to 19 (lowest priority)")
        validate_device(self.device)

    @property
    def orthanc_base_url(self) -> str:
        return (self.orthanc_url or f"http://127.0.0.1:{self.http_port}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'jobs.sqlite').resolve()}"

    @property
    def effective_destinations(self) -> tuple[Destination, ...]:
        if self.destinations:
            return self.destinations
        return (
            Destination(
                name="orthanc",
                url=f"{self.orthanc_base_url}/dicom-web",
                username=self.http_user,
                password=self.http_password,
                outputs=(ALL_OUTPUTS,),  # Orthanc stores any SOP class the node writes
            ),
        )

    def destination(self, name: str) -> Destination:
        """The destination called ``name``; ConfigError lists the known ones."""
        for destination in self.effective_destinations:
            if destination.name == name:
                return destination
        known = ", ".join(d.name for d in self.effective_destinations)
        raise ConfigError(f"unknown destination {name!r}; known destinations: {known}")

    def with_secrets(self) -> Settings:
        """Fill in the generated secrets; called once by the composition root."""
        users = self.console_users or (ConsoleUser("admin", secrets.token_urlsafe(12), "admin"),)
        return replace(
            self,
            http_password=self.http_password or secrets.token_urlsafe(18),
            api_token=self.api_token or secrets.token_urlsafe(24),
            console_users=users,
        )


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Turn a YAML/environment value into the type of the field's default."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, Path):
            return Path(value).expanduser()
        if isinstance(default, str):
            if not isinstance(value, str | int | float):
                raise TypeError(f"expected text, got {type(value).__name__}")
            return str(value)
        if isinstance(default, RoutingRules):
            if not isinstance(value, Mapping):
                raise TypeError("expected a mapping")
            return RoutingRules(**{k: tuple(str(x) for x in v) for k, v in value.items()})
        if name == "modalities":
            return tuple(Modality(**dict(item)) for item in value)
        if name == "promotion":
            return PromotionMargins(**dict(value))
        if name == "console_users":
            return tuple(
                item if isinstance(item, ConsoleUser) else ConsoleUser(**dict(item))
                for item in value
            )
        if name == "destinations":
            return tuple(_destination(dict(item)) for item in value)
        if name == "expected_views":
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(v).strip().upper() for v in items if str(v).strip())
    except (TypeError, ValueError) as error:
        raise ConfigError(f"setting {name!r}: invalid value {value!r} ({error})") from error
    raise ConfigError(f"setting {name!r} cannot be set this way")


def _destination(item: dict[str, Any]) -> Destination:
    if "outputs" in item:
        outputs = item["outputs"]
        item["outputs"] = tuple(
            str(v) for v in ([outputs] if isinstance(outputs, str) else outputs or ())
        )
    for key in ("port", "max_attempts"):
        if key in item:
            item[key] = int(item[key])
    for key in ("backoff_seconds", "backoff_max_seconds", "timeout_seconds"):
        if key in item:
            item[key] = float(item[key])
    return Destination(**item)


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from a YAML file, the environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    defaults = Settings()
    known = {f.name: getattr(defaults, f.name) for f in fields(Settings)}
    values: dict[str, Any] = {}

    path = config_file or (
        Path(environ[ENV_PREFIX + "CONFIG"]) if environ.get(ENV_PREFIX + "CONFIG") else None
    )
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        unknown = sorted(set(loaded) - set(known))
        if unknown:
            raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
        values.update({k: _coerce(k, v, known[k]) for k, v in loaded.items()})

    for name, default in known.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if name in {"modalities", "destinations", "routing", "promotion", "console_users"}:
            raw_value: Any = yaml.safe_load(raw)
        else:
            raw_value = raw
        values[name] = _coerce(name, raw_value, default)

    for name, value in (overrides or {}).items():
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _coerce(name, value, known[name])
    try:
        return Settings(**values)
    except TypeError as error:
        raise ConfigError(str(error)) from error

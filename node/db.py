"""The database: every table the node stores, its engine, and the migrations that make it.

Why one module: the schema used to be whatever tables the modules imported so far had
declared when ``metadata.create_all`` ran, so it depended on import order, and a changed
table could not reach a PostgreSQL site that cannot drop its data. Now every table is
declared here, and the schema is only ever made or changed by the Alembic migrations in
``node/migrations/versions/``, applied by :func:`upgrade` when a store starts.

Stored identifiers are DICOM UIDs and Orthanc ids only, never names or patient ids.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

metadata = sa.MetaData()

# -- jobs: one row per exam analysis, its audit trail, routing record and node state -------

jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
    sa.Column("model_ref", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("result", sa.JSON),
)

job_events_table = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("from_state", sa.String(16)),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("worker", sa.String(64)),
    sa.Column("reason", sa.Text),
)

routing_table = sa.Table(
    "routing_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
    sa.Column("series_instance_uid", sa.String(64), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("instances", sa.Integer, nullable=False),
    sa.UniqueConstraint("series_instance_uid", "decision", "reason", name="uq_routing"),
)

node_state_table = sa.Table(
    "node_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# -- deliveries: one row per (job, destination) ---------------------------------------------

deliveries_table = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("kinds", sa.JSON, nullable=False),  # the output kinds this destination receives
    sa.Column("sent", sa.Integer, nullable=False),  # instances accepted by the destination
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("job_id", "destination", name="uq_delivery"),
)

# -- review: shadow-model results and radiologists' feedback --------------------------------

shadow_results_table = sa.Table(
    "shadow_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("live_model", sa.String(128), nullable=False),
    sa.Column("shadow_model", sa.String(128), nullable=False),
    sa.Column("live_score", sa.Float, nullable=False),
    sa.Column("live_recall", sa.Boolean, nullable=False),
    sa.Column("shadow_score", sa.Float, nullable=False),
    sa.Column("shadow_recall", sa.Boolean, nullable=False),
    sa.Column("agree", sa.Boolean, nullable=False),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.UniqueConstraint("job_id", "shadow_model", name="uq_shadow_job_model"),
)

feedback_table = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("finding", sa.Integer, nullable=False),  # 0: the exam
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("agree", sa.Boolean, nullable=False),
    sa.Column("birads", sa.Integer),
    sa.Column("pathology", sa.String(16)),
    sa.Column("satisfaction", sa.Integer),
    sa.Column("comment", sa.Text),
    sa.UniqueConstraint("job_id", "finding", name="uq_feedback_job_finding"),
)

# -- engine and migrations ------------------------------------------------------------------

MIGRATIONS = Path(__file__).parent / "migrations"
#: The revision whose schema is the one nodes made with ``create_all`` before migrations.
BASELINE = "0001"
VERSION_TABLE = "alembic_version"
#: The tables of the baseline: what every node before migrations had made by its first exam.
BASELINE_TABLES = frozenset(
    {
        "jobs",
        "job_events",
        "routing_decisions",
        "node_state",
        "deliveries",
        "shadow_results",
        "feedback",
    }
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> Engine:
    """An engine with the pragmas the stores rely on (WAL lets readers run beside a writer)."""
    engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    """The migrations' configuration, built in code: no alembic.ini is needed at run time.

    ``connection`` is handed to ``env.py``, so the migrations run in the caller's transaction.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call on every start-up.

    A database made by a node before migrations (its tables, no ``alembic_version``) is
    stamped at the baseline, keeping every row, then upgraded; nothing is ever dropped. One
    that only a command had touched (some of the tables, never a job) gets the missing ones
    from the baseline revision, which keeps the tables it finds.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two replicas starting at once: one migrates, the other waits, then finds it done.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(4242001)"))
        config = alembic_config(connection)
        present = set(sa.inspect(connection).get_table_names())
        if VERSION_TABLE not in present and BASELINE_TABLES <= present:
            log.warning("database made before migrations: stamping it at revision %s", BASELINE)
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")

"""The baseline: the schema of the node before migrations (what ``create_all`` made).

A table that an older node already made is kept as it is; ``node.db.upgrade`` stamps a
database holding all of them at this revision without running it.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("model_ref", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
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
    op.create_index(op.f("ix_jobs_study_instance_uid"), "jobs", ["study_instance_uid"])
    op.create_index(op.f("ix_jobs_state"), "jobs", ["state"])


def _job_events() -> None:
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(64)),
        sa.Column("reason", sa.Text),
    )
    op.create_index(op.f("ix_job_events_job_id"), "job_events", ["job_id"])


def _routing_decisions() -> None:
    op.create_table(
        "routing_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.UniqueConstraint("series_instance_uid", "decision", "reason", name="uq_routing"),
    )
    op.create_index(
        op.f("ix_routing_decisions_study_instance_uid"),
        "routing_decisions",
        ["study_instance_uid"],
    )


def _node_state() -> None:
    op.create_table(
        "node_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def _deliveries() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("kinds", sa.JSON, nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("job_id", "destination", name="uq_delivery"),
    )
    op.create_index(op.f("ix_deliveries_job_id"), "deliveries", ["job_id"])
    op.create_index(op.f("ix_deliveries_state"), "deliveries", ["state"])


def _shadow_results() -> None:
    op.create_table(
        "shadow_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
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
    op.create_index(op.f("ix_shadow_results_job_id"), "shadow_results", ["job_id"])


def _feedback() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("finding", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("agree", sa.Boolean, nullable=False),
        sa.Column("birads", sa.Integer),
        sa.Column("pathology", sa.String(16)),
        sa.Column("satisfaction", sa.Integer),
        sa.Column("comment", sa.Text),
        sa.UniqueConstraint("job_id", "finding", name="uq_feedback_job_finding"),
    )
    op.create_index(op.f("ix_feedback_job_id"), "feedback", ["job_id"])


#: In dependency order: ``jobs`` first, every other table refers to it.
TABLES: dict[str, Callable[[], None]] = {
    "jobs": _jobs,
    "job_events": _job_events,
    "routing_decisions": _routing_decisions,
    "node_state": _node_state,
    "deliveries": _deliveries,
    "shadow_results": _shadow_results,
    "feedback": _feedback,
}


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in present:
            create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)

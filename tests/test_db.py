"""The schema is made by migrations only: a fresh database, one made by a node before
migrations (kept, stamped at the baseline), and re-runs that change nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from node import db
from node.jobs.states import JobState
from node.jobs.store import JobStore
from tests.postgres import postgres_server


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    else:
        base: str = request.getfixturevalue("postgres_url")
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        name = f"schema_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        url = base.rsplit("/", 1)[0] + "/" + name
    engine = db.create_engine(url)
    yield engine
    engine.dispose()


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def differences(engine: Engine) -> list[object]:
    """What autogenerate would change to make the database match ``node.db``'s tables."""
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), db.metadata))


def head() -> str:
    head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
    assert head is not None
    return head


def make_pre_migration_database(engine: Engine) -> None:
    """What a node before migrations left: the baseline tables and no alembic_version."""
    with engine.begin() as connection:
        command.upgrade(db.alembic_config(connection), db.BASELINE)
        connection.execute(sa.text(f"DROP TABLE {db.VERSION_TABLE}"))


def add_job(engine: Engine) -> int:
    with engine.begin() as connection:
        inserted = connection.execute(
            db.jobs_table.insert().values(
                idempotency_key="old",
                study_instance_uid="1.2.3",
                model_ref="demo/1.0.0",
                state=JobState.DONE.value,
                attempts=1,
                max_attempts=3,
                next_attempt_at=1.0,
                created_at=1.0,
                updated_at=2.0,
                payload={"instances": []},
                result={"score": 0.25},
            )
        ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def test_fresh_database_gets_exactly_the_declared_schema(engine: Engine) -> None:
    db.upgrade(engine)
    assert revision_of(engine) == head()
    assert set(sa.inspect(engine).get_table_names()) == db.BASELINE_TABLES | {db.VERSION_TABLE}
    assert differences(engine) == []


def test_upgrade_is_idempotent(engine: Engine) -> None:
    db.upgrade(engine)
    job_id = add_job(engine)
    db.upgrade(engine)
    JobStore(engine)  # every store runs it at start-up
    assert revision_of(engine) == head()
    assert JobStore(engine).get(job_id).result == {"score": 0.25}
    assert differences(engine) == []


def test_database_from_before_migrations_is_stamped_and_keeps_its_jobs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    make_pre_migration_database(engine)
    job_id = add_job(engine)
    assert revision_of(engine) is None

    store = JobStore(engine)

    assert "stamping it at revision 0001" in caplog.text
    assert revision_of(engine) == head()
    job = store.get(job_id)
    assert job.state is JobState.DONE and job.result == {"score": 0.25}
    assert differences(engine) == []


def test_database_a_command_had_only_begun_gets_the_missing_tables(engine: Engine) -> None:
    make_pre_migration_database(engine)
    with engine.begin() as connection:
        for name in ("feedback", "shadow_results", "deliveries"):
            connection.execute(sa.text(f"DROP TABLE {name}"))
    job_id = add_job(engine)

    db.upgrade(engine)

    assert revision_of(engine) == head()
    assert JobStore(engine).get(job_id).model_ref == "demo/1.0.0"
    assert differences(engine) == []


def test_migrations_ship_inside_the_package() -> None:
    assert (db.MIGRATIONS / "__init__.py").is_file()
    assert (db.MIGRATIONS / "versions" / "__init__.py").is_file()
    assert db.MIGRATIONS.parent == Path(db.__file__).parent

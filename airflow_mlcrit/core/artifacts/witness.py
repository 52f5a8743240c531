"""A witness of alias moves outside the bucket: each history entry's number and digest, mirrored
in a SQL table (PostgreSQL in production, any SQLAlchemy URL) that writers of the bucket cannot
reach. The hash chain shows an edited or inserted entry, but someone who can write to the bucket
can delete the newest entries (and the head record) and leave an older, intact chain: without a
witness that reads as a rollback nobody made. The ledger checks every read of an alias against
the witness and refuses a head that went backwards (core/artifacts/ledger.py)."""

from __future__ import annotations

import datetime as dt

from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError

TABLE = "mlcrit_alias_witness"


class SqlWitness:
    """Alias moves of one store (``store_id``: its root URI) in the table ``mlcrit_alias_witness``
    of the database at ``url``, created on first use."""

    def __init__(self, url: str, store_id: str):
        import sqlalchemy as sa

        if not url:
            raise ConfigError("a witness needs a database URL (MLCRIT_WITNESS_URL or [mlcrit] witness_conn_id)")
        self.store_id = store_id
        self._engine = sa.create_engine(url, pool_pre_ping=True)
        meta = sa.MetaData()
        self._table = sa.Table(
            TABLE,
            meta,
            sa.Column("store", sa.String(1024), primary_key=True),
            sa.Column("artifact", sa.String(512), primary_key=True),
            sa.Column("alias", sa.String(256), primary_key=True),
            sa.Column("seq", sa.Integer, primary_key=True),
            sa.Column("entry_digest", sa.String(80), nullable=False),
            sa.Column("to_version", sa.Integer, nullable=True),
            sa.Column("recorded_at", sa.String(40), nullable=False),
        )
        try:
            meta.create_all(self._engine)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"the alias witness's database cannot be reached or set up: {exc}") from None
        self.url = self._engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"SqlWitness({self.url!r})"

    def record(self, artifact: str, alias: str, seq: int, digest: str, to_version: int | None) -> None:
        """Mirror entry ``seq``; the same entry recorded twice is one row, another digest at the
        same number is refused (an entry rewritten in the bucket)."""
        import sqlalchemy as sa

        row = {"store": self.store_id, "artifact": artifact, "alias": alias, "seq": seq}
        t = self._table
        with self._engine.begin() as conn:
            seen = conn.execute(
                sa.select(t.c.entry_digest).where(*[t.c[k] == v for k, v in row.items()])
            ).scalar_one_or_none()
            if seen is None:
                now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                try:
                    conn.execute(t.insert().values(**row, entry_digest=digest, to_version=to_version, recorded_at=now))
                    return
                except sa.exc.IntegrityError:  # a racing recorder of the same entry
                    seen = conn.execute(
                        sa.select(t.c.entry_digest).where(*[t.c[k] == v for k, v in row.items()])
                    ).scalar_one()
            if seen != digest:
                raise ArtifactIntegrityError(
                    f"alias {alias!r} of {artifact}: the witness holds another entry {seq} ({seen}) than the store "
                    f"({digest}): the history was rewritten"
                )

    def newest(self, artifact: str, alias: str) -> tuple[int, str] | None:
        """(seq, digest) of the newest entry the witness saw, or None."""
        import sqlalchemy as sa

        t = self._table
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.seq, t.c.entry_digest)
                .where(t.c.store == self.store_id, t.c.artifact == artifact, t.c.alias == alias)
                .order_by(t.c.seq.desc())
                .limit(1)
            ).first()
        return (row.seq, row.entry_digest) if row is not None else None

    def aliases(self) -> list[tuple[str, str]]:
        """(artifact, alias) of every alias the witness saw move in this store."""
        import sqlalchemy as sa

        t = self._table
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.artifact, t.c.alias).where(t.c.store == self.store_id).distinct())
            return sorted((r.artifact, r.alias) for r in rows)

    def dispose(self) -> None:
        self._engine.dispose()


def witness_from_env(store_id: str) -> SqlWitness | None:
    """The witness named by ``MLCRIT_WITNESS_URL`` (a SQLAlchemy URL), or None."""
    import os

    url = os.environ.get("MLCRIT_WITNESS_URL")
    return SqlWitness(url, store_id) if url else None

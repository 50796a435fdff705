//! Versioned, append-only schema migrations, tracked in `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: append a new one. Migration `n`
//! (1-based) brings `user_version` from `n - 1` to `n`.

use rusqlite::Connection;

/// The migrations, in order.
pub const MIGRATIONS: &[&str] = &[
    // 1: uploads, keys, lookup, upload members, tokens.
    r#"
CREATE TABLE uploads (
    id            INTEGER PRIMARY KEY,
    user          TEXT NOT NULL,
    token_id      INTEGER,
    filename      TEXT,
    size          INTEGER NOT NULL DEFAULT 0,
    download_url  TEXT,
    try_symbols   INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL,            -- running | complete | failed
    http_status   INTEGER,
    error         TEXT,
    files_count   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,         -- unix milliseconds
    completed_at  INTEGER
);
CREATE INDEX uploads_created_at ON uploads(created_at);

CREATE TABLE keys (
    id               INTEGER PRIMARY KEY,
    namespace        TEXT NOT NULL CHECK (namespace IN ('release', 'try')),
    key              TEXT NOT NULL,         -- <module>/<DEBUG_ID>/<file> as first stored
    key_norm         TEXT NOT NULL,         -- lower-cased key: keys are unique case-insensitively
    blob             TEXT NOT NULL,         -- BLAKE3 of the original bytes, 64 hex
    encoding         TEXT NOT NULL CHECK (encoding IN ('identity', 'gzip')),
    size             INTEGER NOT NULL,      -- original bytes
    stored_size      INTEGER NOT NULL,      -- bytes on disk
    kind             TEXT NOT NULL,
    debug_file       TEXT,
    debug_id         TEXT,
    code_file        TEXT,
    code_id          TEXT,
    generator        TEXT,
    os               TEXT,
    arch             TEXT,
    upload_id        INTEGER,
    created_at       INTEGER NOT NULL,
    last_uploaded_at INTEGER NOT NULL,
    UNIQUE (namespace, key_norm)
);
CREATE INDEX keys_blob ON keys(blob);

CREATE TABLE lookup (
    lkey      TEXT NOT NULL,                -- normalised lookup key
    namespace TEXT NOT NULL,
    key_id    INTEGER NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
    PRIMARY KEY (lkey, namespace, key_id)
) WITHOUT ROWID;
CREATE INDEX lookup_key_id ON lookup(key_id);

CREATE TABLE upload_members (
    id          INTEGER PRIMARY KEY,
    upload_id   INTEGER NOT NULL REFERENCES uploads(id),
    key         TEXT NOT NULL,
    outcome     TEXT NOT NULL,              -- new | replaced | skipped | ignored | failed
    size        INTEGER,
    stored_size INTEGER,
    blake3      TEXT,
    debug_file  TEXT,
    debug_id    TEXT,
    code_file   TEXT,
    code_id     TEXT,
    generator   TEXT,
    error       TEXT
);
CREATE INDEX upload_members_upload ON upload_members(upload_id);

CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,       -- BLAKE3 of the secret, 64 hex
    permissions TEXT NOT NULL,              -- comma-separated
    user        TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
"#,
    // 2: missing symbols; lookups of records by debug and code identity.
    r#"
CREATE TABLE missing (
    id         INTEGER PRIMARY KEY,
    debug_file TEXT NOT NULL,
    debug_id   TEXT NOT NULL,
    code_file  TEXT NOT NULL DEFAULT '',
    code_id    TEXT NOT NULL DEFAULT '',
    count      INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    UNIQUE (debug_file, debug_id)
);
CREATE INDEX missing_last_seen ON missing(last_seen);
CREATE INDEX keys_debug ON keys(debug_file COLLATE NOCASE, debug_id COLLATE NOCASE);
CREATE INDEX keys_code ON keys(code_file COLLATE NOCASE, code_id COLLATE NOCASE);
CREATE INDEX keys_created_at ON keys(created_at);
"#,
    // 3: misses recorded before their fields were bounded (255-byte names, ids of at most
    // 80 hex digits after a 16-byte prefix) go: anonymous clients wrote them.
    r#"
DELETE FROM missing
WHERE length(CAST(debug_file AS BLOB)) > 255 OR length(CAST(debug_id AS BLOB)) > 96
   OR length(CAST(code_file AS BLOB)) > 255 OR length(CAST(code_id AS BLOB)) > 96;
"#,
    // 4: blobs the index itself let go of (a key expired, deleted or replaced). GC
    // deletes those freely; a blob no row names that is not here is one the index
    // never knew (a lost or older index), and GC's share limit counts it.
    r#"
CREATE TABLE released (
    blob     TEXT NOT NULL,
    encoding TEXT NOT NULL,
    PRIMARY KEY (blob, encoding)
) WITHOUT ROWID;
CREATE TRIGGER keys_release_deleted AFTER DELETE ON keys BEGIN
    INSERT OR IGNORE INTO released (blob, encoding) VALUES (old.blob, old.encoding);
END;
CREATE TRIGGER keys_release_replaced AFTER UPDATE OF blob, encoding ON keys
WHEN old.blob <> new.blob OR old.encoding <> new.encoding BEGIN
    INSERT OR IGNORE INTO released (blob, encoding) VALUES (old.blob, old.encoding);
END;
"#,
    // 5: what an upload member was stored as, whole: an upload's manifest (blobs on S3)
    // is written from these rows, and `reindex --from-bucket` reads it back.
    r#"
ALTER TABLE upload_members ADD COLUMN namespace TEXT;
ALTER TABLE upload_members ADD COLUMN encoding TEXT;
ALTER TABLE upload_members ADD COLUMN kind TEXT;
ALTER TABLE upload_members ADD COLUMN os TEXT;
ALTER TABLE upload_members ADD COLUMN arch TEXT;
"#,
    // 6: facts about the store itself (`store_id`: which bucket prefix is this store's).
    r#"
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // 7: when each member was committed (the order a rebuild from manifests keeps),
    // and when an upload's manifest was written (those still owed are written by GC).
    r#"
ALTER TABLE upload_members ADD COLUMN committed_at INTEGER;
ALTER TABLE uploads ADD COLUMN manifest_at INTEGER;
"#,
    // 8: case-insensitive identity matches are written lower(a) = lower(b) (the
    // query text both engines read): indexes on those expressions.
    r#"
CREATE INDEX keys_debug_lower ON keys(lower(debug_file), lower(debug_id));
CREATE INDEX keys_code_lower ON keys(lower(code_file), lower(code_id));
DROP INDEX keys_debug;
DROP INDEX keys_code;
"#,
    // 9: blobs an upload in progress found stored and is about to link, where the blob
    // store cannot make a blob young again (objects are immutable): GC counts a blob's
    // age from its pin as from its modification time.
    r#"
CREATE TABLE blob_pins (
    blob         TEXT NOT NULL,
    encoding     TEXT NOT NULL,
    pinned_at    INTEGER NOT NULL,
    PRIMARY KEY (blob, encoding)
);
"#,
    // 10: a third namespace, `cache`: files fetched from upstream symbol servers,
    // never overriding release or try. SQLite cannot change a CHECK in place: the
    // table is rebuilt (foreign keys off meanwhile, see `migrate`), its indexes and
    // triggers with it.
    r#"
CREATE TABLE keys_new (
    id               INTEGER PRIMARY KEY,
    namespace        TEXT NOT NULL CHECK (namespace IN ('release', 'try', 'cache')),
    key              TEXT NOT NULL,
    key_norm         TEXT NOT NULL,
    blob             TEXT NOT NULL,
    encoding         TEXT NOT NULL CHECK (encoding IN ('identity', 'gzip')),
    size             INTEGER NOT NULL,
    stored_size      INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    debug_file       TEXT,
    debug_id         TEXT,
    code_file        TEXT,
    code_id          TEXT,
    generator        TEXT,
    os               TEXT,
    arch             TEXT,
    upload_id        INTEGER,
    created_at       INTEGER NOT NULL,
    last_uploaded_at INTEGER NOT NULL,
    UNIQUE (namespace, key_norm)
);
INSERT INTO keys_new (id, namespace, key, key_norm, blob, encoding, size, stored_size, kind,
    debug_file, debug_id, code_file, code_id, generator, os, arch, upload_id, created_at,
    last_uploaded_at)
SELECT id, namespace, key, key_norm, blob, encoding, size, stored_size, kind,
    debug_file, debug_id, code_file, code_id, generator, os, arch, upload_id, created_at,
    last_uploaded_at FROM keys;
DROP TABLE keys;
ALTER TABLE keys_new RENAME TO keys;
CREATE INDEX keys_blob ON keys(blob);
CREATE INDEX keys_created_at ON keys(created_at);
CREATE INDEX keys_debug_lower ON keys(lower(debug_file), lower(debug_id));
CREATE INDEX keys_code_lower ON keys(lower(code_file), lower(code_id));
CREATE TRIGGER keys_release_deleted AFTER DELETE ON keys BEGIN
    INSERT OR IGNORE INTO released (blob, encoding) VALUES (old.blob, old.encoding);
END;
CREATE TRIGGER keys_release_replaced AFTER UPDATE OF blob, encoding ON keys
WHEN old.blob <> new.blob OR old.encoding <> new.encoding BEGIN
    INSERT OR IGNORE INTO released (blob, encoding) VALUES (old.blob, old.encoding);
END;
"#,
    // 11: when a fetched file (`cache`) was last asked for, written in batches: GC
    // drops the least recently used first and those unused for `cache_retention`.
    r#"
ALTER TABLE keys ADD COLUMN last_accessed_at INTEGER;
"#,
    // 12: debug files by debug id alone, to make a missing `.sym` from the
    // debug file of its id (whatever name that file was uploaded under).
    r#"
CREATE INDEX keys_debug_id_lower ON keys(lower(debug_id));
"#,
    // 13: zip members' compressed streams already read (BLAKE3 of the method,
    // CRC-32, sizes and compressed bytes): the blob they inflate to and its
    // identity, so a re-upload skips an unchanged member without inflating it.
    r#"
CREATE TABLE member_streams (
    stream       TEXT PRIMARY KEY,
    blob         TEXT NOT NULL,
    identity     TEXT NOT NULL,          -- JSON of the identity read from the blob
    created_at   INTEGER NOT NULL
);
CREATE INDEX member_streams_blob ON member_streams(blob);
"#,
    // 14: the records API's first page (newest first) read from an index, not a
    // sort of every key. (`keys_blob` already ends in the rowid, which verify's
    // paging in `(blob, id)` order needs.) Member streams are now named over the
    // BLAKE3 of their compressed bytes (hashed as a zip arrives), not the bytes
    // themselves: the names kept so far will not be asked for again.
    r#"
CREATE INDEX IF NOT EXISTS keys_last_uploaded ON keys(last_uploaded_at);
DELETE FROM member_streams;
"#,
];

/// The same migrations for PostgreSQL, version for version: the same tables,
/// columns and meaning in PostgreSQL's words (64-bit integers throughout,
/// identity columns, triggers as functions).
pub const MIGRATIONS_PG: &[&str] = &[
    // 1
    r#"
CREATE TABLE uploads (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    "user"        TEXT NOT NULL,
    token_id      BIGINT,
    filename      TEXT,
    size          BIGINT NOT NULL DEFAULT 0,
    download_url  TEXT,
    try_symbols   BIGINT NOT NULL DEFAULT 0,
    status        TEXT NOT NULL,
    http_status   BIGINT,
    error         TEXT,
    files_count   BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    completed_at  BIGINT
);
CREATE INDEX uploads_created_at ON uploads(created_at);
CREATE TABLE keys (
    id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    namespace        TEXT NOT NULL CHECK (namespace IN ('release', 'try')),
    key              TEXT NOT NULL,
    key_norm         TEXT NOT NULL,
    blob             TEXT NOT NULL,
    encoding         TEXT NOT NULL CHECK (encoding IN ('identity', 'gzip')),
    size             BIGINT NOT NULL,
    stored_size      BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    debug_file       TEXT,
    debug_id         TEXT,
    code_file        TEXT,
    code_id          TEXT,
    generator        TEXT,
    os               TEXT,
    arch             TEXT,
    upload_id        BIGINT,
    created_at       BIGINT NOT NULL,
    last_uploaded_at BIGINT NOT NULL,
    UNIQUE (namespace, key_norm)
);
CREATE INDEX keys_blob ON keys(blob);
CREATE TABLE lookup (
    lkey      TEXT NOT NULL,
    namespace TEXT NOT NULL,
    key_id    BIGINT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
    PRIMARY KEY (lkey, namespace, key_id)
);
CREATE INDEX lookup_key_id ON lookup(key_id);
CREATE TABLE upload_members (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    upload_id   BIGINT NOT NULL REFERENCES uploads(id),
    key         TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    size        BIGINT,
    stored_size BIGINT,
    blake3      TEXT,
    debug_file  TEXT,
    debug_id    TEXT,
    code_file   TEXT,
    code_id     TEXT,
    generator   TEXT,
    error       TEXT
);
CREATE INDEX upload_members_upload ON upload_members(upload_id);
CREATE TABLE tokens (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    "user"      TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
"#,
    // 2
    r#"
CREATE TABLE missing (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    debug_file TEXT NOT NULL,
    debug_id   TEXT NOT NULL,
    code_file  TEXT NOT NULL DEFAULT '',
    code_id    TEXT NOT NULL DEFAULT '',
    count      BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    UNIQUE (debug_file, debug_id)
);
CREATE INDEX missing_last_seen ON missing(last_seen);
CREATE INDEX keys_debug ON keys(debug_file, debug_id);
CREATE INDEX keys_code ON keys(code_file, code_id);
CREATE INDEX keys_created_at ON keys(created_at);
"#,
    // 3
    r#"
DELETE FROM missing
WHERE octet_length(debug_file) > 255 OR octet_length(debug_id) > 96
   OR octet_length(code_file) > 255 OR octet_length(code_id) > 96;
"#,
    // 4
    r#"
CREATE TABLE released (
    blob     TEXT NOT NULL,
    encoding TEXT NOT NULL,
    PRIMARY KEY (blob, encoding)
);
CREATE FUNCTION keys_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.blob <> NEW.blob OR OLD.encoding <> NEW.encoding THEN
        INSERT INTO released (blob, encoding) VALUES (OLD.blob, OLD.encoding)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER keys_release_deleted AFTER DELETE ON keys
    FOR EACH ROW EXECUTE FUNCTION keys_release();
CREATE TRIGGER keys_release_replaced AFTER UPDATE OF blob, encoding ON keys
    FOR EACH ROW EXECUTE FUNCTION keys_release();
"#,
    // 5
    r#"
ALTER TABLE upload_members ADD COLUMN namespace TEXT;
ALTER TABLE upload_members ADD COLUMN encoding TEXT;
ALTER TABLE upload_members ADD COLUMN kind TEXT;
ALTER TABLE upload_members ADD COLUMN os TEXT;
ALTER TABLE upload_members ADD COLUMN arch TEXT;
"#,
    // 6
    r#"
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    // 7
    r#"
ALTER TABLE upload_members ADD COLUMN committed_at BIGINT;
ALTER TABLE uploads ADD COLUMN manifest_at BIGINT;
"#,
    // 8
    r#"
CREATE INDEX keys_debug_lower ON keys(lower(debug_file), lower(debug_id));
CREATE INDEX keys_code_lower ON keys(lower(code_file), lower(code_id));
DROP INDEX keys_debug;
DROP INDEX keys_code;
"#,
    // 9
    r#"
CREATE TABLE blob_pins (
    blob         TEXT NOT NULL,
    encoding     TEXT NOT NULL,
    pinned_at    BIGINT NOT NULL,
    PRIMARY KEY (blob, encoding)
);
"#,
    // 10
    r#"
ALTER TABLE keys DROP CONSTRAINT keys_namespace_check;
ALTER TABLE keys ADD CONSTRAINT keys_namespace_check
    CHECK (namespace IN ('release', 'try', 'cache'));
"#,
    // 11
    r#"
ALTER TABLE keys ADD COLUMN last_accessed_at BIGINT;
"#,
    // 12
    r#"
CREATE INDEX keys_debug_id_lower ON keys(lower(debug_id));
"#,
    // 13
    r#"
CREATE TABLE member_streams (
    stream       TEXT PRIMARY KEY,
    blob         TEXT NOT NULL,
    identity     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX member_streams_blob ON member_streams(blob);
"#,
    // 14
    r#"
CREATE INDEX IF NOT EXISTS keys_last_uploaded ON keys(last_uploaded_at, id);
CREATE INDEX IF NOT EXISTS keys_blob_id ON keys(blob, id);
DROP INDEX IF EXISTS keys_blob;
DELETE FROM member_streams;
"#,
];

/// Brings a PostgreSQL schema up to date. Every daemon runs it at start; an
/// advisory lock makes daemons that start together migrate once, one after
/// the other, each migration in its own transaction. The version is kept in
/// `schema_version`.
pub fn migrate_pg(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    // Any fixed number, the same for every daemon of a store.
    const LOCK: i64 = 0x0073_796d_6465_706f; // "symdepo"
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK])?;
    let result = (|| {
        // "already exists, skipping" is no news to the operator.
        client.batch_execute("SET client_min_messages TO WARNING")?;
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL); \
             INSERT INTO schema_version (version) SELECT 0 \
             WHERE NOT EXISTS (SELECT 1 FROM schema_version)",
        )?;
        let current: i64 = client
            .query_one("SELECT version FROM schema_version", &[])?
            .get(0);
        for (i, sql) in MIGRATIONS_PG.iter().enumerate().skip(current as usize) {
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute("UPDATE schema_version SET version = $1", &[&(i as i64 + 1)])?;
            tx.commit()?;
        }
        Ok(())
    })();
    client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK])?;
    result
}

/// Brings the schema up to date, one transaction per migration.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current >= MIGRATIONS.len() {
        return Ok(());
    }
    // A table rebuilt (dropped and made anew) must not cascade into the rows
    // that refer to it: foreign keys are off while migrating (SQLite ignores
    // the switch inside a transaction), and checked whole afterwards.
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = (|| {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            let broken: Option<String> = tx
                .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
                .ok();
            if let Some(table) = broken {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                    Some(format!(
                        "migration {}: a row of {table} refers to nothing",
                        i + 1
                    )),
                ));
            }
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    })();
    conn.pragma_update(None, "foreign_keys", enforced)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_record_the_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len());
    }

    #[test]
    fn the_keys_table_rebuilt_for_the_cache_namespace_keeps_rows_lookups_and_triggers() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        for (i, sql) in MIGRATIONS.iter().enumerate().take(9) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", i + 1).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO keys (id, namespace, key, key_norm, blob, encoding, size, stored_size, \
             kind, created_at, last_uploaded_at) \
             VALUES (7, 'release', 'a/B/c', 'a/b/c', 'h1', 'identity', 1, 1, 'sym', 0, 0); \
             INSERT INTO lookup (lkey, namespace, key_id) VALUES ('a/b/c', 'release', 7);",
        )
        .unwrap();
        // A cache key is refused before, taken after.
        let cache = "INSERT INTO keys (namespace, key, key_norm, blob, encoding, size, \
                     stored_size, kind, created_at, last_uploaded_at) \
                     VALUES ('cache', 'x/Y/z', 'x/y/z', 'h2', 'identity', 1, 1, 'sym', 0, 0)";
        assert!(conn.execute_batch(cache).is_err());
        migrate(&mut conn).unwrap();
        conn.execute_batch(cache).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM lookup WHERE key_id = 7", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1, "the lookup row survived the rebuild");
        let fk: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(fk, "foreign keys are enforced again");
        // The foreign key and the triggers are those of the new table.
        conn.execute_batch("DELETE FROM keys WHERE id = 7").unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM lookup", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "lookups cascade");
        let released: i64 = conn
            .query_row("SELECT COUNT(*) FROM released WHERE blob = 'h1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(released, 1, "the trigger keeps released");
    }

    #[test]
    fn unbounded_misses_of_older_versions_are_dropped() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS.iter().enumerate().take(2) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", i + 1).unwrap();
        }
        let huge = "x".repeat(15_000);
        for (file, code) in [
            ("ok.pdb", ""),
            (huge.as_str(), ""),
            ("ok2.pdb", huge.as_str()),
        ] {
            conn.execute(
                "INSERT INTO missing (debug_file, debug_id, code_file, count, first_seen, last_seen) \
                 VALUES (?1, 'ABC', ?2, 1, 0, 0)",
                [file, code],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let left: Vec<String> = conn
            .prepare("SELECT debug_file FROM missing")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, ["ok.pdb"]);
    }
}

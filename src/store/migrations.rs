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
];

/// Brings the schema up to date, one transaction per migration.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
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

//! The SQLite index: one writer connection behind a mutex, a pool of readers.
//!
//! WAL mode lets readers run while the writer commits, so lookups never wait
//! behind an upload. Every call here is blocking: callers on the async runtime
//! go through `spawn_blocking`.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::blobs::Encoding;
use super::migrations;
use super::sql::{Conn, ConnExt};
use crate::error::{Error, Result};
use crate::identity::Kind;

/// An index failure, as [`Error::Db`] carries it: the store's own type, so
/// that nothing outside the store names an engine's library. It shows (and
/// debug-prints) as the failure it wraps.
pub struct DbError(DbFailure);

enum DbFailure {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    /// A value of an unexpected type, a row that is not there.
    Other(String),
}

impl DbError {
    pub(crate) fn other(what: impl Into<String>) -> DbError {
        DbError(DbFailure::Other(what.into()))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            DbFailure::Sqlite(e) => e.fmt(f),
            // The server's own words, not only "db error".
            DbFailure::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
                None => e.fmt(f),
            },
            DbFailure::Other(e) => e.fmt(f),
        }
    }
}

impl std::fmt::Debug for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(DbFailure::Sqlite(e))
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError(DbFailure::Postgres(e))
    }
}

/// SQLite's "database or disk is full" is [`Error::StorageFull`]; any other
/// failure is [`Error::Db`].
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error::StorageFull(e.to_string()),
            _ => Error::Db(DbError(DbFailure::Sqlite(e))),
        }
    }
}

/// A failure through the engine seam ([`super::sql::Conn`]): as its engine's.
/// PostgreSQL that does not answer (a closed connection, a connection
/// failure, a server shutting down) is an outage: [`Error::Unavailable`].
impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        match e.0 {
            DbFailure::Sqlite(e) => e.into(),
            DbFailure::Postgres(e) if pg_unavailable(&e) => {
                tracing::error!(error = %e, "PostgreSQL does not answer");
                Error::Unavailable("the index database (PostgreSQL) does not answer".into())
            }
            other => Error::Db(DbError(other)),
        }
    }
}

/// Whether a PostgreSQL failure is the server or the connection, not the query.
fn pg_unavailable(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Connection exceptions, insufficient resources, operator intervention.
        Some(code) => ["08", "53", "57"]
            .iter()
            .any(|c| code.code().starts_with(c)),
        // No SQLSTATE: the connection itself failed.
        None => true,
    }
}

/// Where a key lives: uploaded as release or try, or fetched from an
/// upstream symbol server (`cache`, which never overrides the other two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Release,
    Try,
    Cache,
}

impl Namespace {
    /// Every namespace, in the order a lookup prefers them.
    pub const ALL: [Namespace; 3] = [Namespace::Release, Namespace::Try, Namespace::Cache];

    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Release => "release",
            Namespace::Try => "try",
            Namespace::Cache => "cache",
        }
    }

    /// Parses the stored form (`release`, `try`, `cache`).
    pub fn parse(s: &str) -> Option<Namespace> {
        match s {
            "release" => Some(Namespace::Release),
            "try" => Some(Namespace::Try),
            "cache" => Some(Namespace::Cache),
            _ => None,
        }
    }

    pub fn from_try(is_try: bool) -> Self {
        if is_try {
            Namespace::Try
        } else {
            Namespace::Release
        }
    }
}

/// One row of `keys`: the current state of a stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: i64,
    pub namespace: Namespace,
    pub key: String,
    pub blob: String,
    pub encoding: Encoding,
    pub size: u64,
    pub stored_size: u64,
    pub kind: Kind,
    pub debug_file: Option<String>,
    pub debug_id: Option<String>,
    pub code_file: Option<String>,
    pub code_id: Option<String>,
    pub generator: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub upload_id: Option<i64>,
    pub created_at: i64,
    pub last_uploaded_at: i64,
}

pub(crate) const KEY_COLUMNS: &str = "k.id, k.namespace, k.key, k.blob, k.encoding, k.size, \
     k.stored_size, k.kind, k.debug_file, k.debug_id, k.code_file, k.code_id, k.generator, \
     k.os, k.arch, k.upload_id, k.created_at, k.last_uploaded_at";

impl KeyRow {
    /// A row of [`KEY_COLUMNS`], from either engine.
    pub(crate) fn from_row(r: &super::sql::Row) -> std::result::Result<KeyRow, DbError> {
        let ns: String = r.get(1)?;
        let enc: String = r.get(4)?;
        let kind: String = r.get(7)?;
        Ok(KeyRow {
            id: r.get(0)?,
            namespace: Namespace::parse(&ns)
                .ok_or_else(|| DbError::other(format!("unknown namespace {ns:?}")))?,
            key: r.get(2)?,
            blob: r.get(3)?,
            encoding: match enc.as_str() {
                "identity" | "gzip" => Encoding::parse(&enc),
                other => return Err(DbError::other(format!("unknown encoding {other:?}"))),
            },
            size: r.get(5)?,
            stored_size: r.get(6)?,
            // A kind this version does not know can still be listed, served and deleted.
            kind: Kind::parse(&kind).unwrap_or(Kind::Unknown),
            debug_file: r.get(8)?,
            debug_id: r.get(9)?,
            code_file: r.get(10)?,
            code_id: r.get(11)?,
            generator: r.get(12)?,
            os: r.get(13)?,
            arch: r.get(14)?,
            upload_id: r.get(15)?,
            created_at: r.get(16)?,
            last_uploaded_at: r.get(17)?,
        })
    }

    pub fn is_gzip(&self) -> bool {
        self.encoding == Encoding::Gzip
    }
}

/// The connections to the index: `index.sqlite3` (one writer behind a mutex,
/// pooled readers), or PostgreSQL (a pool of `database_pool_size` clients).
#[derive(Debug)]
pub struct Db {
    engine: DbEngine,
    slots: super::slots::Slots,
}

#[derive(Debug)]
enum DbEngine {
    Sqlite {
        writer: Mutex<Connection>,
        readers: Mutex<Vec<Connection>>,
        path: std::path::PathBuf,
    },
    Postgres(PgPool),
}

const MAX_IDLE_READERS: usize = 16;

/// Serialises writers across every daemon of a store, as SQLite's single
/// writer does on one machine (a transaction-scoped advisory lock).
const PG_WRITE_LOCK: i64 = 0x0073_796d_6477_7269; // "symdwri"

/// PostgreSQL clients, at most `size` at once; a broken one is dropped and
/// the next request connects anew.
struct PgPool {
    url: String,
    /// This daemon among the store's: its own announcements are not news to it.
    id: String,
    size: usize,
    idle: Mutex<Vec<postgres::Client>>,
    /// Who may take a client next: first come, first served.
    turns: Mutex<Turns>,
    freed: std::sync::Condvar,
}

/// The pool's queue: tickets issued to waiters, the one served next, and
/// how many clients are out.
#[derive(Debug, Default)]
struct Turns {
    issued: u64,
    serving: u64,
    in_use: usize,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A client closes its connection on a runtime of its own, which cannot run
/// inside the daemon's: the last ones are closed on a thread of their own.
impl Drop for PgPool {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl PgPool {
    fn connect(url: &str) -> std::result::Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(url, postgres::NoTls)
    }

    /// Runs `f` on a client of the pool (waiting while all are in use).
    fn with<T>(&self, f: impl FnOnce(&mut postgres::Client) -> Result<T>) -> Result<T> {
        {
            // Waiters take clients in the order they came (a condition
            // variable alone wakes any of them, and a busy daemon's unlucky
            // request could wait behind hundreds of later ones).
            let mut t = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            let ticket = t.issued;
            t.issued += 1;
            while t.serving != ticket || t.in_use >= self.size {
                t = self.freed.wait(t).unwrap_or_else(|e| e.into_inner());
            }
            t.serving += 1;
            t.in_use += 1;
            // The next in line may find a client free too.
            self.freed.notify_all();
        }
        let result = (|| {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut client = match idle {
                Some(c) if !c.is_closed() => c,
                _ => Self::connect(&self.url).map_err(DbError::from)?,
            };
            let out = f(&mut client);
            if !client.is_closed() {
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(client);
            }
            out
        })();
        self.turns.lock().unwrap_or_else(|e| e.into_inner()).in_use -= 1;
        self.freed.notify_all();
        result
    }
}

impl Db {
    /// Opens (creating if needed) and migrates the index.
    pub fn open(path: &Path) -> Result<Db> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // A 201 promises durability: the writer syncs every commit.
        writer.pragma_update(None, "synchronous", "FULL")?;
        migrations::migrate(&mut writer)?;
        Ok(Db {
            engine: DbEngine::Sqlite {
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                path: path.to_path_buf(),
            },
            slots: super::slots::Slots::local(),
        })
    }

    /// Connects to PostgreSQL and migrates its schema (once, whichever daemon
    /// gets there first). A URL that does not connect is refused with one
    /// line naming `database_url`.
    pub fn open_postgres(url: &str, pool_size: usize) -> Result<Db> {
        let mut client = PgPool::connect(url).map_err(|e| {
            Error::Refused(format!(
                "database_url: cannot connect to PostgreSQL ({})",
                pg_reason(&e)
            ))
        })?;
        migrations::migrate_pg(&mut client).map_err(DbError::from)?;
        Ok(Db {
            engine: DbEngine::Postgres(PgPool {
                url: url.to_string(),
                id: super::random_hex(8),
                size: pool_size.max(1),
                idle: Mutex::new(vec![client]),
                turns: Mutex::new(Turns::default()),
                freed: std::sync::Condvar::new(),
            }),
            slots: super::slots::Slots::shared(url),
        })
    }

    /// Takes the store-wide lock of a job that must run on one daemon at a
    /// time (GC, expiry) without waiting: `None` while another daemon of the
    /// store holds it. On SQLite the store is one machine's, and the data
    /// dir's `maintenance.lock` already keeps such jobs apart.
    pub fn try_job_lock(&self, job: Job) -> Result<Option<JobLock>> {
        let DbEngine::Postgres(pool) = &self.engine else {
            return Ok(Some(JobLock {
                client: None,
                key: 0,
            }));
        };
        // A session lock on a connection of its own, held for the job's length.
        let mut client = PgPool::connect(&pool.url).map_err(DbError::from)?;
        let key = job.lock_key();
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(DbError::from)?
            .get(0);
        Ok(got.then_some(JobLock {
            client: Some(client),
            key,
        }))
    }

    /// Takes one of a token's `limit` upload slots (0: no limit), counted
    /// across every daemon of the store; `None` while all are taken.
    pub fn take_upload_slot(
        &self,
        token: i64,
        limit: usize,
    ) -> Result<Option<super::slots::UploadSlot>> {
        self.slots.take(token, limit)
    }

    /// Tells the other daemons of the store that keys changed (PostgreSQL
    /// `NOTIFY`); best effort: their caches' lifetime bounds a lost one.
    pub fn announce_change(&self) {
        if let DbEngine::Postgres(pool) = &self.engine {
            let sent = pool.with(|c| {
                c.exec(
                    "SELECT pg_notify(?1, ?2)",
                    &crate::sql_params![CHANGES_CHANNEL, pool.id.as_str()],
                )?;
                Ok(())
            });
            if let Err(e) = sent {
                tracing::warn!(error = %e, "could not announce a change of keys");
            }
        }
    }

    /// Moves `generation` on whenever another daemon announces a change, on a
    /// thread of its own that listens on a connection of its own (reconnecting
    /// when it drops) until `generation` is gone. Nothing on SQLite.
    pub fn follow_changes(&self, generation: std::sync::Weak<std::sync::atomic::AtomicU64>) {
        let DbEngine::Postgres(pool) = &self.engine else {
            return;
        };
        let (url, id) = (pool.url.clone(), pool.id.clone());
        let _ = std::thread::Builder::new()
            .name("pg-listen".into())
            .spawn(move || follow(&url, &id, &generation));
    }

    /// Which engine answers.
    pub fn engine(&self) -> super::sql::Engine {
        match self.engine {
            DbEngine::Sqlite { .. } => super::sql::Engine::Sqlite,
            DbEngine::Postgres(_) => super::sql::Engine::Postgres,
        }
    }

    /// Runs `f` on a pooled read connection, through the engine seam.
    pub fn reading<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        match &self.engine {
            DbEngine::Sqlite { readers, path, .. } => {
                let conn = readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let mut conn = match conn {
                    Some(c) => c,
                    None => open_reader(path)?,
                };
                let out = f(&mut conn);
                let mut pool = readers.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < MAX_IDLE_READERS {
                    pool.push(conn);
                }
                out
            }
            DbEngine::Postgres(pool) => pool.with(|c| f(c)),
        }
    }

    /// Runs `f` in one write transaction, through the engine seam: committed
    /// when `f` answers `Ok`, rolled back otherwise. Writers never overlap,
    /// on one machine or across daemons.
    pub fn writing<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        match &self.engine {
            DbEngine::Sqlite { writer, .. } => {
                let mut conn = writer.lock().unwrap_or_else(|e| e.into_inner());
                let mut tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            }
            DbEngine::Postgres(pool) => pool.with(|client| {
                let mut tx = client.transaction().map_err(DbError::from)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_WRITE_LOCK])
                    .map_err(DbError::from)?;
                let out = f(&mut tx)?;
                tx.commit().map_err(DbError::from)?;
                Ok(out)
            }),
        }
    }

    /// The schema version the index is at, read on a fresh connection where
    /// the engine is a file (its header and schema read anew, so damage a
    /// pooled connection's caches would hide is seen), after a page of every
    /// table.
    pub fn check_schema(&self) -> Result<usize> {
        let tables = ["keys", "lookup", "uploads", "tokens", "missing"];
        match &self.engine {
            DbEngine::Sqlite { path, .. } => {
                let c = open_reader(path)?;
                for table in tables {
                    let sql = format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)");
                    c.query_row(&sql, [], |r| r.get::<_, i64>(0))?;
                }
                Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
            }
            DbEngine::Postgres(pool) => pool.with(|c| {
                for table in tables {
                    let sql = format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS t");
                    c.one::<i64>(&sql, &[])?;
                }
                let v: i64 = c.one("SELECT version FROM schema_version", &[])?;
                Ok(usize::try_from(v).unwrap_or(0))
            }),
        }
    }

    /// The number of migrations this engine's schema has when up to date.
    pub fn schema_version_expected(&self) -> usize {
        match self.engine {
            DbEngine::Sqlite { .. } => migrations::MIGRATIONS.len(),
            DbEngine::Postgres(_) => migrations::MIGRATIONS_PG.len(),
        }
    }

    /// The current row of a key, by its normalised form.
    pub fn key_row(&self, ns: Namespace, key_norm: &str) -> Result<Option<KeyRow>> {
        self.reading(|c| key_row(c, ns, key_norm))
    }

    /// Finds the row a lookup key points at: release first, then try if
    /// asked, then what was fetched from upstream.
    pub fn lookup(&self, lkey: &str, include_try: bool) -> Result<Option<KeyRow>> {
        if lkey.contains('\0') {
            // No key holds a NUL (the segment rule), and PostgreSQL text cannot.
            return Ok(None);
        }
        self.reading(|c| {
            let row = c.row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM lookup l JOIN keys k ON k.id = l.key_id \
                     WHERE l.lkey = ?1 AND (l.namespace <> 'try' OR ?2 = 1) \
                     ORDER BY CASE l.namespace WHEN 'release' THEN 0 WHEN 'try' THEN 1 ELSE 2 END, \
                     k.last_uploaded_at DESC LIMIT 1"
                ),
                &crate::sql_params![lkey, include_try],
            )?;
            Ok(row.as_ref().map(KeyRow::from_row).transpose()?)
        })
    }
}

/// Reads a key's row inside any connection or transaction.
pub(crate) fn key_row(c: &mut dyn Conn, ns: Namespace, key_norm: &str) -> Result<Option<KeyRow>> {
    if key_norm.contains('\0') {
        return Ok(None);
    }
    let row = c.row(
        &format!("SELECT {KEY_COLUMNS} FROM keys k WHERE k.namespace = ?1 AND k.key_norm = ?2"),
        &crate::sql_params![ns.as_str(), key_norm],
    )?;
    Ok(row.as_ref().map(KeyRow::from_row).transpose()?)
}

/// The channel daemons announce changes of keys on.
const CHANGES_CHANNEL: &str = "symdepot_keys";

/// Listens for changes other daemons announce (not this one's own, `id`)
/// until `generation` is gone.
fn follow(url: &str, id: &str, generation: &std::sync::Weak<std::sync::atomic::AtomicU64>) {
    use postgres::fallible_iterator::FallibleIterator;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    while generation.strong_count() > 0 {
        let mut client = match PgPool::connect(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(reason = %pg_reason(&e), "cannot listen for other daemons' changes; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}")) {
            tracing::warn!(error = %e, "cannot listen for other daemons' changes; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        // Missed while not listening: whatever is cached may be stale.
        if let Some(g) = generation.upgrade() {
            g.fetch_add(1, Ordering::AcqRel);
        }
        loop {
            let Some(g) = generation.upgrade() else {
                return;
            };
            let mut heard = 0u64;
            let broken = {
                let mut notes = client.notifications();
                let mut it = notes.timeout_iter(Duration::from_millis(500));
                loop {
                    match it.next() {
                        Ok(Some(n)) if n.payload() != id => heard += 1,
                        Ok(Some(_)) => {}
                        Ok(None) => break false,
                        Err(_) => break true,
                    }
                }
            };
            if heard > 0 {
                g.fetch_add(1, Ordering::AcqRel);
            }
            if broken || client.is_closed() {
                break;
            }
        }
    }
}

/// Jobs that run on one daemon of a store at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// GC and expiry.
    Gc,
}

impl Job {
    /// The job's advisory lock key, the same for every daemon of a store.
    pub fn lock_key(self) -> i64 {
        match self {
            Job::Gc => 0x7379_6d64_6763, // "symdgc"
        }
    }
}

/// A held [`Job`] lock; released when dropped (or when its connection ends,
/// should the daemon die).
pub struct JobLock {
    client: Option<postgres::Client>,
    key: i64,
}

impl std::fmt::Debug for JobLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLock").field("key", &self.key).finish()
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Held by store verbs, which run off the async threads (as every
        // call to the index does).
        if let Some(mut client) = self.client.take() {
            let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&self.key]);
        }
    }
}

/// What a PostgreSQL failure to connect was, without the URL (which may
/// carry a password).
fn pg_reason(e: &postgres::Error) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(src) => src.to_string(),
        None => e.to_string(),
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&c)?;
    Ok(c)
}

fn configure(c: &Connection) -> rusqlite::Result<()> {
    c.busy_timeout(Duration::from_secs(30))?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    // Lookups read the index through the OS page cache (no copy per page) and
    // keep a larger page cache of their own: a million keys stay a point lookup.
    c.pragma_update(None, "mmap_size", 256i64 << 20)?;
    c.pragma_update(None, "cache_size", -16_384i64)?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::Conn;

    #[test]
    fn kinds_are_stored_as_their_text_and_other_text_reads_as_unknown() {
        let mut c = Connection::open_in_memory().unwrap();
        migrations::migrate(&mut c).unwrap();
        let texts: Vec<&str> = Kind::ALL
            .iter()
            .map(|k| k.as_str())
            .chain(["", "mystery", "SYM"])
            .collect();
        for (i, text) in texts.iter().enumerate() {
            let key = format!("m{i}/{i}/f");
            c.exec(
                "INSERT INTO keys (namespace, key, key_norm, blob, encoding, size, stored_size, \
                 kind, created_at, last_uploaded_at) \
                 VALUES ('release', ?1, ?1, 'b', 'identity', 0, 0, ?2, 0, 0)",
                &crate::sql_params![key.as_str(), *text],
            )
            .unwrap();
            let row = key_row(&mut c, Namespace::Release, &key).unwrap().unwrap();
            match Kind::ALL.iter().find(|k| k.as_str() == *text) {
                Some(k) => assert_eq!(row.kind, *k),
                None => assert_eq!(row.kind, Kind::Unknown, "{text:?}"),
            }
        }
    }
}

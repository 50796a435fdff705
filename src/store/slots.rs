//! Upload slots: how many uploads one token may have in progress at once
//! (`max_concurrent_uploads_per_token`), counted across every daemon of a
//! store.
//!
//! On SQLite the store is one machine's and the count is this process's. On
//! PostgreSQL slot `i` of token `t` is a session advisory lock, taken with
//! `pg_try_advisory_lock` on one connection a thread of this daemon keeps for
//! the purpose: a slot is free when no daemon holds its lock, and a daemon
//! that dies (its connection closing) gives its slots back by itself — one
//! whose host vanished without closing it, once TCP keepalives (set on both
//! ends of that connection) find it gone, about a minute later. Session
//! locks need a session of their own: a pooler in transaction mode
//! (PgBouncer's `pool_mode = transaction`) in front of PostgreSQL would lose
//! them, so the daemons connect to PostgreSQL directly or in session mode. Should
//! that connection drop while the daemon lives, the thread connects again and
//! takes its held slots again; in between another daemon may admit an upload
//! past the limit (the limit is a courtesy to the other tokens, not a guard
//! of the store's content).

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use super::index::DbError;
use crate::error::Result;

/// The slots of one store's tokens.
#[derive(Debug)]
pub(crate) enum Slots {
    /// This process's count per token.
    Local(Arc<Mutex<HashMap<i64, usize>>>),
    /// Advisory locks held by the keeper thread.
    Shared(Mutex<Sender<Ask>>),
}

/// A taken slot, given back when dropped.
#[derive(Debug)]
pub struct UploadSlot {
    held: Held,
}

#[derive(Debug)]
enum Held {
    Unlimited,
    Local(Arc<Mutex<HashMap<i64, usize>>>, i64),
    Shared(Sender<Ask>, i64),
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        match &self.held {
            Held::Unlimited => {}
            Held::Local(counts, token) => {
                let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = map.get_mut(token) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(token);
                    }
                }
            }
            // Never waits: a handler's future may be dropped on an async thread.
            Held::Shared(keeper, key) => {
                let _ = keeper.send(Ask::Release(*key));
            }
        }
    }
}

/// What the keeper thread is asked.
#[derive(Debug)]
pub(crate) enum Ask {
    /// Take the first free of these keys; answers which (or none).
    Take(Vec<i64>, Sender<Result<Option<i64>>>),
    Release(i64),
}

impl Slots {
    pub(crate) fn local() -> Slots {
        Slots::Local(Arc::default())
    }

    /// Slots on PostgreSQL at `url`, kept by a thread of their own that ends
    /// with the store.
    pub(crate) fn shared(url: &str) -> Slots {
        let (tx, rx) = channel();
        let url = url.to_string();
        if let Err(e) = std::thread::Builder::new()
            .name("pg-slots".into())
            .spawn(move || keep(&url, &rx))
        {
            tracing::error!(error = %e, "cannot start the upload-slot keeper; uploads will fail");
        }
        Slots::Shared(Mutex::new(tx))
    }

    /// Takes one of `token`'s `limit` slots (0: no limit), or `None` when all
    /// are taken. Blocking on PostgreSQL.
    pub(crate) fn take(&self, token: i64, limit: usize) -> Result<Option<UploadSlot>> {
        if limit == 0 {
            return Ok(Some(UploadSlot {
                held: Held::Unlimited,
            }));
        }
        match self {
            Slots::Local(counts) => {
                let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
                let n = map.entry(token).or_insert(0);
                if *n >= limit {
                    return Ok(None);
                }
                *n += 1;
                Ok(Some(UploadSlot {
                    held: Held::Local(counts.clone(), token),
                }))
            }
            Slots::Shared(keeper) => {
                let keeper = keeper.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let keys = (0..limit).map(|i| slot_key(token, i)).collect();
                let (tx, rx) = channel();
                keeper
                    .send(Ask::Take(keys, tx))
                    .map_err(|_| DbError::other("the upload-slot keeper has stopped"))?;
                // The keeper's own connection gives up on a silent server
                // well within this; a keeper stuck anyway costs an upload a
                // 503, not a blocking thread for ever.
                let got = rx
                    .recv_timeout(std::time::Duration::from_secs(90))
                    .map_err(|_| {
                        crate::error::Error::Unavailable(
                            "the index database (PostgreSQL) did not answer for an upload slot"
                                .into(),
                        )
                    })??;
                Ok(got.map(|key| UploadSlot {
                    held: Held::Shared(keeper, key),
                }))
            }
        }
    }
}

/// The advisory lock key of slot `i` of `token`: a hash, so any token id and
/// any limit fit the 64-bit key space (the store's other locks are small
/// constants a hash does not meet in practice).
fn slot_key(token: i64, i: usize) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(b"symdepot upload slot\0");
    h.update(&token.to_le_bytes());
    h.update(&(i as u64).to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8]
        .try_into()
        .expect("eight bytes");
    i64::from_le_bytes(bytes)
}

/// The keeper: one connection, the locks this daemon holds on it.
fn keep(url: &str, asks: &Receiver<Ask>) {
    let mut client: Option<postgres::Client> = None;
    let mut held: HashSet<i64> = HashSet::new();
    while let Ok(ask) = asks.recv() {
        match ask {
            Ask::Take(keys, answer) => {
                // A connection PostgreSQL dropped meanwhile (a restart) shows
                // only when used: once more on a fresh one.
                let mut got = take_first_free(url, &mut client, &held, &keys);
                if got.is_err() {
                    client = None;
                    got = take_first_free(url, &mut client, &held, &keys);
                }
                if let Ok(Some(key)) = got {
                    held.insert(key);
                }
                if got.is_err() {
                    client = None;
                }
                let _ = answer.send(got);
            }
            Ask::Release(key) => {
                held.remove(&key);
                if let Some(c) = client.as_mut()
                    && c.execute("SELECT pg_advisory_unlock($1)", &[&key]).is_err()
                {
                    // Its locks went with it; the next ask connects anew.
                    client = None;
                }
            }
        }
    }
    // The store is gone; the connection's end releases whatever is left.
    drop(client);
}

/// Takes the first of `keys` this daemon does not hold and no other daemon holds.
fn take_first_free(
    url: &str,
    client: &mut Option<postgres::Client>,
    held: &HashSet<i64>,
    keys: &[i64],
) -> Result<Option<i64>> {
    let c = connected(url, client, held)?;
    for key in keys.iter().filter(|k| !held.contains(k)) {
        let free: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[key])
            .map_err(DbError::from)?
            .get(0);
        if free {
            return Ok(Some(*key));
        }
    }
    Ok(None)
}

/// A connection for slot locks that notices, at both ends, a peer that
/// vanished (a host powered off, a network cut) within about a minute
/// rather than the system's two hours: PostgreSQL then ends the session and
/// the dead daemon's slots are free, and this daemon stops waiting on a
/// server that cannot answer.
fn connect_keeper(url: &str) -> Result<postgres::Client> {
    use std::time::Duration;
    let mut config: postgres::Config = url.parse().map_err(DbError::from)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30));
    let mut client = config.connect(postgres::NoTls).map_err(DbError::from)?;
    // The server's side of the same (settings of this session only; a server
    // too old for one, or a Unix socket, ignores or refuses it harmlessly).
    for set in [
        "SET tcp_keepalives_idle = 30",
        "SET tcp_keepalives_interval = 10",
        "SET tcp_keepalives_count = 3",
        "SET tcp_user_timeout = 30000",
    ] {
        let _ = client.batch_execute(set);
    }
    Ok(client)
}

/// The keeper's connection, made anew (with this daemon's slots taken again)
/// when there is none or it broke.
fn connected<'a>(
    url: &str,
    client: &'a mut Option<postgres::Client>,
    held: &HashSet<i64>,
) -> Result<&'a mut postgres::Client> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        let mut c = connect_keeper(url)?;
        for key in held {
            let again: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[key])
                .map_err(DbError::from)?
                .get(0);
            if !again {
                tracing::warn!(
                    "an upload slot this daemon held was taken by another daemon while \
                     this one was disconnected from PostgreSQL"
                );
            }
        }
        *client = Some(c);
    }
    Ok(client.as_mut().expect("connected"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_slots_count_per_token_and_come_back_when_dropped() {
        let slots = Slots::local();
        let a = slots.take(1, 2).unwrap().expect("first");
        let b = slots.take(1, 2).unwrap().expect("second");
        assert!(slots.take(1, 2).unwrap().is_none(), "a third is refused");
        assert!(slots.take(2, 2).unwrap().is_some(), "another token's own");
        drop(a);
        let c = slots.take(1, 2).unwrap();
        assert!(c.is_some(), "a dropped slot is free again");
        drop((b, c));
        assert!(matches!(&slots, Slots::Local(m) if m.lock().unwrap().is_empty()));
    }

    #[test]
    fn slot_keys_differ_by_token_and_slot() {
        let keys: HashSet<i64> = (0..50)
            .flat_map(|t| (0..8).map(move |i| slot_key(t, i)))
            .collect();
        assert_eq!(keys.len(), 400);
    }
}

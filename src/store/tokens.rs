//! API tokens: 32 lower-case hex characters from the OS RNG, stored only as
//! their BLAKE3 hash and compared in constant time.
//!
//! Tokens are read from the index on every request, so changes made by the
//! command line while the daemon runs apply from the daemon's next request.

use subtle::ConstantTimeEq;

use super::index::DbError;
use super::sql::{ConnExt, Row};
use super::{Store, now_ms, random_hex};
use crate::error::{Error, Result};
use crate::sql_params;

/// The permissions a token may hold.
pub const PERMISSIONS: &[&str] = &[
    "upload",
    "upload_try",
    "view_all",
    "manage_tokens",
    "download",
];

/// The longest lifetime a token may be given, in days (100 years). Longer
/// ones would overflow the millisecond timestamps expiry is kept in.
pub const MAX_LIFETIME_DAYS: u64 = 36_500;

/// [`MAX_LIFETIME_DAYS`] in milliseconds.
pub const MAX_LIFETIME_MS: i64 = MAX_LIFETIME_DAYS as i64 * 86_400_000;

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: i64,
    pub user: String,
    pub permissions: Vec<String>,
    pub note: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Token {
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// What `create` needs.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub user: &'a str,
    pub permissions: &'a [String],
    pub note: &'a str,
    /// Milliseconds from now until it expires, at most [`MAX_LIFETIME_MS`];
    /// `None` never expires.
    pub expires_in_ms: Option<i64>,
    /// Expires no later than this (Unix ms), whatever `expires_in_ms` says: a
    /// token made with another token never outlives it.
    pub expires_by: Option<i64>,
}

fn hash_secret(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// Longest note or user name a token records, in bytes.
pub const MAX_TEXT: usize = 1024;

impl Store {
    /// Creates a token and returns it with its secret, which is never shown again.
    pub fn create_token(&self, new: &NewToken<'_>) -> Result<(Token, String)> {
        if new.permissions.is_empty() {
            return Err(Error::BadRequest(
                "a token needs at least one permission".into(),
            ));
        }
        if let Some(p) = new
            .permissions
            .iter()
            .find(|p| !PERMISSIONS.contains(&p.as_str()))
        {
            return Err(Error::BadRequest(format!(
                "unknown permission {p:?}; known: {}",
                PERMISSIONS.join(", ")
            )));
        }
        for (what, value) in [("notes", new.note), ("user", new.user)] {
            if value.len() > MAX_TEXT {
                return Err(Error::BadRequest(format!(
                    "{what}: at most {MAX_TEXT} bytes, not {}",
                    value.len()
                )));
            }
        }
        if new.expires_in_ms.is_some_and(|ms| ms > MAX_LIFETIME_MS) {
            return Err(Error::BadRequest(format!(
                "expires: a token lives at most {MAX_LIFETIME_DAYS} days (100 years)"
            )));
        }
        let secret = random_hex(16);
        let now = now_ms();
        let expires_at = match (new.expires_in_ms.map(|ms| now + ms), new.expires_by) {
            (Some(at), Some(by)) => Some(at.min(by)),
            (at, by) => at.or(by),
        };
        let perms = new.permissions.join(",");
        let id: i64 = self.db().writing(|c| {
            Ok(c.one(
                "INSERT INTO tokens (secret_hash, permissions, \"user\", note, created_at, \
                 expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                &sql_params![
                    hash_secret(&secret),
                    perms,
                    new.user,
                    new.note,
                    now,
                    expires_at
                ],
            )?)
        })?;
        let token = Token {
            id,
            user: new.user.to_string(),
            permissions: new.permissions.to_vec(),
            note: new.note.to_string(),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        Ok((token, secret))
    }

    /// Takes one of a token's `limit` concurrent upload slots (0: no limit),
    /// counted across every daemon of the store; `None` while all are taken.
    /// The slot is given back when dropped. Blocking.
    pub fn take_upload_slot(
        &self,
        token_id: i64,
        limit: usize,
    ) -> Result<Option<super::UploadSlot>> {
        self.db().take_upload_slot(token_id, limit)
    }

    /// Every token, newest first.
    pub fn list_tokens(&self) -> Result<Vec<Token>> {
        self.db().reading(|c| {
            let rows = c.rows(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id DESC"),
                &[],
            )?;
            Ok(rows
                .iter()
                .map(token_from_row)
                .collect::<std::result::Result<_, _>>()?)
        })
    }

    /// Revokes a token; `false` if there is no such token.
    pub fn revoke_token(&self, id: i64) -> Result<bool> {
        let n = self.db().writing(|c| {
            Ok(c.exec(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                &sql_params![id, now_ms()],
            )?)
        })?;
        if n == 0 {
            let exists: i64 = self.db().reading(|c| {
                Ok(c.one(
                    "SELECT COUNT(*) FROM tokens WHERE id = ?1",
                    &sql_params![id],
                )?)
            })?;
            return Ok(exists > 0);
        }
        Ok(true)
    }

    /// The live token with this secret, or why there is none.
    pub fn authenticate(&self, secret: &str) -> Result<Token> {
        let hash = hash_secret(secret);
        let found = self.db().reading(|c| {
            let row = c.row(
                &format!("SELECT {TOKEN_COLUMNS}, secret_hash FROM tokens WHERE secret_hash = ?1"),
                &sql_params![&hash],
            )?;
            Ok(match row {
                Some(r) => Some((token_from_row(&r)?, r.get::<String>(7)?)),
                None => None,
            })
        })?;
        let Some((token, stored)) = found else {
            return Err(Error::Unauthenticated("unknown token".into()));
        };
        if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(Error::Unauthenticated("unknown token".into()));
        }
        if token.revoked_at.is_some() {
            return Err(Error::Unauthenticated("this token has been revoked".into()));
        }
        if token.expires_at.is_some_and(|t| t <= now_ms()) {
            return Err(Error::Unauthenticated("this token has expired".into()));
        }
        Ok(token)
    }
}

const TOKEN_COLUMNS: &str = "id, \"user\", permissions, note, created_at, expires_at, revoked_at";

fn token_from_row(r: &Row) -> std::result::Result<Token, DbError> {
    let perms: String = r.get(2)?;
    Ok(Token {
        id: r.get(0)?,
        user: r.get(1)?,
        permissions: perms
            .split(',')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect(),
        note: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

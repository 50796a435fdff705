//! One text per query for both index engines: SQLite (rusqlite, the embedded
//! default) and PostgreSQL (`database_url`, several daemons in front of one
//! store).
//!
//! A query is written once, in what both engines read alike:
//! - parameters `?1` … `?N` ([`dialect`] spells them `$1` … for PostgreSQL);
//! - `INSERT … ON CONFLICT … DO NOTHING | DO UPDATE SET … excluded.…` and
//!   `RETURNING` (never `INSERT OR IGNORE`);
//! - `lower(a) = lower(?1)` for case-insensitive matches (never `COLLATE NOCASE`);
//! - integers for flags (0/1) and every integer column 64-bit (`BIGINT` on
//!   PostgreSQL), sums cast back to integers (`CAST(SUM(x) AS BIGINT)`);
//! - a parameter whose type nothing else in the query fixes is cast
//!   (`CAST(?1 AS BIGINT) IS NULL`): PostgreSQL must know every parameter's type;
//! - no engine's functions of its own (`MAX(a, b)` of two values, `PRAGMA`, …):
//!   what only one engine has stays in that engine's own code (migrations,
//!   connection set-up).
//!
//! Values cross the seam as [`Value`]s and rows come back as [`Row`]s, so the
//! store's logic is written once against [`Conn`], whichever engine answers.

use std::borrow::Cow;

use super::index::DbError;

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A query's text as `engine` reads it: `?N` parameters become `$N` for
/// PostgreSQL (outside quoted strings and identifiers); SQLite reads the text
/// as written.
pub fn dialect(sql: &str, engine: Engine) -> Cow<'_, str> {
    if engine == Engine::Sqlite || !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A value passed to or read from a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

/// Sizes and counts past `i64::MAX` are stored as `i64::MAX` (no file is that large).
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// The parameters of a query, each converted into a [`Value`].
#[macro_export]
macro_rules! sql_params {
    ($($v:expr),* $(,)?) => {
        [$($crate::store::sql::Value::from($v)),*]
    };
}

/// A value read back as a Rust type.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for u64 {
    fn from_value(v: &Value) -> Option<u64> {
        i64::from_value(v).and_then(|i| u64::try_from(i).ok())
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<bool> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<f64> {
        match v {
            Value::Real(r) => Some(*r),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Vec<u8>> {
        match v {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Option<T>> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One row of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as a `T`; a missing column or another type is an error
    /// naming both.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let v = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(v).ok_or_else(|| {
            DbError::other(format!(
                "column {i} holds {v:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A connection or transaction of either engine.
pub trait Conn {
    fn engine(&self) -> Engine;
    /// Runs one statement; returns the rows it changed.
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    /// Runs one query; returns every row.
    fn rows(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs statements without parameters, one after the other.
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
}

/// What every [`Conn`] can answer, a trait object's too.
pub trait ConnExt: Conn {
    /// The first row, if any.
    fn row(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// The first column of the one row a query answers (`COUNT(*)`, …).
    fn one<T: FromValue>(&mut self, sql: &str, params: &[Value]) -> Result<T, DbError> {
        match self.row(sql, params)? {
            Some(row) => row.get(0),
            None => Err(DbError::other(format!("no row: {sql}"))),
        }
    }
}

impl<C: Conn + ?Sized> ConnExt for C {}

mod sqlite {
    use rusqlite::types::{ToSqlOutput, ValueRef};

    use super::{Conn, DbError, Engine, Row, Value};

    impl rusqlite::ToSql for Value {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(match self {
                Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
                Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
                Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
                Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
                Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            })
        }
    }

    fn value(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(r) => Value::Real(r),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        }
    }

    fn exec(c: &rusqlite::Connection, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut st = c.prepare_cached(sql)?;
        Ok(st.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn rows(c: &rusqlite::Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut st = c.prepare_cached(sql)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(value(r.get_ref(i)?));
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    /// A connection and its transactions alike.
    macro_rules! conn_for {
        ($t:ty) => {
            impl Conn for $t {
                fn engine(&self) -> Engine {
                    Engine::Sqlite
                }

                fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
                    exec(self, sql, params)
                }

                fn rows(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
                    rows(self, sql, params)
                }

                fn batch(&mut self, sql: &str) -> Result<(), DbError> {
                    Ok(self.execute_batch(sql)?)
                }
            }
        };
    }

    conn_for!(rusqlite::Connection);
    conn_for!(rusqlite::Transaction<'_>);
}

mod postgres_engine {
    use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

    use super::{Conn, DbError, Engine, Row, Value, dialect};

    /// A [`Value`] as PostgreSQL takes it: integers into any integer or
    /// boolean column, text into any text column, NULL into anything.
    #[derive(Debug)]
    struct Param<'a>(&'a Value);

    impl ToSql for Param<'_> {
        fn to_sql(
            &self,
            ty: &Type,
            out: &mut bytes::BytesMut,
        ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
            match (self.0, ty) {
                (Value::Null, _) => Ok(IsNull::Yes),
                (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
                (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
                (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
                (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
                (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
                (Value::Real(r), &Type::FLOAT8) => r.to_sql(ty, out),
                (Value::Real(r), &Type::FLOAT4) => (*r as f32).to_sql(ty, out),
                (Value::Text(s), _) => s.as_str().to_sql(ty, out),
                (Value::Bytes(b), _) => b.as_slice().to_sql(ty, out),
                (v, ty) => Err(format!("{v:?} cannot go into a {ty} column").into()),
            }
        }

        fn accepts(_: &Type) -> bool {
            // Checked value by value in `to_sql`.
            true
        }

        to_sql_checked!();
    }

    fn value(row: &postgres::Row, i: usize) -> Result<Value, DbError> {
        let ty = row.columns()[i].type_();
        let v = match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(v.into())),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            ref other => {
                return Err(DbError::other(format!(
                    "column {i} is a {other}, which the store does not read (cast it)"
                )));
            }
        };
        Ok(v.unwrap_or(Value::Null))
    }

    fn params(values: &[Value]) -> Vec<Param<'_>> {
        values.iter().map(Param).collect()
    }

    fn refs<'a>(p: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
        p.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }

    fn rows(rows: Vec<postgres::Row>) -> Result<Vec<Row>, DbError> {
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| value(r, i))
                    .collect::<Result<_, _>>()
                    .map(Row)
            })
            .collect()
    }

    /// Both the client and its transactions.
    macro_rules! conn_for {
        ($t:ty) => {
            impl Conn for $t {
                fn engine(&self) -> Engine {
                    Engine::Postgres
                }

                fn exec(&mut self, sql: &str, values: &[Value]) -> Result<u64, DbError> {
                    let p = params(values);
                    let sql = dialect(sql, Engine::Postgres);
                    Ok(postgres::GenericClient::execute(
                        self,
                        sql.as_ref(),
                        &refs(&p),
                    )?)
                }

                fn rows(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
                    let p = params(values);
                    let sql = dialect(sql, Engine::Postgres);
                    rows(postgres::GenericClient::query(
                        self,
                        sql.as_ref(),
                        &refs(&p),
                    )?)
                }

                fn batch(&mut self, sql: &str) -> Result<(), DbError> {
                    Ok(postgres::GenericClient::batch_execute(self, sql)?)
                }
            }
        };
    }

    conn_for!(postgres::Client);
    conn_for!(postgres::Transaction<'_>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_spelled_for_postgres_outside_quotes_only() {
        let sql = "SELECT a FROM t WHERE b = ?1 AND c = '?2' AND \"d?3\" = ?12 OR e = ?";
        assert_eq!(dialect(sql, Engine::Sqlite), sql);
        assert_eq!(
            dialect(sql, Engine::Postgres),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND \"d?3\" = $12 OR e = ?"
        );
    }

    #[test]
    fn values_round_trip_through_sqlite() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        c.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, s TEXT, f INTEGER)")
            .unwrap();
        let changed = c
            .exec(
                "INSERT INTO t (n, s, f) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                &crate::sql_params![u64::MAX, Some("x"), true],
            )
            .unwrap();
        assert_eq!(changed, 1);
        c.exec(
            "INSERT INTO t (n, s, f) VALUES (?1, ?2, ?3)",
            &crate::sql_params![7i64, None::<String>, false],
        )
        .unwrap();
        let rows = c.rows("SELECT n, s, f FROM t ORDER BY id", &[]).unwrap();
        assert_eq!(rows[0].get::<u64>(0).unwrap(), i64::MAX as u64);
        assert_eq!(
            rows[0].get::<Option<String>>(1).unwrap().as_deref(),
            Some("x")
        );
        assert!(rows[0].get::<bool>(2).unwrap());
        assert_eq!(rows[1].get::<Option<String>>(1).unwrap(), None);
        assert!(rows[1].get::<String>(1).is_err(), "NULL is not a String");
        let n: i64 = c
            .one(
                "SELECT COUNT(*) FROM t WHERE lower(s) = lower(?1)",
                &crate::sql_params!["X"],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}

//! The HTTP server: a plain hyper 1.x accept loop with graceful shutdown.
//!
//! Handlers are thin: they parse the request, call the store (blocking work
//! goes through `spawn_blocking`), and shape the response. [`server`] is the
//! accept loop, [`state`] what every handler can reach, [`routes`] the one
//! table of paths; [`error`] maps core errors to statuses.
//!
//! This file only names the modules: each of them imports the ones it needs
//! directly, and no two of them import each other, directly or through others.

pub mod access;
pub mod auth;
pub mod body;
pub mod cache;
pub mod error;
pub mod fetch;
pub mod handlers;
pub mod hit;
pub mod mirror;
pub mod redact;
pub mod request;
pub mod routes;
pub mod server;
pub mod state;

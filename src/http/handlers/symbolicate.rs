//! `POST /symbolicate/v5` and `/symbolicate/v4` (Tecken's API, Eliot's
//! additions): the body read (bounded), the modules looked up as downloads
//! look up their `.sym` (release before try, `?try`/`/try/`; upstreams asked
//! on a miss), parsed through the symbol cache, and the frames filled off
//! the async threads.

use std::collections::HashMap;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::download::cached_lookup;
use crate::Error;
use crate::http::body::{self, Body};
use crate::http::error::{json_error, method_not_allowed};
use crate::http::hit::{Flavor, Found};
use crate::http::mirror::{Fetched, Want};
use crate::http::state::AppState;
use crate::keys::normalize;
use crate::store::missing::Miss;
use crate::symbolicate::{self, ModuleRef, Version};

/// Largest request body (100 000 frames take about 2 MB).
const MAX_BODY: usize = 32 << 20;

/// Answers a symbolication request.
pub async fn symbolicate(
    state: Arc<AppState>,
    req: Request<Incoming>,
    version: Version,
    include_try: bool,
) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST", true);
    }
    if state.http.private_downloads
        && let Err(refused) = crate::http::request::require(&state, req.headers(), "download").await
    {
        return refused;
    }
    let bytes = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return json_error(&Error::TooLarge(format!(
                "a symbolication request is at most {MAX_BODY} bytes"
            )));
        }
        Err(_) => return json_error(&Error::BadRequest("the body could not be read".into())),
    };
    let max_frames = state.http.max_symbolicate_frames;
    let jobs = match symbolicate::parse(&bytes, version, max_frames) {
        Ok(jobs) => jobs,
        Err(why) => return json_error(&Error::BadRequest(why)),
    };
    // Each module once, whichever jobs name it.
    let mut loaded: HashMap<ModuleRef, Option<Arc<breakpad_symbols::SymbolFile>>> = HashMap::new();
    let mut per_job = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let mut symbols = HashMap::new();
        for m in symbolicate::used_modules(job) {
            let module = &job.modules[m];
            if !loaded.contains_key(module) {
                let sym = match module_symbols(&state, module, include_try).await {
                    Ok(sym) => sym,
                    Err(e) => return json_error(&e),
                };
                loaded.insert(module.clone(), sym);
            }
            symbols.insert(m, loaded[module].clone());
        }
        per_job.push(symbols);
    }
    let answer = tokio::task::spawn_blocking(move || {
        let results: Vec<_> = (jobs.iter())
            .zip(&per_job)
            .map(|(job, symbols)| symbolicate::symbolicate(job, symbols))
            .collect();
        match version {
            Version::V5 => symbolicate::v5_json(&jobs, &results),
            Version::V4 => symbolicate::v4_json(&results[0]),
        }
    })
    .await;
    match answer {
        Ok(value) => body::json(StatusCode::OK, &value),
        Err(e) => json_error(&Error::Io(std::io::Error::other(e))),
    }
}

/// A module's parsed `.sym`, or `None` (noted as missing) when the store
/// and the upstreams have none. A broken index or an unreadable stored
/// file is an error.
async fn module_symbols(
    state: &Arc<AppState>,
    module: &ModuleRef,
    include_try: bool,
) -> crate::Result<Option<Arc<breakpad_symbols::SymbolFile>>> {
    let Some(key) = module.sym_key() else {
        return Ok(None);
    };
    let found = symbols_of_key(state, &key, include_try).await?;
    if found.is_none()
        && let Some(miss) = Miss::new(&module.debug_file, &module.debug_id, "", "")
    {
        state.missing.record(miss);
        state.metrics.missing_recorded.inc();
    }
    Ok(found)
}

/// The parsed `.sym` stored under `key` (looked up as a download looks it
/// up, the upstreams asked on a miss), or `None`.
pub async fn symbols_of_key(
    state: &Arc<AppState>,
    key: &str,
    include_try: bool,
) -> crate::Result<Option<Arc<breakpad_symbols::SymbolFile>>> {
    let lkey = normalize(key);
    let mut found =
        cached_lookup(state, lkey.clone(), include_try, Flavor::Breakpad, || None).await?;
    if matches!(found, Found::Miss) && !state.mirror.is_empty() {
        let segs: Vec<String> = key.split('/').map(str::to_string).collect();
        if segs.len() == 3 && state.mirror.fetch(Want::Path(segs)).await == Fetched::Stored {
            found = cached_lookup(state, lkey, include_try, Flavor::Breakpad, || None).await?;
        }
    }
    match found {
        Found::Key(hit) => Ok(Some(state.symbols.get(&state.store, &hit.row).await?)),
        _ => Ok(None),
    }
}

//! `POST /symbolicate/v5` and `/symbolicate/v4` (Tecken's API, Eliot's
//! additions): the body read (bounded), the modules looked up as downloads
//! look up their `.sym` (release before try, `?try`/`/try/`; upstreams asked
//! on a miss), parsed through the symbol cache, and the frames filled off
//! the async threads.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use maud::{Markup, html};

use super::download::cached_lookup;
use crate::Error;
use crate::http::body::{self, Body};
use crate::http::error::{json_error, method_not_allowed};
use crate::http::handlers::pages::layout;
use crate::http::hit::{Flavor, Found};
use crate::http::mirror::{Fetched, Want};
use crate::http::state::AppState;
use crate::keys::normalize;
use crate::store::KeyRow;
use crate::store::missing::Miss;
use crate::symbolicate::{self, ModuleRef, Version};

/// Modules of one request looked up (and generated or fetched) at once.
const LOOKUPS_AT_ONCE: usize = 8;

/// The longest one request's symbolication may take, from finding its
/// modules to filling its frames (504 after).
const TIME_CAP: std::time::Duration = std::time::Duration::from_secs(60);

/// Largest request body for `max_frames` frames: 32 bytes a frame (one is
/// about 18) and a MiB for the memory map, at most 32 MiB.
fn max_body(max_frames: usize) -> usize {
    max_frames
        .saturating_mul(32)
        .saturating_add(1 << 20)
        .min(32 << 20)
}

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
    let what = "a symbolication request (32 bytes for each of max_symbolicate_frames and 1 MiB)";
    let (_turn, bytes) = match turn_and_body(&state, req.into_body(), what).await {
        Ok(read) => read,
        Err(e) => return json_error(&e),
    };
    let max_frames = state.http.max_symbolicate_frames;
    // Reading and writing JSON of tens of megabytes is work for a blocking
    // thread, not for the few that answer every request.
    let parsed =
        tokio::task::spawn_blocking(move || symbolicate::parse(&bytes, version, max_frames)).await;
    let jobs = match parsed {
        Ok(Ok(jobs)) => Arc::new(jobs),
        Ok(Err(why)) => return json_error(&Error::BadRequest(why)),
        Err(e) => return json_error(&Error::Io(std::io::Error::other(e))),
    };
    let results = match run(&state, &jobs, include_try).await {
        Ok(results) => results,
        Err(e) => return json_error(&e),
    };
    let answer = tokio::task::spawn_blocking(move || match version {
        Version::V5 => symbolicate::v5_json(&jobs, &results),
        Version::V4 => symbolicate::v4_json(&results[0]),
    })
    .await;
    match answer {
        Ok(text) => {
            let len = text.len();
            let resp = body::with_type(StatusCode::OK, "application/json", text);
            crate::http::state::held(&state, resp, len).await
        }
        Err(e) => json_error(&Error::Io(std::io::Error::other(e))),
    }
}

/// A turn of the symbolication requests answered at once, then the body
/// (at most [`max_body`], within `request_timeout`), named `what` in errors.
async fn turn_and_body<'a>(
    state: &'a AppState,
    body: Incoming,
    what: &str,
) -> crate::Result<(tokio::sync::SemaphorePermit<'a>, bytes::Bytes)> {
    let turn = crate::http::state::turn(&state.symbolications, "symbolication requests").await?;
    let limit = max_body(state.http.max_symbolicate_frames);
    let bytes = body::read_bounded(body, limit, what, state.http.request_timeout).await?;
    Ok((turn, bytes))
}

/// Symbolicates `jobs` within [`TIME_CAP`] (a 504 after).
async fn run(
    state: &Arc<AppState>,
    jobs: &Arc<Vec<symbolicate::Job>>,
    include_try: bool,
) -> crate::Result<Vec<symbolicate::JobResult>> {
    tokio::time::timeout(TIME_CAP, fill_jobs(state, jobs, include_try))
        .await
        .map_err(|_| {
            Error::GatewayTimeout(format!(
                "the symbolication took longer than {} s",
                TIME_CAP.as_secs()
            ))
        })?
}

/// Symbolicates `jobs`: each module found once, whichever jobs name it
/// ([`LOOKUPS_AT_ONCE`] at a time, within the time cap: a miss may be
/// generated or fetched from an upstream), then parsed and its frames
/// filled off the async threads one module at a time, its symbols let go
/// before the next is needed (beyond what the symbol cache keeps).
async fn fill_jobs(
    state: &Arc<AppState>,
    jobs: &Arc<Vec<symbolicate::Job>>,
    include_try: bool,
) -> crate::Result<Vec<symbolicate::JobResult>> {
    // Each module once, whichever jobs name it: (job, index) of its uses.
    let mut uses: Vec<(ModuleRef, Vec<(usize, usize)>)> = Vec::new();
    let mut at: HashMap<ModuleRef, usize> = HashMap::new();
    for (j, job) in jobs.iter().enumerate() {
        for m in symbolicate::used_modules(job) {
            let module = &job.modules[m];
            let slot = *at.entry(module.clone()).or_insert_with(|| {
                uses.push((module.clone(), Vec::new()));
                uses.len() - 1
            });
            uses[slot].1.push((j, m));
        }
    }
    let mut results: Vec<symbolicate::JobResult> =
        jobs.iter().map(symbolicate::JobResult::unfilled).collect();
    // Found first, several at a time (a miss may be generated or fetched),
    // within the cap; then parsed and filled one module at a time.
    let lookups: Vec<_> = (uses.iter())
        .map(|(module, _)| {
            let (state, module) = (state.clone(), module.clone());
            async move { module_row(&state, &module, include_try).await }
        })
        .collect();
    let found = futures_util::stream::iter(lookups)
        .buffered(LOOKUPS_AT_ONCE)
        .try_collect::<Vec<_>>();
    let found = found.await?;
    let mut budget = symbolicate::MAX_ANSWER_BYTES;
    for ((_, used), found) in uses.into_iter().zip(found) {
        let sym = match found {
            Some((key, row)) => parsed(state, &key, &row).await?,
            None => None,
        };
        let jobs = jobs.clone();
        let filled = tokio::task::spawn_blocking(move || {
            for (j, m) in used {
                results[j].fill_module(&jobs[j], m, sym.as_deref(), &mut budget)?;
            }
            Ok((results, budget))
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        (results, budget) = filled.map_err(Error::TooLarge)?;
    }
    Ok(results)
}

/// `GET /symbolicate`: a form to paste a v5 job into (and one to drop a
/// minidump on, for `/stackwalk`); `POST /symbolicate` (the form's `job`
/// field): its frames as a page.
pub async fn page(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    if state.http.private_downloads {
        if let Err(refused) = crate::http::request::require(&state, req.headers(), "download").await
        {
            return refused;
        }
    } else if let Err(refused) = crate::http::request::require_records(&state, req.headers()).await
    {
        return refused;
    }
    let include_try = crate::http::routes::query_has_try(req.uri().query());
    match *req.method() {
        Method::GET | Method::HEAD => return layout("Symbolicate", forms(EXAMPLE_JOB)),
        Method::POST => {}
        _ => return method_not_allowed("GET, HEAD, POST", false),
    }
    let (_turn, bytes) = match turn_and_body(&state, req.into_body(), "a job").await {
        Ok(read) => read,
        Err(e) => return page_error(crate::http::error::status_of(&e), &e.to_string(), html! {}),
    };
    let fields = crate::filters::query_pairs(Some(&String::from_utf8_lossy(&bytes)));
    let job = (fields.into_iter())
        .find(|(k, _)| k == "job")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let jobs = match symbolicate::parse(
        job.as_bytes(),
        Version::V5,
        state.http.max_symbolicate_frames,
    ) {
        Ok(jobs) => Arc::new(jobs),
        Err(why) => return page_error(StatusCode::BAD_REQUEST, &why, forms(&job)),
    };
    let results = match run(&state, &jobs, include_try).await {
        Ok(r) => r,
        Err(e) => return page_error(crate::http::error::status_of(&e), &e.to_string(), html! {}),
    };
    layout("Symbolicated", symbolicated(&jobs, &results, &job))
}

/// The page's forms: a job to paste (`job` in its text box), a minidump to drop.
fn forms(job: &str) -> Markup {
    html! {
        h1 { "Symbolicate" }
        h2 { "Frames of a job" }
        p {
            "A " code { "/symbolicate/v5" } " job: " code { "memoryMap" }
            " (debug file, debug id) and " code { "stacks" } " of [module index, module offset]."
        }
        form method="post" action="/symbolicate" {
            textarea name="job" rows="10" cols="100" .mono { (job) }
            p { button { "Symbolicate" } }
        }
        h2 { "A minidump" }
        form method="post" action="/stackwalk" enctype="multipart/form-data" {
            input type="file" name="upload_file_minidump";
            " "
            button { "Walk the stacks" }
        }
    }
}

/// The frames of each job's stacks, its modules without symbols, then the
/// forms again with the job as pasted.
fn symbolicated(
    jobs: &[symbolicate::Job],
    results: &[symbolicate::JobResult],
    pasted: &str,
) -> Markup {
    html! {
        h1 { "Symbolicated" }
        @for (j, (job, r)) in jobs.iter().zip(results).enumerate() {
            @for (s, stack) in r.stacks.iter().enumerate() {
                h2 { "Job " (j) ", stack " (s) }
                table {
                    tr { th { "#" } th { "Module" } th { "Offset" } th { "Function" } th { "Source" } }
                    @for f in stack { (frame_row(f)) }
                }
            }
            (without_symbols(job, r))
        }
        (forms(pasted))
    }
}

fn frame_row(f: &symbolicate::Frame) -> Markup {
    html! {
        tr {
            td { (f.index) }
            td { (f.module.as_deref().unwrap_or("")) }
            td.mono { (format!("{:#x}", f.offset)) }
            td.mono {
                @if let Some(name) = &f.function {
                    (name)
                    @if let Some(off) = f.function_offset { " + " (format!("{off:#x}")) }
                }
            }
            td.mono {
                @if let Some(file) = &f.file {
                    (file)
                    @if let Some(line) = f.line { ":" (line) }
                }
                @for i in &f.inlines {
                    br;
                    "inlined: " (i.function) " " (i.file.as_deref().unwrap_or("")) ":"
                    @if let Some(line) = i.line { (line) }
                }
            }
        }
    }
}

/// The modules of a job that no store or upstream had symbols for.
fn without_symbols(job: &symbolicate::Job, r: &symbolicate::JobResult) -> Markup {
    let missing: Vec<&ModuleRef> = (job.modules.iter())
        .zip(&r.found)
        .filter(|(_, f)| **f == Some(false))
        .map(|(m, _)| m)
        .collect();
    html! {
        @if !missing.is_empty() {
            h2 { "Modules without symbols (" (missing.len()) ")" }
            ul { @for m in &missing { li.mono { (m.debug_file) " " (m.debug_id) } } }
        }
    }
}

/// An error on the symbolication page: the problem, then what follows it.
fn page_error(status: StatusCode, why: &str, then: Markup) -> Response<Body> {
    let html = html! { h1 { (status.as_u16()) } p.failed { (why) } (then) };
    let mut resp = layout("Symbolicate", html);
    *resp.status_mut() = status;
    resp
}

/// The job the form starts with.
const EXAMPLE_JOB: &str = r#"{"memoryMap": [["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]],
 "stacks": [[[0, 11723767], [0, 65802]]]}"#;

/// A module's `.sym` key and stored row, or `None` (noted as missing) when
/// the store and the upstreams have none. A broken index is an error.
async fn module_row(
    state: &Arc<AppState>,
    module: &ModuleRef,
    include_try: bool,
) -> crate::Result<Option<(String, KeyRow)>> {
    let Some(key) = module.sym_key() else {
        return Ok(None);
    };
    let found = sym_row_of_key(state, &key, include_try).await?;
    if found.is_none()
        && let Some(miss) = Miss::new(&module.debug_file, &module.debug_id, "", "")
    {
        state.missing.record(miss);
        state.metrics.missing_recorded.inc();
    }
    Ok(found.map(|row| (key, row)))
}

/// The parsed symbols of a stored `.sym`, through the symbol cache; `None`
/// when the stored file does not parse (logged, answered as missing rather
/// than failing the whole request). An unreadable file is an error.
async fn parsed(
    state: &Arc<AppState>,
    key: &str,
    row: &KeyRow,
) -> crate::Result<Option<Arc<breakpad_symbols::SymbolFile>>> {
    match state.symbols.get(&state.store, row).await {
        Ok(sym) => Ok(Some(sym)),
        Err(e @ Error::Invalid { .. }) => {
            tracing::warn!(key, error = %e, "a stored .sym does not parse");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The stored row of the `.sym` key `key`, found as a download finds it:
/// looked up, else generated from a stored debug file of its id, else
/// fetched from the upstreams.
pub async fn sym_row_of_key(
    state: &Arc<AppState>,
    key: &str,
    include_try: bool,
) -> crate::Result<Option<KeyRow>> {
    let lkey = normalize(key);
    let mut found =
        cached_lookup(state, lkey.clone(), include_try, Flavor::Breakpad, || None).await?;
    let segs: Vec<String> = key.split('/').map(str::to_string).collect();
    if matches!(found, Found::Miss) && segs.len() == 3 {
        // Made from a stored debug file of its id, else fetched.
        let made = super::download::generated(state, &segs, include_try).await;
        if made
            || (super::download::asks_upstream(state, &segs)
                && state.mirror.fetch(Want::Path(segs)).await == Fetched::Stored)
        {
            found = super::download::fresh_lookup(state, lkey, include_try, Flavor::Breakpad, None)
                .await?;
        }
    }
    Ok(match found {
        Found::Key(hit) => Some(hit.row.clone()),
        _ => None,
    })
}

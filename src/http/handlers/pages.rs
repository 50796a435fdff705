//! Server-rendered web pages: no front-end build step, no external assets
//! (they work air-gapped), and every user-supplied string escaped.

use std::fmt::Write;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::http::body::{self, Body};
use crate::http::error::method_not_allowed;
use crate::http::request::{blocking, file_query, require_records, today_start, upload_query};
use crate::http::routes::Page;
use crate::http::state::AppState;
use crate::identity::lookup::display;
use crate::store::Namespace;
use crate::store::records::{FileQuery, UploadQuery};
use crate::units::rfc3339;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn opt(v: &Option<String>) -> String {
    esc(v.as_deref().unwrap_or(""))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}\
header{background:#243447;padding:.6em 1.2em}header a{color:#fff;margin-right:1.2em;text-decoration:none}\
main{padding:1em 1.2em}table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;\
padding:.3em .5em;text-align:left;vertical-align:top}code,.mono{font-family:ui-monospace,monospace}\
.failed{color:#a00}form.filters input{margin-right:.5em}input.copy{width:100%;font-family:monospace}\
.totals span{display:inline-block;margin-right:2em}";

/// What the pages may load: their own inline style sheet and nothing else
/// (no scripts at all); forms submit to this server; no framing, no `<base>`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A page in the site's frame: its header links, style and security headers.
pub(crate) fn layout(title: &str, content: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · symdepot</title>\
         <style>{STYLE}</style></head><body><header><a href=\"/\">symdepot</a><a href=\"/uploads\">Uploads</a>\
         <a href=\"/files\">Files</a><a href=\"/missing\">Missing symbols</a>\
         <a href=\"/symbolicate\">Symbolicate</a></header><main>{content}</main>\
         </body></html>",
        esc(title)
    );
    let mut resp = body::with_type(StatusCode::OK, "text/html; charset=utf-8", html);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

fn error_page(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = layout(
        "Error",
        &format!("<h1>{}</h1><p>{}</p>", status.as_u16(), esc(message)),
    );
    *resp.status_mut() = status;
    resp
}

/// Answers a page route.
pub async fn page(state: Arc<AppState>, req: Request<Incoming>, page: Page) -> Response<Body> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return method_not_allowed("GET, HEAD", false);
    }
    if let Err(resp) = require_records(&state, req.headers()).await {
        return resp;
    }
    let query = req.uri().query().map(String::from);
    let result = match page {
        Page::Home => home(&state).await,
        Page::Uploads => match upload_query(query.as_deref()) {
            Ok(uq) => uploads(&state, uq, query.as_deref()).await,
            Err(m) => return error_page(StatusCode::BAD_REQUEST, &m),
        },
        Page::Upload(id) => upload(&state, id).await,
        Page::Files => match file_query(query.as_deref()) {
            Ok(fq) => files(&state, fq, query.as_deref()).await,
            Err(m) => return error_page(StatusCode::BAD_REQUEST, &m),
        },
        Page::File(id) => file(&state, id).await,
        Page::Missing => missing(&state).await,
        // Answered by the symbolication handler (it takes a POST too).
        Page::Symbolicate => Ok(None),
    };
    match result {
        Ok(Some((title, content))) => layout(&title, &content),
        Ok(None) => error_page(StatusCode::NOT_FOUND, "Not Found"),
        Err(e) => error_page(
            crate::http::error::status_of(&e),
            &crate::http::error::message_of(&e),
        ),
    }
}

type Rendered = crate::Result<Option<(String, String)>>;

fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn uploads_table(rows: &[crate::store::UploadRow]) -> String {
    let mut t = String::from(
        "<table><thead><tr><th>Upload</th><th>User</th><th>File</th><th>Size</th><th>Files</th>\
         <th>Try</th><th>Status</th><th>Created</th></tr></thead><tbody>",
    );
    for u in rows {
        let status = match &u.error {
            Some(e) => format!("<span class=\"failed\">failed: {}</span>", esc(e)),
            None => esc(&u.status),
        };
        let _ = write!(
            t,
            "<tr><td><a href=\"/uploads/{id}\">#{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{status}</td><td>{}</td></tr>",
            esc(&u.user),
            opt(&u.filename),
            size(u.size),
            u.files_count,
            if u.try_symbols { "yes" } else { "" },
            rfc3339(u.created_at),
            id = u.id,
        );
    }
    t.push_str("</tbody></table>");
    t
}

async fn home(state: &Arc<AppState>) -> Rendered {
    let (stats, recent) = blocking(state, |s| {
        let q = UploadQuery {
            page: 1,
            ..UploadQuery::default()
        };
        Ok((s.stats(today_start())?, s.list_uploads(&q)?))
    })
    .await?;
    let recent: Vec<_> = recent.items.into_iter().take(10).collect();
    let content = format!(
        "<h1>symdepot</h1>\
         <form action=\"/files\" method=\"get\" id=\"search\"><input type=\"search\" name=\"q\" size=\"50\" \
         placeholder=\"module, debug id, code id or build id\" autofocus> <button type=\"submit\">Search</button></form>\
         <p class=\"totals\"><span>{} files</span><span>{} original</span><span>{} saved by deduplication</span>\
         <span>{} uploads today</span><span>{} missing symbols</span></p>\
         <h2>Recent uploads</h2>{}",
        stats.files,
        size(stats.files_bytes),
        size(stats.dedup_saved_bytes()),
        stats.uploads_today,
        stats.missing,
        uploads_table(&recent)
    );
    Ok(Some(("Home".into(), content)))
}

/// Previous / next links that keep the other query parameters.
fn pager(base: &str, query: Option<&str>, page: u64, has_next: bool) -> String {
    let rest: Vec<String> = crate::filters::query_pairs(query)
        .into_iter()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| format!("{}={}", q(&k), q(&v)))
        .collect();
    let link = |p: u64, label: &str| {
        let mut params = rest.clone();
        params.push(format!("page={p}"));
        format!("<a href=\"{base}?{}\">{label}</a> ", esc(&params.join("&")))
    };
    let mut out = String::from("<p class=\"pager\">");
    if page > 1 {
        out.push_str(&link(page - 1, "← previous"));
    }
    let _ = write!(out, "page {page} ");
    if has_next {
        out.push_str(&link(page + 1, "next →"));
    }
    out.push_str("</p>");
    out
}

fn param(query: Option<&str>, name: &str) -> String {
    crate::filters::query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| esc(&v))
        .unwrap_or_default()
}

async fn uploads(state: &Arc<AppState>, uq: UploadQuery, query: Option<&str>) -> Rendered {
    let page = blocking(state, move |s| s.list_uploads(&uq)).await?;
    let form = format!(
        "<form class=\"filters\" method=\"get\" action=\"/uploads\">user <input name=\"user\" value=\"{}\"> \
         size <input name=\"size\" value=\"{}\" placeholder=\"&gt;=10MB\"> created \
         <input name=\"created_at\" value=\"{}\" placeholder=\"today\"> try <input name=\"try\" value=\"{}\" size=\"5\"> \
         <button type=\"submit\">Filter</button></form>",
        param(query, "user"),
        param(query, "size"),
        param(query, "created_at"),
        param(query, "try")
    );
    let content = format!(
        "<h1>Uploads</h1>{form}<p>{} uploads</p>{}{}",
        page.total,
        uploads_table(&page.items),
        pager("/uploads", query, page.page, page.has_next)
    );
    Ok(Some(("Uploads".into(), content)))
}

async fn upload(state: &Arc<AppState>, id: i64) -> Rendered {
    let found = blocking(state, move |s| {
        Ok(s.upload(id)?.map(|u| (u, s.upload_members(id))))
    })
    .await?;
    let Some((u, members)) = found else {
        return Ok(None);
    };
    let members = members?;
    let mut content = format!(
        "<h1>Upload #{}</h1>{}",
        u.id,
        uploads_table(std::slice::from_ref(&u))
    );
    content.push_str(
        "<h2>Files</h2><table><thead><tr><th>Key</th><th>Outcome</th><th>Size</th><th>Stored</th>\
         <th>Debug file / id</th><th>Code file / id</th><th>Error</th></tr></thead><tbody>",
    );
    for m in &members {
        let _ = write!(
            content,
            "<tr><td><a class=\"mono\" href=\"/files?key={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"mono\">{} {}</td><td class=\"mono\">{} {}</td><td class=\"failed\">{}</td></tr>",
            esc(&q(&m.key)),
            esc(&m.key),
            esc(&m.outcome),
            m.size.map(size).unwrap_or_default(),
            m.stored_size.map(size).unwrap_or_default(),
            opt(&m.debug_file),
            opt(&m.debug_id),
            opt(&m.code_file),
            opt(&m.code_id),
            opt(&m.error),
        );
    }
    content.push_str("</tbody></table>");
    Ok(Some((format!("Upload #{}", u.id), content)))
}

async fn files(state: &Arc<AppState>, fq: FileQuery, query: Option<&str>) -> Rendered {
    let page = blocking(state, move |s| s.list_files(&fq)).await?;
    let mut content = format!(
        "<h1>Files</h1><form class=\"filters\" method=\"get\" action=\"/files\">search <input name=\"q\" value=\"{}\"> \
         key <input name=\"key\" value=\"{}\"> size <input name=\"size\" value=\"{}\"> created \
         <input name=\"created_at\" value=\"{}\"> try <input name=\"try\" value=\"{}\" size=\"5\"> \
         <button type=\"submit\">Filter</button></form><p>{} files</p>\
         <table><thead><tr><th>Key</th><th>Kind</th><th>Size</th><th>Try</th><th>Code file / id</th>\
         <th>Last uploaded</th></tr></thead><tbody>",
        param(query, "q"),
        param(query, "key"),
        param(query, "size"),
        param(query, "created_at"),
        param(query, "try"),
        page.total
    );
    for k in &page.items {
        let _ = write!(
            content,
            "<tr><td><a class=\"mono\" href=\"/files/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"mono\">{} {}</td><td>{}</td></tr>",
            k.id,
            esc(&k.key),
            esc(k.kind.as_str()),
            size(k.size),
            if k.namespace == Namespace::Try {
                "yes"
            } else {
                ""
            },
            opt(&k.code_file),
            opt(&k.code_id),
            rfc3339(k.last_uploaded_at)
        );
    }
    content.push_str("</tbody></table>");
    content.push_str(&pager("/files", query, page.page, page.has_next));
    Ok(Some(("Files".into(), content)))
}

async fn file(state: &Arc<AppState>, id: i64) -> Rendered {
    let found = blocking(state, move |s| {
        let Some(k) = s.key_by_id(id)? else {
            return Ok(None);
        };
        let fetch = s.fetch_of(&k)?;
        let made = s.generations_from(crate::symbolicate::gensym::GENERATOR_USER, &k.key)?;
        Ok(Some((s.lookups_of(k.id), k, fetch, made)))
    })
    .await?;
    let Some((lookups, k, fetch, made)) = found else {
        return Ok(None);
    };
    let base = state.http.public_url.trim_end_matches('/').to_string();
    let mut content = format!("<h1 class=\"mono\">{}</h1><table>", esc(&k.key));
    let rows: [(&str, String); 13] = [
        ("Namespace", esc(k.namespace.as_str())),
        ("Kind", esc(k.kind.as_str())),
        (
            "Size",
            format!(
                "{} ({} stored, {})",
                size(k.size),
                size(k.stored_size),
                esc(k.encoding.as_str())
            ),
        ),
        ("BLAKE3", format!("<code>{}</code>", esc(&k.blob))),
        ("Debug file", opt(&k.debug_file)),
        ("Debug id", format!("<code>{}</code>", opt(&k.debug_id))),
        ("Code file", opt(&k.code_file)),
        ("Code id", format!("<code>{}</code>", opt(&k.code_id))),
        ("Generator", opt(&k.generator)),
        ("OS / arch", format!("{} {}", opt(&k.os), opt(&k.arch))),
        (
            "Upload",
            k.upload_id
                .map(|u| format!("<a href=\"/uploads/{u}\">#{u}</a>"))
                .unwrap_or_default(),
        ),
        ("Created", rfc3339(k.created_at)),
        ("Last uploaded", rfc3339(k.last_uploaded_at)),
    ];
    for (label, value) in rows {
        let _ = write!(content, "<tr><th>{label}</th><td>{value}</td></tr>");
    }
    for g in &made {
        let what = match (g.status.as_str(), &g.error) {
            ("complete", _) => "made".to_string(),
            (_, Some(e)) => format!("<span class=\"failed\">failed: {}</span>", esc(e)),
            (status, None) => esc(status),
        };
        let _ = write!(
            content,
            "<tr><th>Breakpad symbols</th><td><a href=\"/uploads/{}\">{what}</a>, {}</td></tr>",
            g.id,
            rfc3339(g.created_at)
        );
    }
    if let Some(f) = fetch {
        let from = f.download_url.as_deref().unwrap_or("");
        let _ = write!(
            content,
            "<tr><th>Fetched from</th><td class=\"mono\">{}</td></tr>\
             <tr><th>Fetched at</th><td>{}</td></tr>",
            esc(from),
            rfc3339(f.created_at)
        );
    }
    content.push_str("</table><h2>Served at</h2><ul class=\"urls\">");
    let prefix = if k.namespace == Namespace::Try {
        "/try"
    } else {
        ""
    };
    // The key as uploaded first, then every other key it answers to.
    let own = crate::keys::normalize(&k.key);
    let paths = std::iter::once(format!("/{}", k.key)).chain(
        lookups?
            .into_iter()
            .filter(|l| *l != own)
            .map(|l| display(&l)),
    );
    for path in paths {
        // The code-id entry is a redirect pattern, not a fetchable URL.
        if path.ends_with("(302 to the debug file)") {
            let _ = write!(content, "<li class=\"mono\">{}</li>", esc(&path));
            continue;
        }
        let url = format!("{base}{prefix}{path}");
        let _ = write!(
            content,
            "<li><a class=\"mono\" href=\"{u}\">{u}</a><input class=\"copy\" readonly value=\"{u}\"></li>",
            u = esc(&url)
        );
    }
    content.push_str("</ul>");
    Ok(Some((k.key.clone(), content)))
}

async fn missing(state: &Arc<AppState>) -> Rendered {
    let page = blocking(state, |s| s.list_missing(1)).await?;
    let mut content = format!(
        "<h1>Missing symbols</h1><p>{} files asked for and not found. <a href=\"/missingsymbols.csv\">CSV</a></p>\
         <table><thead><tr><th>Debug file</th><th>Debug id</th><th>Code file</th><th>Code id</th><th>Count</th>\
         <th>First seen</th><th>Last seen</th></tr></thead><tbody>",
        page.total
    );
    for m in &page.items {
        let _ = write!(
            content,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&m.debug_file),
            esc(&m.debug_id),
            esc(&m.code_file),
            esc(&m.code_id),
            m.count,
            rfc3339(m.first_seen),
            rfc3339(m.last_seen)
        );
    }
    content.push_str("</tbody></table>");
    Ok(Some(("Missing symbols".into(), content)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }
}

//! Server-rendered web pages: no front-end build step, no external assets
//! (they work air-gapped). Pages are `maud` templates, checked at compile
//! time, which escape every value spliced into them: text from a client or
//! the store cannot become markup. Only the constant style sheet is
//! spliced as it is.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::http::body::{self, Body};
use crate::http::error::method_not_allowed;
use crate::http::request::{blocking, file_query, require_records, today_start, upload_query};
use crate::http::routes::Page;
use crate::http::state::AppState;
use crate::identity::lookup::display;
use crate::store::missing::MissingRow;
use crate::store::records::{FileQuery, MemberRow, UploadQuery};
use crate::store::{KeyRow, Namespace, UploadRow};
use crate::units::rfc3339;

/// Percent-encodes a query value.
fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// An optional text, empty when absent.
fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
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

/// The whole document: the site's header links and style around `content`.
fn document(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · symdepot" }
                // A constant of this file, not text from anywhere else.
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { "symdepot" }
                    a href="/uploads" { "Uploads" }
                    a href="/files" { "Files" }
                    a href="/missing" { "Missing symbols" }
                    a href="/symbolicate" { "Symbolicate" }
                }
                main { (content) }
            }
        }
    }
}

/// A page in the site's frame: its header links, style and security headers.
pub(crate) fn layout(title: &str, content: Markup) -> Response<Body> {
    let html = document(title, content).into_string();
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
    let mut resp = layout("Error", html! { h1 { (status.as_u16()) } p { (message) } });
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
        Ok(Some((title, content))) => layout(&title, content),
        Ok(None) => error_page(StatusCode::NOT_FOUND, "Not Found"),
        Err(e) => error_page(
            crate::http::error::status_of(&e),
            &crate::http::error::message_of(&e),
        ),
    }
}

type Rendered = crate::Result<Option<(String, Markup)>>;

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

fn uploads_table(rows: &[UploadRow]) -> Markup {
    html! {
        table {
            thead {
                tr {
                    th { "Upload" } th { "User" } th { "File" } th { "Size" } th { "Files" }
                    th { "Try" } th { "Status" } th { "Created" }
                }
            }
            tbody { @for u in rows { (upload_row(u)) } }
        }
    }
}

fn upload_row(u: &UploadRow) -> Markup {
    html! {
        tr {
            td { a href={ "/uploads/" (u.id) } { "#" (u.id) } }
            td { (u.user) }
            td { (opt(&u.filename)) }
            td { (size(u.size)) }
            td { (u.files_count) }
            td { @if u.try_symbols { "yes" } }
            td {
                @match &u.error {
                    Some(e) => { span.failed { "failed: " (e) } }
                    None => { (u.status) }
                }
            }
            td { (rfc3339(u.created_at)) }
        }
    }
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
    let content = html! {
        h1 { "symdepot" }
        form action="/files" method="get" #search {
            input type="search" name="q" size="50"
                placeholder="module, debug id, code id or build id" autofocus;
            " "
            button type="submit" { "Search" }
        }
        p.totals {
            span { (stats.files) " files" }
            span { (size(stats.files_bytes)) " original" }
            span { (size(stats.dedup_saved_bytes())) " saved by deduplication" }
            span { (stats.uploads_today) " uploads today" }
            span { (stats.missing) " missing symbols" }
        }
        h2 { "Recent uploads" }
        (uploads_table(&recent))
    };
    Ok(Some(("Home".into(), content)))
}

/// Previous / next links that keep the other query parameters.
fn pager(base: &str, query: Option<&str>, page: u64, has_next: bool) -> Markup {
    let rest: Vec<String> = crate::filters::query_pairs(query)
        .into_iter()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| format!("{}={}", q(&k), q(&v)))
        .collect();
    let href = |p: u64| {
        let mut params = rest.clone();
        params.push(format!("page={p}"));
        format!("{base}?{}", params.join("&"))
    };
    html! {
        p.pager {
            @if page > 1 { a href=(href(page - 1)) { "← previous" } " " }
            "page " (page) " "
            @if has_next { a href=(href(page + 1)) { "next →" } " " }
        }
    }
}

/// The value of the query parameter `name`, empty when absent.
fn param(query: Option<&str>, name: &str) -> String {
    crate::filters::query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn uploads_filters(query: Option<&str>) -> Markup {
    html! {
        form.filters method="get" action="/uploads" {
            "user " input name="user" value=(param(query, "user"));
            " size " input name="size" value=(param(query, "size")) placeholder=">=10MB";
            " created " input name="created_at" value=(param(query, "created_at")) placeholder="today";
            " try " input name="try" value=(param(query, "try")) size="5";
            " " button type="submit" { "Filter" }
        }
    }
}

async fn uploads(state: &Arc<AppState>, uq: UploadQuery, query: Option<&str>) -> Rendered {
    let page = blocking(state, move |s| s.list_uploads(&uq)).await?;
    let content = html! {
        h1 { "Uploads" }
        (uploads_filters(query))
        p { (page.total) " uploads" }
        (uploads_table(&page.items))
        (pager("/uploads", query, page.page, page.has_next))
    };
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
    let content = html! {
        h1 { "Upload #" (u.id) }
        (uploads_table(std::slice::from_ref(&u)))
        h2 { "Files" }
        (members_table(&members))
    };
    Ok(Some((format!("Upload #{}", u.id), content)))
}

fn members_table(members: &[MemberRow]) -> Markup {
    html! {
        table {
            thead {
                tr {
                    th { "Key" } th { "Outcome" } th { "Size" } th { "Stored" }
                    th { "Debug file / id" } th { "Code file / id" } th { "Error" }
                }
            }
            tbody { @for m in members { (member_row(m)) } }
        }
    }
}

fn member_row(m: &MemberRow) -> Markup {
    html! {
        tr {
            td { a.mono href={ "/files?key=" (q(&m.key)) } { (m.key) } }
            td { (m.outcome) }
            td { (m.size.map(size).unwrap_or_default()) }
            td { (m.stored_size.map(size).unwrap_or_default()) }
            td.mono { (opt(&m.debug_file)) " " (opt(&m.debug_id)) }
            td.mono { (opt(&m.code_file)) " " (opt(&m.code_id)) }
            td.failed { (opt(&m.error)) }
        }
    }
}

fn files_filters(query: Option<&str>) -> Markup {
    html! {
        form.filters method="get" action="/files" {
            "search " input name="q" value=(param(query, "q"));
            " key " input name="key" value=(param(query, "key"));
            " size " input name="size" value=(param(query, "size"));
            " created " input name="created_at" value=(param(query, "created_at"));
            " try " input name="try" value=(param(query, "try")) size="5";
            " " button type="submit" { "Filter" }
        }
    }
}

async fn files(state: &Arc<AppState>, fq: FileQuery, query: Option<&str>) -> Rendered {
    let page = blocking(state, move |s| s.list_files(&fq)).await?;
    let content = html! {
        h1 { "Files" }
        (files_filters(query))
        p { (page.total) " files" }
        table {
            thead {
                tr {
                    th { "Key" } th { "Kind" } th { "Size" } th { "Try" } th { "Code file / id" }
                    th { "Last uploaded" }
                }
            }
            tbody { @for k in &page.items { (file_row(k)) } }
        }
        (pager("/files", query, page.page, page.has_next))
    };
    Ok(Some(("Files".into(), content)))
}

fn file_row(k: &KeyRow) -> Markup {
    html! {
        tr {
            td { a.mono href={ "/files/" (k.id) } { (k.key) } }
            td { (k.kind.as_str()) }
            td { (size(k.size)) }
            td { @if k.namespace == Namespace::Try { "yes" } }
            td.mono { (opt(&k.code_file)) " " (opt(&k.code_id)) }
            td { (rfc3339(k.last_uploaded_at)) }
        }
    }
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
    let (base, paths) = (url_base(state, &k), served_paths(&k, lookups?));
    let content = html! {
        h1.mono { (k.key) }
        table {
            @for (label, value) in file_facts(&k) { tr { th { (label) } td { (value) } } }
            @for g in &made { (generation_row(g)) }
            @if let Some(f) = &fetch { (fetched_rows(f)) }
        }
        h2 { "Served at" }
        ul.urls { @for path in &paths { (served_item(&base, path)) } }
    };
    Ok(Some((k.key.clone(), content)))
}

/// What a file's page says of it, label by label.
fn file_facts(k: &KeyRow) -> [(&'static str, Markup); 13] {
    [
        ("Namespace", html! { (k.namespace.as_str()) }),
        ("Kind", html! { (k.kind.as_str()) }),
        (
            "Size",
            html! {
                (size(k.size)) " (" (size(k.stored_size)) " stored, " (k.encoding.as_str()) ")"
            },
        ),
        ("BLAKE3", html! { code { (k.blob) } }),
        ("Debug file", html! { (opt(&k.debug_file)) }),
        ("Debug id", html! { code { (opt(&k.debug_id)) } }),
        ("Code file", html! { (opt(&k.code_file)) }),
        ("Code id", html! { code { (opt(&k.code_id)) } }),
        ("Generator", html! { (opt(&k.generator)) }),
        ("OS / arch", html! { (opt(&k.os)) " " (opt(&k.arch)) }),
        (
            "Upload",
            html! { @if let Some(u) = k.upload_id { a href={ "/uploads/" (u) } { "#" (u) } } },
        ),
        ("Created", html! { (rfc3339(k.created_at)) }),
        ("Last uploaded", html! { (rfc3339(k.last_uploaded_at)) }),
    ]
}

/// A `.sym` made from this debug file: the upload that made it, and how it went.
fn generation_row(g: &UploadRow) -> Markup {
    html! {
        tr {
            th { "Breakpad symbols" }
            td {
                a href={ "/uploads/" (g.id) } {
                    @match (g.status.as_str(), &g.error) {
                        ("complete", _) => { "made" }
                        (_, Some(e)) => { span.failed { "failed: " (e) } }
                        (status, None) => { (status) }
                    }
                }
                ", " (rfc3339(g.created_at))
            }
        }
    }
}

/// Where a file fetched from an upstream came from, and when.
fn fetched_rows(f: &UploadRow) -> Markup {
    html! {
        tr { th { "Fetched from" } td.mono { (opt(&f.download_url)) } }
        tr { th { "Fetched at" } td { (rfc3339(f.created_at)) } }
    }
}

/// Where a file's URLs start: the public URL, then `/try` for a try file.
fn url_base(state: &AppState, k: &KeyRow) -> String {
    let base = state.http.public_url.trim_end_matches('/');
    let prefix = if k.namespace == Namespace::Try {
        "/try"
    } else {
        ""
    };
    format!("{base}{prefix}")
}

/// The paths a file is served at: the key as uploaded first, then every
/// other key it answers to.
fn served_paths(k: &KeyRow, lookups: Vec<String>) -> Vec<String> {
    let own = crate::keys::normalize(&k.key);
    let others = (lookups.into_iter())
        .filter(|l| *l != own)
        .map(|l| display(&l));
    std::iter::once(format!("/{}", k.key))
        .chain(others)
        .collect()
}

fn served_item(url_base: &str, path: &str) -> Markup {
    html! {
        // The code-id entry is a redirect pattern, not a fetchable URL.
        @if path.ends_with("(302 to the debug file)") {
            li.mono { (path) }
        } @else {
            @let url = format!("{url_base}{path}");
            li { a.mono href=(url) { (url) } input.copy readonly value=(url); }
        }
    }
}

async fn missing(state: &Arc<AppState>) -> Rendered {
    let page = blocking(state, |s| s.list_missing(1)).await?;
    let content = html! {
        h1 { "Missing symbols" }
        p { (page.total) " files asked for and not found. " a href="/missingsymbols.csv" { "CSV" } }
        table {
            thead {
                tr {
                    th { "Debug file" } th { "Debug id" } th { "Code file" } th { "Code id" }
                    th { "Count" } th { "First seen" } th { "Last seen" }
                }
            }
            tbody { @for m in &page.items { (missing_row(m)) } }
        }
    };
    Ok(Some(("Missing symbols".into(), content)))
}

fn missing_row(m: &MissingRow) -> Markup {
    html! {
        tr {
            td { (m.debug_file) }
            td.mono { (m.debug_id) }
            td { (m.code_file) }
            td.mono { (m.code_id) }
            td { (m.count) }
            td { (rfc3339(m.first_seen)) }
            td { (rfc3339(m.last_seen)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "<script>alert(1)</script>";
    const BREAKOUT: &str = "\"><img src=x onerror=alert(1)>";

    fn hostile_upload() -> UploadRow {
        UploadRow {
            id: 7,
            user: SCRIPT.into(),
            filename: Some(BREAKOUT.into()),
            size: 1,
            download_url: None,
            try_symbols: false,
            status: "failed".into(),
            http_status: None,
            error: Some(SCRIPT.into()),
            files_count: 0,
            created_at: 0,
            completed_at: None,
        }
    }

    /// Neither hostile value survives as it was: no tag of theirs, no quote
    /// closing an attribute.
    fn assert_inert(html: &str) {
        assert!(!html.contains(SCRIPT) && !html.contains(BREAKOUT), "{html}");
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
    }

    #[test]
    fn hostile_values_are_shown_escaped() {
        let table = uploads_table(&[hostile_upload()]).into_string();
        assert_inert(&table);
        assert!(
            table.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"),
            "{table}"
        );
        assert!(
            table.contains("<td>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</td>"),
            "{table}"
        );
        assert!(table.contains("failed: &lt;script&gt;"), "{table}");
    }

    #[test]
    fn hostile_values_in_attributes_and_titles_are_escaped() {
        let member = MemberRow {
            key: format!("{BREAKOUT}/{SCRIPT}"),
            outcome: "new".into(),
            size: None,
            stored_size: None,
            blake3: None,
            debug_file: Some(SCRIPT.into()),
            debug_id: None,
            code_file: None,
            code_id: None,
            generator: None,
            error: None,
        };
        let table = members_table(&[member]).into_string();
        assert_inert(&table);
        assert!(table.contains("href=\"/files?key=%22%3E%3Cimg"), "{table}");
        let item = served_item("http://x", &format!("/{BREAKOUT}")).into_string();
        assert_inert(&item);
        assert!(
            item.contains("value=\"http://x/&quot;&gt;&lt;img"),
            "{item}"
        );
        let page = document(SCRIPT, html! { p { (BREAKOUT) } }).into_string();
        assert!(page.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; · symdepot</title>"));
        assert!(!page.contains(SCRIPT) && !page.contains(BREAKOUT), "{page}");
    }

    #[test]
    fn pager_links_keep_the_query_escaped() {
        let links = pager("/uploads", Some("user=a\"b&page=2"), 2, true).into_string();
        assert_eq!(
            links,
            "<p class=\"pager\"><a href=\"/uploads?user=a%22b&amp;page=1\">← previous</a> \
             page 2 <a href=\"/uploads?user=a%22b&amp;page=3\">next →</a> </p>"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }
}

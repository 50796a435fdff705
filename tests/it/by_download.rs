//! Upload by download (`url=`): allow-listed hosts, every redirect checked,
//! remote errors and timeouts. A small HTTP server on loopback stands in for
//! the remote (a test double for a CI artifact store, which cannot run here).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// Serves `routes` (path → raw response head and body) until the test ends.
pub(crate) fn remote(routes: Vec<(&'static str, String, Vec<u8>)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let routes = routes.clone();
            std::thread::spawn(move || answer(conn, &routes, port));
        }
    });
    port
}

fn answer(mut conn: TcpStream, routes: &[(&'static str, String, Vec<u8>)], port: u16) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
    }
    let Some((_, head, body)) = routes.iter().find(|(p, _, _)| *p == path) else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    if head == "hang" {
        std::thread::sleep(Duration::from_secs(5));
        return;
    }
    let head = head.replace("{port}", &port.to_string());
    let _ = write!(
        conn,
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(body);
}

pub(crate) fn by_url(
    s: &TestServer,
    url: &str,
    try_value: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut form = vec![("url", url.to_string())];
    if let Some(t) = try_value {
        form.push(("try", t.to_string()));
    }
    let resp = s
        .client
        .post(s.url("/upload/"))
        .header("Auth-Token", &s.token)
        .form(&form)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_zip_is_fetched_through_allowed_redirects() {
    let key = format!("r.pdb/{ID_A}/r.sym");
    let zip = zip_of(&[(&key, &sym("r.pdb", ID_A, ""))]);
    let port = remote(vec![
        ("/symbols.zip", "HTTP/1.1 200 OK".into(), zip),
        (
            "/hop",
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/symbols.zip".into(),
            Vec::new(),
        ),
    ]);
    let s = TestServer::with_config(|c| {
        c.upload_download_domains = vec!["127.0.0.1".into()];
        c.allow_http_downloads = true;
    });
    let url = format!("http://127.0.0.1:{port}/hop");
    let (status, body) = by_url(&s, &url, Some("1"));
    assert_eq!(status, 201, "{body}");
    let up = &body["upload"];
    assert_eq!(up["download_url"], url.as_str());
    assert_eq!(
        up["redirect_urls"],
        serde_json::json!([format!("http://127.0.0.1:{port}/symbols.zip")])
    );
    assert_eq!(up["try_symbols"], true);
    assert_eq!(up["uploaded_keys"], serde_json::json!([key.clone()]));
    assert_eq!(s.get(&format!("/try/{key}")).status(), 200);
    let rec: String = s.one("SELECT download_url FROM uploads", &[]);
    assert_eq!(rec, url);
}

#[test]
fn a_redirect_to_a_disallowed_host_is_refused() {
    let zip = zip_of(&[(&format!("r.pdb/{ID_A}/r.sym"), &sym("r.pdb", ID_A, ""))]);
    let port = remote(vec![
        ("/symbols.zip", "HTTP/1.1 200 OK".into(), zip),
        // The same server under another name: not on the allow list.
        (
            "/evil",
            "HTTP/1.1 302 Found\r\nLocation: http://localhost:{port}/symbols.zip".into(),
            Vec::new(),
        ),
        (
            "/loop",
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/loop".into(),
            Vec::new(),
        ),
        (
            "/broken",
            "HTTP/1.1 500 Internal Server Error".into(),
            Vec::new(),
        ),
        ("/hang", "hang".into(), Vec::new()),
    ]);
    let s = TestServer::with_config(|c| {
        c.upload_download_domains = vec!["127.0.0.1".into()];
        c.allow_http_downloads = true;
        c.upload_download_timeout = "1s".into();
    });
    let (status, body) = by_url(&s, &format!("http://127.0.0.1:{port}/evil"), None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("\"localhost\" is not in upload_download_domains"),
        "{body}"
    );
    let (status, body) = by_url(&s, &format!("http://127.0.0.1:{port}/loop"), None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("more than 5 redirects"),
        "{body}"
    );
    let (status, _) = by_url(&s, &format!("http://127.0.0.1:{port}/broken"), None);
    assert_eq!(status, 502);
    let (status, _) = by_url(&s, &format!("http://127.0.0.1:{port}/hang"), None);
    assert_eq!(status, 504);
    let (status, body) = by_url(&s, &format!("http://localhost:{port}/symbols.zip"), None);
    assert_eq!(status, 400, "{body}");
    let (status, body) = by_url(&s, "not a url", None);
    assert_eq!(status, 400, "{body}");
    assert!(s.blobs().is_empty());
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE status = 'failed'"),
        6
    );
}

#[test]
fn https_only_unless_allowed_and_off_without_domains() {
    let s = TestServer::with_config(|c| c.upload_download_domains = vec!["127.0.0.1".into()]);
    let (status, body) = by_url(&s, "http://127.0.0.1:9/symbols.zip", None);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("scheme"), "{body}");
    let off = TestServer::start();
    let (status, body) = by_url(&off, "https://127.0.0.1/symbols.zip", None);
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("not enabled"),
        "{body}"
    );
}

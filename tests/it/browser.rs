//! The web pages in a real browser: headless Chromium driven over the
//! WebDriver protocol by `chromedriver` (Debian's `chromium-driver`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::support::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/install-test-tools)");
        let base = format!("http://127.0.0.1:{port}");
        let http = crate::support::client()
            .timeout(crate::support::PATIENCE)
            .build()
            .unwrap();
        let deadline = Instant::now() + crate::support::PATIENCE;
        while http
            .get(format!("{base}/status"))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_none_or(|v| v["value"]["ready"] != true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage", "--disable-quic", "--no-first-run", "--disable-component-update",
                     "--disable-sync", format!("--user-data-dir={}", profile.display()), "--window-size=1200,900"]
        }}}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{resp}"))
            .to_string();
        let mut b = Browser {
            driver,
            base,
            session,
            http,
        };
        b.base = format!("{}/session/{}", b.base, b.session);
        b
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().unwrap();
        let status = resp.status();
        let v: Value = resp.json().unwrap();
        assert!(status.is_success(), "{path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            reqwest::Method::POST,
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call(
            reqwest::Method::GET,
            &format!("/element/{id}/text"),
            Value::Null,
        )
        .as_str()
        .unwrap()
        .to_string()
    }

    fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", Value::Null)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits until the page the browser shows is one whose URL `is` accepts:
    /// a click that navigates returns before the next page has loaded.
    fn wait_for_url(&self, what: &str, is: impl Fn(&str) -> bool) -> String {
        for _ in 0..400 {
            let url = self.url();
            if is(&url) {
                return url;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the browser never reached {what}: {}", self.url());
    }

    fn screenshot(&self, to: &Path) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn a_person_finds_an_upload_and_searches_a_debug_id() {
    let s = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let user_token = s.create_token(&["upload"], "<i>mallory</i>");
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    let data = sym("xul.pdb", ID_A, "INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\n");
    assert_eq!(
        s.upload_with(&user_token, zip_of(&[(&key, &data)]), None)
            .status(),
        201
    );

    let browser = Browser::start(&scratch.path().join("profile"));
    browser.go(&s.url("/uploads"));
    let table = browser.text("table");
    assert!(
        table.contains("<i>mallory</i>"),
        "user names are shown as text, escaped: {table}"
    );
    browser.click("a[href='/uploads/1']");
    browser.wait_for_url("the upload's page", |u| u.ends_with("/uploads/1"));
    let files = browser.text("main");
    assert!(files.contains(&key), "{files}");
    assert!(files.contains("new"), "{files}");

    browser.go(&s.url("/"));
    browser.type_into("input[name='q']", &ID_A.to_lowercase());
    browser.click("#search button");
    let results = browser.wait_for_url("the search results", |u| u.contains("/files?q="));
    let found = browser.text("main");
    assert!(found.contains("1 files") && found.contains(&key), "{found}");
    browser.click("table a");
    browser.wait_for_url("the file's page", |u| u != results);
    let detail = browser.text("main");
    assert!(detail.contains(&format!("/{key}")), "{detail}");
    assert!(detail.contains("xul.dll"), "{detail}");
    let shot = scratch.path().join("file-page.png");
    browser.screenshot(&shot);
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
}

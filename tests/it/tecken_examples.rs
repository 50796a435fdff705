//! Tecken's documented upload examples, run unchanged against a local server
//! with the real `curl` and Python `requests`.

use std::process::Command;

use crate::support::*;

fn write_zip(dir: &std::path::Path, name: &str, module: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let data = sym(module, ID_A, "");
    std::fs::write(
        &path,
        zip_of(&[(&format!("{module}/{ID_A}/{module}.sym"), &data)]),
    )
    .unwrap();
    path
}

fn curl(args: &[&str]) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "--user-agent",
            "example/1.0",
            "-X",
            "POST",
        ])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn curl_form_field_named_after_the_file() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let zip = write_zip(dir.path(), "myfile.zip", "curlmod");
    let (code, body) = curl(&[
        "-H",
        &format!("auth-token: {}", s.token),
        "--form",
        &format!("myfile.zip=@{}", zip.display()),
        &s.url("/upload/"),
    ]);
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["upload"]["uploaded_keys"],
        serde_json::json!([format!("curlmod/{ID_A}/curlmod.sym")])
    );
    assert_eq!(body["upload"]["try_symbols"], false);
}

#[test]
fn curl_try_upload_and_plain_file_field() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let zip = write_zip(dir.path(), "symbols.zip", "trymod");
    let (code, body) = curl(&[
        "-H",
        &format!("auth-token: {}-uploadtry-20230913", s.token),
        "--form",
        "try=1",
        "--form",
        &format!("symbols.zip=@{}", zip.display()),
        &s.url("/upload/"),
    ]);
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["upload"]["try_symbols"], true);

    let zip = write_zip(dir.path(), "other.zip", "filemod");
    let (code, body) = curl(&[
        "-H",
        &format!("Auth-Token: {}", s.token),
        "-F",
        &format!("file=@{}", zip.display()),
        &s.url("/upload/"),
    ]);
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["upload"]["filename"], "other.zip");
}

#[test]
fn python_requests_example() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let zip = write_zip(dir.path(), "myfile.zip", "pymod");
    let script = format!(
        r#"
import requests
files = {{"myfile.zip": open({zip:?}, "rb")}}
url = {url:?}
headers = {{"User-Agent": "example/1.0", "Auth-token": {token:?}}}
response = requests.post(url, files=files, headers=headers)
print(response.status_code)
print(response.text)
"#,
        zip = zip.display().to_string(),
        url = s.url("/upload/"),
        token = s.token,
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("201"), "{stdout}");
    let body: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        body["upload"]["uploaded_keys"],
        serde_json::json!([format!("pymod/{ID_A}/pymod.sym")])
    );
}

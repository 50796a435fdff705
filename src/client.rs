//! `symdepot upload`: the client side of `POST /upload/`, for symdepot and
//! any Tecken-compatible server.
//!
//! A directory is zipped on the fly (its relative paths are the member names,
//! so a `dump_syms -s` tree is already in the layout); payloads above
//! `max_size` are split into several zips. Each zip is streamed from disk
//! with a progress bar on a terminal (a log line per zip otherwise), and
//! retried on 429, 5xx and connection errors with exponential backoff that
//! honours `Retry-After`.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::zips::SplitZipWriter;

/// How an upload is made.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The server's base URL or its `/upload/` URL.
    pub url: String,
    pub token: String,
    pub is_try: bool,
    /// Members may have any path (`?layout=auto`).
    pub auto: bool,
    /// Largest total of member bytes per zip.
    pub max_size: u64,
    /// Attempts per zip, the first included.
    pub attempts: u32,
    /// First backoff; doubled after each failure.
    pub backoff: Duration,
}

/// The `/upload/` URL for a base URL.
pub fn upload_url(base: &str, auto: bool) -> String {
    let mut url = base.trim_end_matches('/').to_string();
    if !url.ends_with("/upload") {
        url.push_str("/upload");
    }
    url.push('/');
    if auto {
        url.push_str("?layout=auto");
    }
    url
}

/// Uploads a zip or a directory; returns the upload ids the server gave.
pub fn upload(path: &Path, opts: &UploadOptions) -> anyhow::Result<Vec<i64>> {
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let zips = if path.is_dir() {
        zip_directory(path, scratch.path(), opts.max_size)?
    } else if fs::metadata(path)?.len() > opts.max_size {
        split_zip(path, scratch.path(), opts.max_size)?
    } else {
        vec![path.to_path_buf()]
    };
    // No redirect is followed: the token header goes to the URL given and
    // nowhere else (reqwest strips only `Authorization` on a redirect to
    // another host, not `Auth-Token`); a redirect is reported instead.
    crate::tls::use_ring();
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("symdepot-upload/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut ids = Vec::new();
    for (i, zip) in zips.iter().enumerate() {
        let label = format!(
            "{} ({}/{})",
            zip.file_name().unwrap_or_default().to_string_lossy(),
            i + 1,
            zips.len()
        );
        ids.push(send_with_retries(&client, zip, &label, opts)?);
    }
    Ok(ids)
}

/// Every file under `dir`, with its path relative to `dir` (`/`-separated).
fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>, top: &Path) -> io::Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out, top)?;
        } else if p.is_file() {
            let rel = p.strip_prefix(top).unwrap_or(&p);
            let name = rel
                .iter()
                .map(|s| s.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((p, name));
        }
    }
    Ok(())
}

/// Zips a directory into zips of at most `max` member bytes each.
fn zip_directory(dir: &Path, scratch: &Path, max: u64) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk(dir, &mut files, dir)?;
    if files.is_empty() {
        bail!("{} holds no files", dir.display());
    }
    let mut zips = SplitZipWriter::new(scratch, "symbols", max);
    for (path, name) in files {
        let len = fs::metadata(&path)?.len();
        zips.add(&name, &mut File::open(&path)?, len)?;
    }
    Ok(zips.finish()?)
}

/// Splits a zip larger than `max` into several, copying members without recompressing.
fn split_zip(path: &Path, scratch: &Path, max: u64) -> anyhow::Result<Vec<PathBuf>> {
    let mut archive = zip::ZipArchive::new(File::open(path)?).context("reading the zip")?;
    let mut zips = SplitZipWriter::new(scratch, "part", max);
    for i in 0..archive.len() {
        zips.add_raw(archive.by_index_raw(i)?)?;
    }
    Ok(zips.finish()?)
}

/// A reader that reports progress.
struct Progress<R> {
    inner: R,
    done: u64,
    total: u64,
    label: String,
    tty: bool,
    last: Instant,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.tty && (self.last.elapsed() > Duration::from_millis(100) || n == 0) {
            self.last = Instant::now();
            let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
            let bar = "#".repeat((pct / 4) as usize);
            eprint!(
                "\r{} [{bar:<25}] {pct:>3}% {}/{} bytes",
                self.label, self.done, self.total
            );
            if n == 0 {
                eprintln!();
            }
        }
        Ok(n)
    }
}

fn send_with_retries(
    client: &reqwest::blocking::Client,
    zip: &Path,
    label: &str,
    opts: &UploadOptions,
) -> anyhow::Result<i64> {
    let url = upload_url(&opts.url, opts.auto);
    let mut wait = opts.backoff;
    for attempt in 1..=opts.attempts.max(1) {
        let last = attempt == opts.attempts.max(1);
        match send(client, zip, label, &url, opts) {
            Ok(Outcome::Done(id)) => return Ok(id),
            Ok(Outcome::Fatal(status, body)) => {
                bail!("{label}: the server refused the upload ({status}): {body}")
            }
            Ok(Outcome::Retry(status, after)) if !last => {
                let pause = after.unwrap_or(wait).max(wait);
                eprintln!(
                    "{label}: {status}; retrying in {:.1}s (attempt {attempt})",
                    pause.as_secs_f64()
                );
                std::thread::sleep(pause);
            }
            Ok(Outcome::Retry(status, _)) => {
                bail!("{label}: still {status} after {attempt} attempts")
            }
            Err(e) if !last => {
                eprintln!(
                    "{label}: {e}; retrying in {:.1}s (attempt {attempt})",
                    wait.as_secs_f64()
                );
                std::thread::sleep(wait);
            }
            Err(e) => return Err(e.context(format!("{label}: giving up after {attempt} attempts"))),
        }
        wait *= 2;
    }
    unreachable!("the last attempt returns")
}

enum Outcome {
    Done(i64),
    Retry(u16, Option<Duration>),
    Fatal(u16, String),
}

fn send(
    client: &reqwest::blocking::Client,
    zip: &Path,
    label: &str,
    url: &str,
    opts: &UploadOptions,
) -> anyhow::Result<Outcome> {
    let total = fs::metadata(zip)?.len();
    let reader = Progress {
        inner: File::open(zip)?,
        done: 0,
        total,
        label: label.to_string(),
        tty: io::stderr().is_terminal(),
        last: Instant::now(),
    };
    let name = zip
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let part = reqwest::blocking::multipart::Part::reader_with_length(reader, total)
        .file_name(name.clone());
    let mut form = reqwest::blocking::multipart::Form::new();
    if opts.is_try {
        form = form.text("try", "1");
    }
    form = form.part(name, part);
    let resp = client
        .post(url)
        .header("Auth-Token", &opts.token)
        .multipart(form)
        .send()?;
    let status = resp.status().as_u16();
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.text().unwrap_or_default();
    if status == 201 {
        let v: serde_json::Value =
            serde_json::from_str(&body).context("the 201 answer is not JSON")?;
        let id = v["upload"]["id"]
            .as_i64()
            .context("the 201 answer names no upload id")?;
        if !io::stderr().is_terminal() {
            eprintln!("{label}: uploaded as {id}");
        }
        return Ok(Outcome::Done(id));
    }
    if status == 429 || status >= 500 {
        return Ok(Outcome::Retry(status, after));
    }
    Ok(Outcome::Fatal(status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls() {
        assert_eq!(
            upload_url("https://symbols.example.com", false),
            "https://symbols.example.com/upload/"
        );
        assert_eq!(
            upload_url("https://symbols.example.com/upload/", false),
            "https://symbols.example.com/upload/"
        );
        assert_eq!(
            upload_url("http://h:1/", true),
            "http://h:1/upload/?layout=auto"
        );
    }
}

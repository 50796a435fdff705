//! `symdepot upload`: the client side of `POST /upload/`, for symdepot and
//! any Tecken-compatible server.
//!
//! A directory is zipped on the fly (its relative paths are the member names,
//! so a `dump_syms -s` tree is already in the layout); payloads above
//! `max_size` are split into several zips. Each zip is streamed from disk
//! with a progress bar on a terminal (`indicatif`; a log line per zip
//! otherwise), and retried on 429, 5xx and connection errors with exponential
//! backoff that honours `Retry-After`. Each zip's answer says how many keys
//! were new, replaced, skipped as unchanged and ignored ([`Uploaded`]).

use std::fs::{self, File};
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// What one zip's upload did, as the server answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// The upload's id.
    pub id: i64,
    /// Keys stored that the server did not hold.
    pub new: usize,
    /// Keys stored in place of different content.
    pub replaced: usize,
    /// Keys that already held the same content.
    pub skipped: usize,
    /// Members ignored by rule (not symbol files).
    pub ignored: usize,
}

impl Uploaded {
    /// Reads a 201 answer (symdepot's or Tecken's, which lists no replaced keys).
    fn from_answer(body: &str) -> anyhow::Result<Uploaded> {
        let v: serde_json::Value =
            serde_json::from_str(body).context("the 201 answer is not JSON")?;
        let u = &v["upload"];
        let count = |field: &str| u[field].as_array().map_or(0, Vec::len);
        let replaced = count("replaced_keys");
        Ok(Uploaded {
            id: u["id"]
                .as_i64()
                .context("the 201 answer names no upload id")?,
            new: count("uploaded_keys").saturating_sub(replaced),
            replaced,
            skipped: count("skipped_keys"),
            ignored: count("ignored_keys"),
        })
    }

    /// Adds another zip's counts (the id is the first's).
    pub fn add(&mut self, other: &Uploaded) {
        self.new += other.new;
        self.replaced += other.replaced;
        self.skipped += other.skipped;
        self.ignored += other.ignored;
    }

    /// `3 new, 1 replaced, 12 skipped (unchanged), 0 ignored`.
    pub fn counts(&self) -> String {
        format!(
            "{} new, {} replaced, {} skipped (unchanged), {} ignored",
            self.new, self.replaced, self.skipped, self.ignored
        )
    }
}

/// Checks the server's URL before anything is zipped or sent: it needs its
/// scheme (`127.0.0.1:8000` alone would be retried for half a minute).
pub fn check_url(base: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(base);
    match parsed {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) if matches!(u.scheme(), "http" | "https") => bail!("--url {base:?} names no host"),
        _ => {
            // What was typed, without any user:password@ in it.
            let shown = base
                .rsplit('@')
                .next()
                .unwrap_or(base)
                .trim_start_matches('/');
            bail!(
                "--url {shown:?} is not an http:// or https:// URL (did you mean http://{shown}?)"
            )
        }
    }
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

/// Uploads a zip or a directory; returns what each zip's upload did.
pub fn upload(path: &Path, opts: &UploadOptions) -> anyhow::Result<Vec<Uploaded>> {
    check_url(&opts.url)?;
    let meta = fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let zips = if meta.is_dir() {
        zip_directory(path, scratch.path(), opts.max_size)?
    } else if meta.len() > opts.max_size {
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

fn send_with_retries(
    client: &reqwest::blocking::Client,
    zip: &Path,
    label: &str,
    opts: &UploadOptions,
) -> anyhow::Result<Uploaded> {
    let url = upload_url(&opts.url, opts.auto);
    let mut wait = opts.backoff;
    for attempt in 1..=opts.attempts.max(1) {
        let last = attempt == opts.attempts.max(1);
        match send(client, zip, label, &url, opts) {
            Ok(Outcome::Done(id)) => return Ok(id),
            Ok(Outcome::Fatal(status, body)) => {
                let layout = body.contains("<module>/<debug_id>/<file>") || body.contains("layout");
                let hint = if status == 400 && !opts.auto && layout {
                    " (files in any other layout: pass --auto, and each is placed by its own identity)"
                } else {
                    ""
                };
                bail!("{label}: the server refused the upload ({status}): {body}{hint}")
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
    Done(Uploaded),
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
    let reader = progress_bar(total, label).wrap_read(File::open(zip)?);
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
    let body = answer_text(resp);
    if status == 201 {
        let done = Uploaded::from_answer(&body)?;
        eprintln!("{label}: upload {}: {}", done.id, done.counts());
        return Ok(Outcome::Done(done));
    }
    if status == 429 || status >= 500 {
        return Ok(Outcome::Retry(status, after));
    }
    Ok(Outcome::Fatal(status, body))
}

/// Most of an answer's body the client reads (a server could send without end).
const ANSWER_MAX: u64 = 16 << 20;

/// An answer's body as text to show: at most [`ANSWER_MAX`] bytes, control
/// characters (terminal escapes among them) replaced.
fn answer_text(resp: reqwest::blocking::Response) -> String {
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::Read::take(resp, ANSWER_MAX), &mut bytes);
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

/// A byte bar for one zip on a terminal; draws nothing elsewhere.
fn progress_bar(total: u64, label: &str) -> indicatif::ProgressBar {
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:25}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#>-"),
    );
    bar.set_prefix(label.to_string());
    bar
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

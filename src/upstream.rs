//! Upstream symbol servers (`spec/mirror.md`): what the store lacks is
//! fetched from them, checked against the key it was fetched for, and kept in
//! the `cache` namespace.
//!
//! This module holds the upstreams as the daemon uses them, parsed and
//! checked once from the configuration (`[[upstream]]` tables, then the
//! short `upstreams = "protocol+url,…"` form): a URL that is not http(s), an
//! unknown protocol, a pattern that does not parse, a header that is not a
//! header, or a duration that is not one stops the daemon with one line
//! naming the setting.

use std::time::Duration;

use anyhow::{Context, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::units::parse_duration;

/// One `[[upstream]]` table as written in the configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL (`https://symbols.example.org/`).
    pub url: String,
    /// `breakpad`, `symstore` or `debuginfod`.
    pub protocol: String,
    /// Glob patterns on the first key segment; empty: every module.
    #[serde(default)]
    pub include: Vec<String>,
    /// Glob patterns on the first key segment never asked of this upstream.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Extra request headers (a bearer token for a private upstream). Never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// How long one fetch may take, whole. Default `30s`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// How long this upstream's 404 is remembered. Default `1h`.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: String,
    /// Hosts (`host` or `host:port`) besides its own that its redirects and
    /// `file.ptr` answers may lead to (Microsoft's symbol server redirects
    /// to blob storage). Its headers are never sent there.
    #[serde(default)]
    pub redirect_hosts: Vec<String>,
}

impl UpstreamConfig {
    /// The keys an `[[upstream]]` table may hold.
    pub fn keys() -> Vec<String> {
        crate::config::table_keys(&UpstreamConfig {
            url: String::new(),
            protocol: String::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            headers: std::collections::BTreeMap::new(),
            timeout: default_timeout(),
            negative_ttl: default_negative_ttl(),
            redirect_hosts: Vec::new(),
        })
    }
}

fn default_timeout() -> String {
    "30s".to_string()
}

fn default_negative_ttl() -> String {
    "1h".to_string()
}

impl std::fmt::Debug for UpstreamConfig {
    /// Header values may be credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("url", &crate::units::url_without_credentials(&self.url))
            .field("protocol", &self.protocol)
            .field("include", &self.include)
            .field("exclude", &self.exclude)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("negative_ttl", &self.negative_ttl)
            .field("redirect_hosts", &self.redirect_hosts)
            .finish()
    }
}

/// The path shapes an upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Tecken, Mozilla, Electron: `<module>/<debug_id>/<file>`.
    Breakpad,
    /// Microsoft SSQP: the same shape, plus `file.ptr` and CAB-compressed names.
    SymStore,
    /// `/buildid/<id>/<role>`.
    Debuginfod,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "breakpad" => Some(Protocol::Breakpad),
            "symstore" => Some(Protocol::SymStore),
            "debuginfod" => Some(Protocol::Debuginfod),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Breakpad => "breakpad",
            Protocol::SymStore => "symstore",
            Protocol::Debuginfod => "debuginfod",
        }
    }
}

/// An upstream, checked.
#[derive(Clone)]
pub struct Upstream {
    /// How records, logs and metrics name it: its host (and port).
    pub name: String,
    pub url: reqwest::Url,
    pub protocol: Protocol,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    /// Never logged (see [`UpstreamConfig`]'s Debug).
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub timeout: Duration,
    pub negative_ttl: Duration,
    /// Lower-case hosts, each with its port (`None`: the scheme's default).
    redirect_hosts: Vec<(String, Option<u16>)>,
}

impl std::fmt::Debug for Upstream {
    /// The URL without credentials, header names without values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Upstream")
            .field(
                "url",
                &crate::units::url_without_credentials(self.url.as_str()),
            )
            .field("protocol", &self.protocol)
            .field("headers", &names)
            .field("timeout", &self.timeout)
            .field("negative_ttl", &self.negative_ttl)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Whether a key of this module may be asked of this upstream.
    pub fn wants(&self, module: &str) -> bool {
        let module = module.to_ascii_lowercase();
        self.include.as_ref().is_none_or(|g| g.is_match(&module))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(&module))
    }

    /// Whether `url`'s host is one of its `redirect_hosts` (an entry without
    /// a port allows the scheme's default port only).
    pub fn redirects_to(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        let default = match url.scheme() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        };
        (self.redirect_hosts.iter()).any(|(h, p)| *h == host && p.or(default) == port)
    }

    /// The extra headers of every request to it.
    pub fn headers(&self) -> &[(http::HeaderName, http::HeaderValue)] {
        &self.headers
    }

    /// Checks one configured upstream; errors name `setting` (`upstream[2]`).
    pub fn from_config(c: &UpstreamConfig, setting: &str) -> anyhow::Result<Upstream> {
        let url = reqwest::Url::parse(c.url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .with_context(|| {
                format!(
                    "{setting}.url: {:?} is not an http(s) URL",
                    crate::units::url_without_credentials(&c.url)
                )
            })?;
        let Some(protocol) = Protocol::parse(c.protocol.trim()) else {
            bail!(
                "{setting}.protocol: {:?} is not breakpad, symstore or debuginfod",
                c.protocol
            );
        };
        let globs = |what: &str, patterns: &[String]| -> anyhow::Result<Option<GlobSet>> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let mut set = GlobSetBuilder::new();
            for p in patterns {
                let glob = Glob::new(&p.to_ascii_lowercase())
                    .map_err(|e| anyhow::anyhow!("{setting}.{what}: pattern {p:?}: {e}"))?;
                set.add(glob);
            }
            Ok(Some(
                set.build().with_context(|| format!("{setting}.{what}"))?,
            ))
        };
        let mut headers = Vec::new();
        for (name, value) in &c.headers {
            let n = http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .with_context(|| format!("{setting}.headers: {name:?} is not a header name"))?;
            let mut v = http::HeaderValue::from_str(value).ok().with_context(|| {
                format!("{setting}.headers.{name}: not a header value (control characters?)")
            })?;
            v.set_sensitive(true);
            headers.push((n, v));
        }
        let duration = |what: &str, value: &str| {
            parse_duration(value)
                .filter(|d| !d.is_zero())
                .with_context(|| {
                    format!("{setting}.{what}: {value:?} is not a duration such as 30s")
                })
        };
        let mut redirect_hosts = Vec::new();
        for h in &c.redirect_hosts {
            let Some(entry) = host_and_port(h.trim()) else {
                bail!("{setting}.redirect_hosts: {h:?} is not a host or host:port");
            };
            redirect_hosts.push(entry);
        }
        let mut name = url.host_str().unwrap_or_default().to_string();
        if let Some(port) = url.port() {
            name.push_str(&format!(":{port}"));
        }
        Ok(Upstream {
            name,
            protocol,
            include: globs("include", &c.include)?,
            exclude: globs("exclude", &c.exclude)?,
            headers,
            timeout: duration("timeout", &c.timeout)?,
            negative_ttl: duration("negative_ttl", &c.negative_ttl)?,
            redirect_hosts,
            url,
        })
    }
}

/// `host` or `host:port` (an IPv6 host in brackets), the host lower-cased.
fn host_and_port(entry: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
            (h, Some(p.parse::<u16>().ok()?))
        }
        _ => (entry, None),
    };
    // The host must be one a URL can hold, and nothing else.
    let url = reqwest::Url::parse(&format!("http://{host}/")).ok()?;
    let parsed = url.host_str()?.to_ascii_lowercase();
    let plain = url.path() == "/" && url.username().is_empty() && url.port().is_none();
    (plain && parsed == host.to_ascii_lowercase()).then_some((parsed, port))
}

/// The upstreams of a configuration, in order: its `[[upstream]]` tables,
/// then the entries of `upstreams` (`protocol+url`, comma-separated).
pub fn from_config(tables: &[UpstreamConfig], short: &str) -> anyhow::Result<Vec<Upstream>> {
    let mut out = Vec::new();
    for (i, c) in tables.iter().enumerate() {
        out.push(Upstream::from_config(c, &format!("upstream[{}]", i + 1))?);
    }
    for entry in short.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((protocol, url)) = entry.split_once('+') else {
            bail!(
                "upstreams: {:?} is not protocol+url (breakpad+https://…)",
                crate::units::url_without_credentials(entry)
            );
        };
        let c = UpstreamConfig {
            url: url.to_string(),
            protocol: protocol.to_string(),
            include: Vec::new(),
            exclude: Vec::new(),
            headers: Default::default(),
            timeout: default_timeout(),
            negative_ttl: default_negative_ttl(),
            redirect_hosts: Vec::new(),
        };
        out.push(Upstream::from_config(&c, "upstreams")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, protocol: &str) -> UpstreamConfig {
        UpstreamConfig {
            url: url.into(),
            protocol: protocol.into(),
            include: Vec::new(),
            exclude: Vec::new(),
            headers: Default::default(),
            timeout: default_timeout(),
            negative_ttl: default_negative_ttl(),
            redirect_hosts: Vec::new(),
        }
    }

    #[test]
    fn tables_then_the_short_form_in_order() {
        let mut ms = config("https://msdl.example/download/symbols", "symstore");
        ms.include = vec!["*.pdb".into(), "*.DLL".into()];
        ms.exclude = vec!["secret*".into()];
        let all = from_config(
            &[ms],
            "breakpad+http://127.0.0.1:8001/, debuginfod+https://d.example",
        )
        .unwrap();
        let names: Vec<_> = all.iter().map(|u| (u.name.as_str(), u.protocol)).collect();
        assert_eq!(
            names,
            [
                ("msdl.example", Protocol::SymStore),
                ("127.0.0.1:8001", Protocol::Breakpad),
                ("d.example", Protocol::Debuginfod)
            ]
        );
        assert!(all[0].wants("ntdll.pdb") && all[0].wants("KERNEL32.dll"));
        assert!(!all[0].wants("xul.sym") && !all[0].wants("secret.pdb"));
        assert!(all[1].wants("anything"));
        assert_eq!(all[0].timeout, Duration::from_secs(30));
        assert_eq!(all[0].negative_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn bad_upstreams_are_refused_naming_the_setting() {
        let mut bad_header = config("https://a.example", "breakpad");
        bad_header
            .headers
            .insert("Authorization".into(), "Bearer x\ny".into());
        let mut bad_glob = config("https://a.example", "breakpad");
        bad_glob.include = vec!["[a".into()];
        let mut bad_hop = config("https://a.example", "breakpad");
        bad_hop.redirect_hosts = vec!["https://b.example/path".into()];
        let mut bad_ttl = config("https://a.example", "breakpad");
        bad_ttl.negative_ttl = "forever".into();
        for (c, expect) in [
            (config("ftp://a.example/", "breakpad"), "upstream[1].url"),
            (config("file:///etc/passwd", "breakpad"), "upstream[1].url"),
            (
                config("https://user:hunter2@a.example", "gopher"),
                "upstream[1].protocol",
            ),
            (bad_header, "upstream[1].headers.Authorization"),
            (bad_glob, "upstream[1].include"),
            (bad_ttl, "upstream[1].negative_ttl"),
            (bad_hop, "upstream[1].redirect_hosts"),
        ] {
            let err = format!("{:#}", from_config(&[c], "").unwrap_err());
            assert!(err.starts_with(expect), "{err}");
            assert!(!err.contains("hunter2") && !err.contains("Bearer"), "{err}");
        }
        let err = format!("{:#}", from_config(&[], "https://a.example").unwrap_err());
        assert!(err.starts_with("upstreams:"), "{err}");
    }

    #[test]
    fn redirects_go_only_to_the_hosts_listed() {
        let mut c = config("https://msdl.example/download/symbols", "symstore");
        c.redirect_hosts = vec![
            "Blob.Example".into(),
            "127.0.0.1:9000".into(),
            "127.0.0.2:80".into(),
            "127.0.0.3:443".into(),
        ];
        let up = &from_config(&[c], "").unwrap()[0];
        let to = |u: &str| up.redirects_to(&reqwest::Url::parse(u).unwrap());
        assert!(to("https://blob.example/x.pdb"));
        assert!(to("http://blob.example/x.pdb"));
        assert!(to("http://127.0.0.1:9000/x.pdb"));
        assert!(!to("https://blob.example:8443/x.pdb"));
        assert!(!to("http://127.0.0.1:9001/x.pdb"));
        assert!(!to("https://evil.example/x.pdb"));
        // An entry's port is the port, whether or not it is the scheme's default.
        assert!(to("http://127.0.0.2/x.pdb"));
        assert!(!to("https://127.0.0.2/x.pdb"));
        assert!(to("https://127.0.0.3/x.pdb") && to("https://127.0.0.3:443/x.pdb"));
        assert!(!to("http://127.0.0.3/x.pdb"));
        for bad in [
            "https://b.example",
            "b.example/x",
            "user@b.example",
            "b.example:http",
            ":80",
        ] {
            assert_eq!(host_and_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_values_are_never_shown() {
        let mut c = config("https://user:pw@a.example/", "breakpad");
        c.headers
            .insert("Authorization".into(), "Bearer s3cret".into());
        let shown = format!("{c:?}");
        assert!(
            shown.contains("Authorization") && !shown.contains("s3cret") && !shown.contains("pw@")
        );
    }
}

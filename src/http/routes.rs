//! The one table of paths. Pure: a method-free parse of the path and query
//! into a [`Route`]; handlers check methods.

use crate::keys::split_path;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Upload,
    LbHeartbeat,
    Heartbeat,
    Version,
    /// `<module>/<debug_id>/<file>` (or any three segments), maybe with try files.
    Symbol {
        segments: Vec<String>,
        include_try: bool,
    },
    /// `/buildid/<hex>/<role>`: debuginfod.
    Debuginfod {
        build_id: String,
        role: Role,
        include_try: bool,
    },
    /// `/buildid/<not an even-length hex id of at most 128 digits>/<role>`.
    BadBuildId,
    /// `POST /symbolicate/v5` (or v4), maybe with try files.
    Symbolicate {
        version: crate::symbolicate::Version,
        include_try: bool,
    },
    /// `POST /stackwalk`: a minidump walked with the store's symbols.
    Stackwalk {
        include_try: bool,
    },
    /// `POST /upload/auth_info/`.
    AuthInfo,
    Metrics,
    MissingCsv,
    Api(Api),
    Page(Page),
    NotFound,
}

/// The JSON records API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    Uploads,
    Upload(i64),
    Files,
    File(i64),
    SymInfo(String, String),
    Missing,
    Stats,
    Tokens,
    Token(i64),
    NotFound,
}

/// The web pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    Home,
    Uploads,
    Upload(i64),
    Files,
    File(i64),
    Missing,
    /// The form: paste a v5 job, or drop a minidump.
    Symbolicate,
}

/// What a debuginfod request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Debuginfo,
    Executable,
    Section(String),
    Source(String),
}

/// Routes a raw path and query string.
pub fn route(path: &str, query: Option<&str>) -> Route {
    let Some(segs) = split_path(path) else {
        return Route::NotFound;
    };
    let fixed: Vec<&str> = segs.iter().map(String::as_str).collect();
    if let Some(r) = fixed_route(&fixed) {
        return r;
    }
    match fixed[..] {
        ["upload"] => return Route::Upload,
        ["stackwalk"] | ["try", "stackwalk"] => {
            return Route::Stackwalk {
                include_try: fixed[0] == "try" || query_has_try(query),
            };
        }
        ["symbolicate", v] | ["try", "symbolicate", v] => {
            let version = match v {
                "v5" => crate::symbolicate::Version::V5,
                "v4" => crate::symbolicate::Version::V4,
                _ => return Route::NotFound,
            };
            return Route::Symbolicate {
                version,
                include_try: fixed[0] == "try" || query_has_try(query),
            };
        }
        ["__lbheartbeat__"] => return Route::LbHeartbeat,
        ["__heartbeat__"] => return Route::Heartbeat,
        ["__version__"] => return Route::Version,
        _ => {}
    }
    let (segs, prefixed) = match segs.split_first() {
        Some((first, rest)) if first == "try" && rest.len() >= 3 => (rest.to_vec(), true),
        _ => (segs, false),
    };
    let include_try = prefixed || query_has_try(query);
    if let Some(r) = debuginfod(&segs, include_try) {
        return r;
    }
    if segs.len() == 3 {
        return Route::Symbol {
            include_try: prefixed || query_has_try(query),
            segments: segs,
        };
    }
    Route::NotFound
}

fn fixed_route(segs: &[&str]) -> Option<Route> {
    let id = |s: &str| s.parse::<i64>().ok();
    Some(match segs {
        ["upload", "auth_info"] => Route::AuthInfo,
        ["metrics"] => Route::Metrics,
        ["missingsymbols.csv"] => Route::MissingCsv,
        ["api", rest @ ..] => Route::Api(match rest {
            ["uploads"] => Api::Uploads,
            ["uploads", "upload", n] => id(n).map_or(Api::NotFound, Api::Upload),
            ["uploads", "files"] => Api::Files,
            ["uploads", "files", "file", n] => id(n).map_or(Api::NotFound, Api::File),
            ["syminfo", file, debug_id] => Api::SymInfo(file.to_string(), debug_id.to_string()),
            ["missing"] => Api::Missing,
            ["stats"] => Api::Stats,
            ["tokens"] => Api::Tokens,
            ["tokens", "token", n] => id(n).map_or(Api::NotFound, Api::Token),
            _ => Api::NotFound,
        }),
        [] => Route::Page(Page::Home),
        ["uploads"] => Route::Page(Page::Uploads),
        ["uploads", n] => id(n).map_or(Route::NotFound, |n| Route::Page(Page::Upload(n))),
        ["files"] => Route::Page(Page::Files),
        ["files", n] => id(n).map_or(Route::NotFound, |n| Route::Page(Page::File(n))),
        ["missing"] => Route::Page(Page::Missing),
        ["symbolicate"] => Route::Page(Page::Symbolicate),
        _ => return None,
    })
}

/// The longest build id asked for, in hex digits (build ids are 16 to 64).
pub const MAX_BUILD_ID_HEX: usize = 128;

fn debuginfod(segs: &[String], include_try: bool) -> Option<Route> {
    let [first, id, role, rest @ ..] = segs else {
        return None;
    };
    if first != "buildid" {
        return None;
    }
    let role = match (role.as_str(), rest) {
        ("debuginfo", []) => Role::Debuginfo,
        ("executable", []) => Role::Executable,
        ("section", [name]) => Role::Section(name.clone()),
        ("source", [_, ..]) => Role::Source(format!("/{}", rest.join("/"))),
        _ => return None,
    };
    if id.is_empty()
        || id.len() % 2 != 0
        || id.len() > MAX_BUILD_ID_HEX
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Some(Route::BadBuildId);
    }
    Some(Route::Debuginfod {
        build_id: id.to_ascii_lowercase(),
        role,
        include_try,
    })
}

/// `?try` with any value but `0`/`false` adds try files.
pub fn query_has_try(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            k == "try" && !matches!(v.to_ascii_lowercase().as_str(), "0" | "false")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(segs: &[&str], include_try: bool) -> Route {
        Route::Symbol {
            segments: segs.iter().map(|s| s.to_string()).collect(),
            include_try,
        }
    }

    #[test]
    fn fixed_routes_first() {
        assert_eq!(route("/upload/", None), Route::Upload);
        assert_eq!(route("/upload", None), Route::Upload);
        assert_eq!(route("/__heartbeat__", None), Route::Heartbeat);
        assert_eq!(route("/__lbheartbeat__", None), Route::LbHeartbeat);
        assert_eq!(route("/__version__", None), Route::Version);
    }

    #[test]
    fn three_segments_are_a_symbol_with_or_without_try() {
        assert_eq!(
            route("/xul.pdb/ABC/xul.sym", None),
            sym(&["xul.pdb", "ABC", "xul.sym"], false)
        );
        assert_eq!(
            route("//xul.pdb//ABC/xul.sym", None),
            sym(&["xul.pdb", "ABC", "xul.sym"], false)
        );
        assert_eq!(
            route("/try/xul.pdb/ABC/xul.sym", None),
            sym(&["xul.pdb", "ABC", "xul.sym"], true)
        );
        assert_eq!(
            route("/xul.pdb/ABC/xul.sym", Some("try")),
            sym(&["xul.pdb", "ABC", "xul.sym"], true)
        );
        assert_eq!(
            route("/xul.pdb/ABC/xul.sym", Some("a=1&try=1")),
            sym(&["xul.pdb", "ABC", "xul.sym"], true)
        );
        assert_eq!(
            route("/xul.pdb/ABC/xul.sym", Some("try=0")),
            sym(&["xul.pdb", "ABC", "xul.sym"], false)
        );
        assert_eq!(
            route("/xul.pdb/ABC/xul.sym", Some("try=false")),
            sym(&["xul.pdb", "ABC", "xul.sym"], false)
        );
    }

    #[test]
    fn debuginfod_routes() {
        let id = "8713b9c3fb8a720137a4a08b325905c7aaf8429d";
        let di = |role| Route::Debuginfod {
            build_id: id.into(),
            role,
            include_try: false,
        };
        assert_eq!(
            route(&format!("/buildid/{id}/debuginfo"), None),
            di(Role::Debuginfo)
        );
        assert_eq!(
            route(&format!("/buildid/{}/executable", id.to_uppercase()), None),
            di(Role::Executable)
        );
        assert_eq!(
            route(&format!("/buildid/{id}/section/.debug_info"), None),
            di(Role::Section(".debug_info".into()))
        );
        assert_eq!(
            route(&format!("/buildid/{id}/source/usr/src/a.c"), None),
            di(Role::Source("/usr/src/a.c".into()))
        );
        assert_eq!(route("/buildid/abc/debuginfo", None), Route::BadBuildId);
        assert_eq!(route("/buildid/xyzw/executable", None), Route::BadBuildId);
        assert!(matches!(
            route(&format!("/try/buildid/{id}/debuginfo"), None),
            Route::Debuginfod {
                include_try: true,
                ..
            }
        ));
        // Not a debuginfod role: an ordinary three-segment key.
        assert!(matches!(
            route("/buildid/abc/other", None),
            Route::Symbol { .. }
        ));
    }

    #[test]
    fn records_and_pages() {
        assert_eq!(route("/api/uploads/", None), Route::Api(Api::Uploads));
        assert_eq!(
            route("/api/uploads/upload/12", None),
            Route::Api(Api::Upload(12))
        );
        assert_eq!(
            route("/api/uploads/upload/x", None),
            Route::Api(Api::NotFound)
        );
        assert_eq!(
            route("/api/uploads/files/file/3/", None),
            Route::Api(Api::File(3))
        );
        assert_eq!(
            route("/api/syminfo/xul.pdb/ABC", None),
            Route::Api(Api::SymInfo("xul.pdb".into(), "ABC".into()))
        );
        assert_eq!(
            route("/api/tokens/token/7", None),
            Route::Api(Api::Token(7))
        );
        assert_eq!(route("/upload/auth_info/", None), Route::AuthInfo);
        assert_eq!(route("/metrics", None), Route::Metrics);
        assert_eq!(route("/missingsymbols.csv", None), Route::MissingCsv);
        assert_eq!(route("/", None), Route::Page(Page::Home));
        assert_eq!(route("/uploads/5", None), Route::Page(Page::Upload(5)));
        assert_eq!(route("/files", None), Route::Page(Page::Files));
        assert_eq!(route("/missing", None), Route::Page(Page::Missing));
    }

    #[test]
    fn everything_else_is_not_found() {
        assert_eq!(route("/a/b", None), Route::NotFound);
        assert_eq!(route("/a/b/c/d", None), Route::NotFound);
        assert_eq!(route("/a/%2e%2e/c", None), Route::NotFound);
    }
}

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
    NotFound,
}

/// Routes a raw path and query string.
pub fn route(path: &str, query: Option<&str>) -> Route {
    let Some(segs) = split_path(path) else {
        return Route::NotFound;
    };
    let fixed: Vec<&str> = segs.iter().map(String::as_str).collect();
    match fixed[..] {
        ["upload"] => return Route::Upload,
        ["__lbheartbeat__"] => return Route::LbHeartbeat,
        ["__heartbeat__"] => return Route::Heartbeat,
        ["__version__"] => return Route::Version,
        _ => {}
    }
    let (segs, prefixed) = match segs.split_first() {
        Some((first, rest)) if first == "try" && rest.len() == 3 => (rest.to_vec(), true),
        _ => (segs, false),
    };
    if segs.len() == 3 {
        return Route::Symbol {
            include_try: prefixed || query_has_try(query),
            segments: segs,
        };
    }
    Route::NotFound
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
    fn everything_else_is_not_found() {
        assert_eq!(route("/", None), Route::NotFound);
        assert_eq!(route("/a/b", None), Route::NotFound);
        assert_eq!(route("/a/b/c/d", None), Route::NotFound);
        assert_eq!(route("/a/%2e%2e/c", None), Route::NotFound);
    }
}

//! Which handler a request path reaches, as Go's `http.ServeMux` decides it
//! (docs/protocol.md §1): exact paths, the `/amp/client/` subtree, redirects for
//! unclean paths, and 404 for everything else.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Robots,
    Proxy,
    Client,
    Answer,
    Debug,
    Metrics,
    Prometheus,
    /// The percent-decoded path after `/amp/client/`.
    AmpClient(String),
    /// 301 to this location.
    Redirect(String),
    NotFound,
}

impl Route {
    /// The paths Go wraps with CORS headers and the OPTIONS short-circuit.
    pub fn has_cors(&self) -> bool {
        matches!(
            self,
            Route::Proxy
                | Route::Client
                | Route::Answer
                | Route::Debug
                | Route::Metrics
                | Route::AmpClient(_)
        )
    }
}

const AMP_PREFIX: &str = "/amp/client/";

/// Routes a raw (still percent-encoded) URL path and query.
pub fn route(raw_path: &str, query: Option<&str>) -> Route {
    let decoded = percent_decode(raw_path);
    let cleaned = clean_path_bytes(&decoded);
    if cleaned != decoded {
        // Go re-escapes the cleaned path for the Location (`url.URL{Path}.String()`):
        // a decoded `?`, `#`, `%` or control byte must not reach the header.
        return Route::Redirect(with_query(&escape_path(&cleaned), query));
    }
    let path = String::from_utf8_lossy(&decoded);
    match path.as_ref() {
        "/robots.txt" => Route::Robots,
        "/proxy" => Route::Proxy,
        "/client" => Route::Client,
        "/answer" => Route::Answer,
        "/debug" => Route::Debug,
        "/metrics" => Route::Metrics,
        "/prometheus" => Route::Prometheus,
        // A subtree pattern redirects its bare name to the slashed form.
        "/amp/client" => Route::Redirect(with_query(AMP_PREFIX, query)),
        p => match p.strip_prefix(AMP_PREFIX) {
            Some(rest) => Route::AmpClient(rest.to_string()),
            None => Route::NotFound,
        },
    }
}

fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

/// Decodes `%XX` escapes to bytes; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Go's path escaping (`encodePath`): unreserved bytes and `$&+,/:;=@` stay,
/// every other byte becomes `%XX` (upper-case hex).
fn escape_path(path: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_alphanumeric() || b"-._~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX.get(usize::from(b >> 4)).map_or('0', |&h| h as char));
            out.push(HEX.get(usize::from(b & 0xf)).map_or('0', |&h| h as char));
        }
    }
    out
}

/// Go's `path.Clean` for request paths, keeping a trailing slash.
fn clean_path_bytes(p: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for segment in p.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = Vec::with_capacity(p.len() + 1);
    for part in &parts {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    let trailing = p.ends_with(b"/") || p.ends_with(b"/.") || p.ends_with(b"/..");
    if out.is_empty() || (trailing && !out.ends_with(b"/")) {
        out.push(b'/');
    }
    out
}

/// [`clean_path_bytes`] for text.
pub fn clean_path(p: &str) -> String {
    String::from_utf8_lossy(&clean_path_bytes(p.as_bytes())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_paths_and_the_amp_subtree() {
        assert_eq!(route("/proxy", None), Route::Proxy);
        assert_eq!(route("/pro%78y", None), Route::Proxy);
        assert_eq!(route("/proxy/", None), Route::NotFound);
        assert_eq!(route("/client/x", None), Route::NotFound);
        assert_eq!(route("/", None), Route::NotFound);
        assert_eq!(
            route("/amp/client/0abc/xyz", None),
            Route::AmpClient("0abc/xyz".into())
        );
        assert_eq!(route("/amp/client/", None), Route::AmpClient(String::new()));
        assert_eq!(
            route("/amp/client", Some("a=1")),
            Route::Redirect("/amp/client/?a=1".into())
        );
    }

    #[test]
    fn unclean_paths_redirect() {
        assert_eq!(route("//proxy", None), Route::Redirect("/proxy".into()));
        assert_eq!(route("/a/../proxy", None), Route::Redirect("/proxy".into()));
        assert_eq!(
            route("/amp/client/0//YWJj", None),
            Route::Redirect("/amp/client/0/YWJj".into())
        );
        assert_eq!(clean_path("/x/./y/"), "/x/y/");
        assert_eq!(clean_path(""), "/");
        // Go's Locations are escaped: nothing decoded reaches the header.
        assert_eq!(route("//a%3fb", None), Route::Redirect("/a%3Fb".into()));
        assert_eq!(route("//%ff", None), Route::Redirect("/%FF".into()));
        assert_eq!(route("//a b", None), Route::Redirect("/a%20b".into()));
    }

    #[test]
    fn cors_only_on_wrapped_paths() {
        assert!(route("/debug", None).has_cors());
        assert!(!route("/robots.txt", None).has_cors());
        assert!(!route("/prometheus", None).has_cors());
        assert!(!route("/nope", None).has_cors());
    }
}

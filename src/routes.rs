//! Which handler a request path reaches, as Go's `http.ServeMux` decides it
//! (protocol.md §1): exact paths, the `/amp/client/` subtree, redirects for
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
    let path = percent_decode(raw_path);
    let cleaned = clean_path(&path);
    if cleaned != path {
        return Route::Redirect(with_query(&cleaned, query));
    }
    match path.as_str() {
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

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
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
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `path.Clean` for request paths, keeping a trailing slash.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for segment in p.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = String::with_capacity(p.len() + 1);
    for part in &parts {
        out.push('/');
        out.push_str(part);
    }
    let trailing = p.ends_with('/') || p.ends_with("/.") || p.ends_with("/..");
    if out.is_empty() || (trailing && !out.ends_with('/')) {
        out.push('/');
    }
    out
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
    }

    #[test]
    fn cors_only_on_wrapped_paths() {
        assert!(route("/debug", None).has_cors());
        assert!(!route("/robots.txt", None).has_cors());
        assert!(!route("/prometheus", None).has_cors());
        assert!(!route("/nope", None).has_cors());
    }
}

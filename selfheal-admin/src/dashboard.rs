//! The dashboard at `/`: plain HTML, CSS and JavaScript embedded in the crate (no CDN,
//! works offline). The page holds no data: it asks for a token, then reads the API with
//! it and follows `/events`.

use axum::{
    Router,
    extract::OriginalUri,
    http::{HeaderName, HeaderValue, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};

use crate::state::AppState;

const INDEX: &str = include_str!("../assets/index.html");
const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

/// What the page may load and run: its own assets and API, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'self'; \
                   form-action 'self'; frame-ancestors 'none'";

fn headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

/// The page, with a `<base>` at the mount point so its relative URLs (`api/…`,
/// `events`, `assets/…`) resolve under whatever prefix the host nested the router.
async fn index(OriginalUri(uri): OriginalUri) -> Response {
    let path = uri.path();
    let base = if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    };
    let page = INDEX.replacen(
        "<head>",
        &format!("<head>\n<base href=\"{}\">", crate::links::esc(&base)),
        1,
    );
    (headers("text/html; charset=utf-8"), Html(page)).into_response()
}

async fn css() -> impl IntoResponse {
    (headers("text/css; charset=utf-8"), CSS)
}

async fn js() -> impl IntoResponse {
    (headers("text/javascript; charset=utf-8"), JS)
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets() {
        for (name, text) in [("index.html", INDEX), ("app.js", JS), ("app.css", CSS)] {
            assert!(
                !text.contains("http://") || name == "app.js",
                "{name} loads nothing remote"
            );
            assert!(!text.contains("https://"), "{name} loads nothing remote");
        }
        assert!(INDEX.contains("assets/app.js") && INDEX.contains("assets/app.css"));
        assert!(!JS.contains("innerHTML"), "server text never becomes HTML");
    }

    #[test]
    fn the_base_is_escaped() {
        assert_eq!(crate::links::esc("/a\"<b>/"), "/a&quot;&lt;b&gt;/");
    }
}

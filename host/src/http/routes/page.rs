//! The operator's page (`/admin/`) and its assets, embedded from `admin/`.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::probes::no_route;

/// The operator's page and its assets, embedded so that it works on a closed network.
/// Public: they hold no data, and the page asks for the token before it fetches any.
pub(in crate::http) async fn admin_asset(Path(asset): Path<String>) -> Response {
    let (content_type, body) = match asset.as_str() {
        "" | "index.html" => ("text/html; charset=utf-8", ADMIN_PAGE),
        "app.js" => ("text/javascript; charset=utf-8", ADMIN_SCRIPT),
        "app.css" => ("text/css; charset=utf-8", ADMIN_STYLE),
        _ => return no_route().await,
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; \
                 connect-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/admin`, as an operator types it: the page is at `/admin/`, whose relative links
/// need the slash.
pub(in crate::http) async fn to_admin_page() -> Response {
    axum::response::Redirect::permanent("/admin/").into_response()
}

pub(in crate::http) async fn admin_page() -> Response {
    admin_asset(Path(String::new())).await
}

const ADMIN_PAGE: &str = include_str!("../admin/index.html");
const ADMIN_SCRIPT: &str = include_str!("../admin/app.js");
const ADMIN_STYLE: &str = include_str!("../admin/app.css");

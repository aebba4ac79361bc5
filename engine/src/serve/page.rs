//! The page and its assets, embedded in the binary (no CDN: the view works offline and cannot be
//! changed by a third party). The charting library is vendored in `engine/web/vendor/`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const CHARTS: &str = include_str!("../../web/vendor/lightweight-charts.standalone.production.js");
const CHARTS_LICENSE: &str = include_str!("../../web/vendor/lightweight-charts.LICENSE");

/// `GET /`.
pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX).into_response()
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "lightweight-charts.standalone.production.js" => (CHARTS, "text/javascript; charset=utf-8"),
        "lightweight-charts.LICENSE" => (CHARTS_LICENSE, "text/plain; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

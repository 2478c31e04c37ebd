//! Test-only routes: `/echo` and `/slow-headers`.

use super::*;

/// Any method on `/echo[/...]`: 200 with the request as the fake saw it:
/// `{"method","path","query","headers":[[name,value],...],"body_len","body_fnv1a64"}`.
pub(super) async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers: Vec<[String; 2]> = headers
        .iter()
        .map(|(name, value)| {
            [
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect();
    gin_json(
        StatusCode::OK,
        &json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "headers": headers,
            "body_len": body.len(),
            "body_fnv1a64": format!("{:016x}", fnv1a64(&body)),
        }),
    )
}

/// Any method on `/slow-headers`: waits `header_delay` (or `?delay_ms=N`), then 200
/// `{"waited_ms":N}`.
pub(super) async fn slow_headers(
    State(app): State<App>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let delay = query
        .get("delay_ms")
        .and_then(|ms| ms.parse().ok())
        .map_or(app.config.header_delay, Duration::from_millis);
    sleep(delay).await;
    gin_json(StatusCode::OK, &json!({ "waited_ms": delay.as_millis() }))
}

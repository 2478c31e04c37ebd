//! Headers across the proxy: hop-by-hop headers stay on their own hop, `Host` becomes the
//! upstream's (Ollama refuses foreign hosts), everything else passes as it came.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body_util::BodyExt;

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus
/// `Host`, which the upstream client sets from the upstream URL.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Copies headers minus the hop-by-hop ones (and those the `Connection` header names).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if HOP_BY_HOP.contains(&name.as_str()) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The headers sent upstream: the client's, minus hop-by-hop and `Host`.
pub fn request_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = end_to_end(headers);
    out.remove(header::HOST);
    out
}

/// The request's declared body length, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum ReadBodyError {
    /// It is longer than the limit.
    TooLarge,
    /// The client's connection failed while sending it.
    Read(axum::Error),
}

/// Reads a request body of at most `limit` bytes into one buffer. A body that arrives in
/// one piece is kept as it came (no copy); a longer one is gathered into one buffer sized
/// from its declared length (already checked against the limit), so a 20 MiB photo costs
/// one 20 MiB buffer, not a list of its chunks and then a copy of them all.
pub async fn read_body(
    mut body: Body,
    declared: Option<u64>,
    limit: usize,
) -> Result<Bytes, ReadBodyError> {
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        // Trailers carry nothing the proxy reads; the body is forwarded without them, as
        // before.
        let Ok(data) = frame.map_err(ReadBodyError::Read)?.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(ReadBodyError::TooLarge);
        }
        if let Some(buffer) = gathered.as_mut() {
            buffer.extend_from_slice(&data);
        } else if let Some(head) = first.take() {
            let expected = declared
                .and_then(|d| usize::try_from(d).ok())
                .unwrap_or(0)
                .min(limit);
            let mut buffer = BytesMut::with_capacity(expected.max(total));
            buffer.extend_from_slice(&head);
            buffer.extend_from_slice(&data);
            gathered = Some(buffer);
        } else {
            first = Some(data);
        }
    }
    Ok(match (gathered, first) {
        (Some(buffer), _) => buffer.freeze(),
        (None, Some(head)) => head,
        (None, None) => Bytes::new(),
    })
}

/// The client's response: the upstream's status and end-to-end headers, and its body
/// as `wrap` streams it.
pub fn response<F>(upstream: reqwest::Response, wrap: F) -> Response
where
    F: FnOnce(Box<dyn Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + Unpin>) -> Body,
{
    let status = upstream.status();
    let headers = end_to_end(upstream.headers());
    let body = wrap(Box::new(upstream.bytes_stream()));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn chunked(parts: &[&'static str]) -> Body {
        let frames: Vec<Result<Bytes, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
            .collect();
        Body::from_stream(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_is_read_whole_in_one_buffer_up_to_the_limit() {
        let one = read_body(chunked(&["{\"model\":\"m\"}"]), None, 100)
            .await
            .expect("one piece");
        assert_eq!(&one[..], b"{\"model\":\"m\"}");
        let many = read_body(chunked(&["ab", "cd", "ef"]), Some(6), 100)
            .await
            .expect("pieces");
        assert_eq!(&many[..], b"abcdef");
        let undeclared = read_body(chunked(&["ab", "cd", "ef"]), None, 6)
            .await
            .expect("exactly the limit");
        assert_eq!(&undeclared[..], b"abcdef");
        assert!(matches!(
            read_body(chunked(&["ab", "cd", "ef"]), None, 5).await,
            Err(ReadBodyError::TooLarge)
        ));
        let empty = read_body(Body::empty(), Some(0), 5).await.expect("empty");
        assert!(empty.is_empty());
    }

    #[test]
    fn hop_by_hop_and_host_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("evil.example"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://app"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        let out = request_headers(&h);
        assert!(out.get(header::HOST).is_none());
        assert!(out.get(header::CONNECTION).is_none());
        assert!(out.get("x-secret-hop").is_none());
        assert!(out.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(out.get(header::AUTHORIZATION).expect("kept"), "Bearer k");
        assert_eq!(out.get(header::ORIGIN).expect("kept"), "http://app");
        assert_eq!(out.get_all("x-multi").iter().count(), 2);
    }
}

//! Headers across the proxy: hop-by-hop headers stay on their own hop, `Host` becomes the
//! upstream's (Ollama refuses foreign hosts), everything else passes as it came.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers (and those the `Connection` header names) in place:
/// the rest of the message's headers move on as they came, without a copy.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        // Rare (HTTP/1.1 clients seldom name extra hop-by-hop headers): collected only
        // when the header is there.
        let named: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        for name in named {
            headers.remove(name.as_str());
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The headers sent upstream: the client's, minus hop-by-hop and `Host` (the upstream
/// client sets the upstream's own).
pub fn request_headers(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers
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
/// as `wrap` passes it on.
pub fn response<F>(upstream: hyper::Response<Incoming>, wrap: F) -> Response
where
    F: FnOnce(Incoming) -> Body,
{
    let (mut parts, body) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let mut response = Response::new(wrap(body));
    *response.status_mut() = parts.status;
    *response.headers_mut() = parts.headers;
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
        let out = request_headers(h);
        assert!(out.get(header::HOST).is_none());
        assert!(out.get(header::CONNECTION).is_none());
        assert!(out.get("x-secret-hop").is_none());
        assert!(out.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(out.get(header::AUTHORIZATION).expect("kept"), "Bearer k");
        assert_eq!(out.get(header::ORIGIN).expect("kept"), "http://app");
        assert_eq!(out.get_all("x-multi").iter().count(), 2);
    }
}

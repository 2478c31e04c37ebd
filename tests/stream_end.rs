//! A streamed answer has two ends that need not come together: the client's (the official
//! `openai` client stops reading at `data: [DONE]` and closes the connection) and the
//! upstream's (the chunked body's last, empty chunk, which llama.cpp writes just after
//! `[DONE]`, later on a busy machine). Whichever comes first, the call's record is
//! finished then: a client that left after `[DONE]` does not wait on the upstream, and a
//! client that reads to the end finds its record queued before it sees the end.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::harness::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Bounds a broken run only: a healthy one has the record at once.
const PATIENCE: Duration = Duration::from_secs(30);

/// The events of a streamed chat completion with `include_usage`, as llama.cpp sends
/// them: content, the finish chunk with llama.cpp's `timings`, the usage chunk, `[DONE]`.
const EVENTS: [&str; 5] = [
    r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Red"},"finish_reason":null}]}"#,
    r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":", green"},"finish_reason":null}]}"#,
    r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"timings":{"prompt_n":7,"prompt_ms":14.0,"predicted_n":3,"predicted_ms":30.0,"predicted_per_second":100.0}}"#,
    r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
    "data: [DONE]",
];

/// An OpenAI-compatible upstream (`GET /v1/models` answers, so its kind is detected as
/// `openai`) whose streamed answers end with `[DONE]` but hold back the end of the body
/// until the test releases it.
struct HeldUpstream {
    url: String,
    release: Arc<Notify>,
    /// Answers whose end of body was written.
    ended: Arc<AtomicUsize>,
}

impl HeldUpstream {
    async fn start() -> HeldUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let release = Arc::new(Notify::new());
        let ended = Arc::new(AtomicUsize::new(0));
        let (r, e) = (release.clone(), ended.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, r.clone(), e.clone()));
            }
        });
        HeldUpstream {
            url,
            release,
            ended,
        }
    }
}

/// Reads one request (head and `Content-Length` body) from `socket`, keeping what came
/// after it in `buf`; `None` when the peer closed.
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = socket.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + length);
            return Some(head);
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(mut socket: TcpStream, release: Arc<Notify>, ended: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    while let Some(head) = read_request(&mut socket, &mut buf).await {
        if head.starts_with("GET /v1/models ") {
            let body = r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if socket.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        if !head.starts_with("POST /v1/chat/completions ") {
            let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
            if socket.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let mut answer = String::from(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        for event in EVENTS {
            let event = format!("{event}\n\n");
            answer.push_str(&format!("{:x}\r\n{event}\r\n", event.len()));
        }
        if socket.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        // The end of the body waits for the test (or for ever).
        release.notified().await;
        if socket.write_all(b"0\r\n\r\n").await.is_err() {
            return;
        }
        ended.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sends a streamed chat completion request tagged `operation` on `client`.
async fn send_chat(client: &mut TcpStream, operation: &str) {
    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Name three colours."}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         x-operation: {operation}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.expect("send");
}

/// Reads from `client` until `got` holds `marker`.
async fn read_until(client: &mut TcpStream, got: &mut Vec<u8>, marker: &[u8]) {
    let mut chunk = [0u8; 4096];
    while !got.windows(marker.len()).any(|w| w == marker) {
        let n = tokio::time::timeout(PATIENCE, client.read(&mut chunk))
            .await
            .expect("the answer keeps coming")
            .expect("read");
        assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(marker));
        got.extend_from_slice(&chunk[..n]);
    }
}

/// The proxy's address for a raw connection.
fn addr(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_after_done_is_recorded_without_waiting_for_the_upstreams_end() {
    let upstream = HeldUpstream::start().await;
    let app = TestApp::start(&upstream.url).await;
    let mut client = TcpStream::connect(addr(&app)).await.expect("connect");
    send_chat(&mut client, "stops_at_done").await;
    let mut got = Vec::new();
    read_until(&mut client, &mut got, b"data: [DONE]\n\n").await;
    // What the official `openai` client does on `[DONE]`: close, without reading on.
    drop(client);

    let records = app.wait_for_operations(&["stops_at_done"], PATIENCE).await;
    assert_eq!(
        upstream.ended.load(Ordering::SeqCst),
        0,
        "the upstream never ended its body"
    );
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    // Everything the answer says was seen: a complete call, not a cancelled one.
    assert!(r.success && r.stream, "{r:#?}");
    assert_eq!(r.error_kind, None);
    assert_eq!((r.prompt_tokens, r.output_tokens), (Some(7), Some(3)));
    assert_eq!(r.tokens_per_second, Some(100.0));
    upstream.release.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_to_the_end_finds_its_record_already_queued() {
    let upstream = HeldUpstream::start().await;
    let app = TestApp::start(&upstream.url).await;
    let mut client = TcpStream::connect(addr(&app)).await.expect("connect");
    for (i, operation) in ["first_on_connection", "second_on_connection"]
        .into_iter()
        .enumerate()
    {
        send_chat(&mut client, operation).await;
        let mut got = Vec::new();
        read_until(&mut client, &mut got, b"data: [DONE]\n\n").await;
        // The upstream's end comes late, while the client keeps its connection.
        upstream.release.notify_one();
        read_until(&mut client, &mut got, b"\r\n0\r\n\r\n").await;
        // The client has the whole answer: its record is in the queue already, so one
        // flush (no waiting on a clock) finds it committed.
        let records = app.records().await;
        assert_eq!(records.len(), i + 1, "{records:#?}");
        let r = records.last().expect("record");
        assert_eq!(r.operation, operation);
        assert!(r.success && r.stream, "{r:#?}");
        assert_eq!((r.prompt_tokens, r.output_tokens), (Some(7), Some(3)));
    }
    assert_eq!(upstream.ended.load(Ordering::SeqCst), 2);
}

//! A stand-in for the `ollama` binary, for scripts/compose-check: `ollama serve` answers the
//! routes a sidecar needs the way /work/shared/ollama-api.md says (`/`, `/api/version`,
//! `/api/tags`, `/api/ps`, `/api/show`, and `/api/generate` + `/api/chat` streaming NDJSON or
//! one JSON object), and `ollama list` asks the server, so a compose healthcheck written
//! for the real image works unchanged. Standard library only: built with plain `rustc`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const MODEL: &str = "stand-in:latest";
const VERSION: &str = "0.13.0";
const DIGEST: &str = "9a1e5c0b2d8f4e7a6c3b1d0e2f4a6c8b0d2e4f6a8c0e2b4d6f8a0c2e4b6d8f0a";
const WORDS: &[&str] = &["The", " sky", " is", " blue", "."];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let host = std::env::var("OLLAMA_HOST").unwrap_or_else(|_| "127.0.0.1:11434".into());
    let host = host.trim_start_matches("http://").to_string();
    let port = host.rsplit(':').next().unwrap_or("11434").to_string();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(&host),
        Some("list") | Some("ls") => std::process::exit(list(&port)),
        Some("--version") | Some("-v") => println!("ollama version is {VERSION}"),
        _ => {
            eprintln!("usage: ollama serve | ollama list | ollama --version");
            std::process::exit(2);
        }
    }
}

fn serve(host: &str) {
    let listener = TcpListener::bind(host).unwrap_or_else(|e| {
        eprintln!("Error: listen tcp {host}: {e}");
        std::process::exit(1)
    });
    eprintln!("Listening on {host} (version {VERSION}, stand-in)");
    let loaded_at = Arc::new(AtomicU64::new(0));
    for stream in listener.incoming().flatten() {
        let loaded_at = Arc::clone(&loaded_at);
        std::thread::spawn(move || {
            let _ = connection(stream, &loaded_at);
        });
    }
}

fn list(port: &str) -> i32 {
    let Ok(mut s) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
        eprintln!("Error: could not connect to ollama server");
        return 1;
    };
    let _ = s.write_all(b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    if !text.starts_with("HTTP/1.1 200") {
        eprintln!("Error: {}", text.lines().next().unwrap_or("no answer"));
        return 1;
    }
    println!("NAME               ID              SIZE      MODIFIED");
    println!("{MODEL}    {}    1.3 GB    1 day ago", &DIGEST[..12]);
    0
}

struct Request {
    method: String,
    path: String,
    body: String,
    close: bool,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let (mut length, mut chunked, mut close) = (0usize, false, false);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        let (name, value) = (
            name.trim().to_ascii_lowercase(),
            value.trim().to_ascii_lowercase(),
        );
        match name.as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value == "close",
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        close,
    }))
}

fn connection(stream: TcpStream, loaded_at: &AtomicU64) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader)? {
        let path = req.path.split('?').next().unwrap_or("/");
        match (req.method.as_str(), path) {
            ("GET" | "HEAD", "/") => {
                let body = if req.method == "HEAD" {
                    ""
                } else {
                    "Ollama is running"
                };
                respond(&mut out, 200, "text/plain; charset=utf-8", body)?
            }
            ("GET", "/api/version") => {
                json(&mut out, 200, &format!(r#"{{"version":"{VERSION}"}}"#))?
            }
            ("GET", "/api/tags") => json(&mut out, 200, &format!(r#"{{"models":[{}]}}"#, tag()))?,
            ("GET", "/api/ps") => json(&mut out, 200, &ps(loaded_at.load(Ordering::Relaxed)))?,
            ("POST", "/api/show") => match known_model(&req.body) {
                Ok(_) => json(&mut out, 200, &show())?,
                Err(e) => json(&mut out, 404, &e)?,
            },
            ("POST", "/api/generate" | "/api/chat") => {
                let chat = path == "/api/chat";
                match known_model(&req.body) {
                    Err(e) => json(&mut out, 404, &e)?,
                    Ok(model) => {
                        loaded_at.store(now_s(), Ordering::Relaxed);
                        if field(&req.body, "stream").as_deref() == Some("false") {
                            json(&mut out, 200, &final_chunk(&model, chat, &WORDS.concat()))?
                        } else {
                            stream_answer(&mut out, &model, chat)?
                        }
                    }
                }
            }
            _ => respond(&mut out, 404, "text/plain", "404 page not found")?,
        }
        if req.close {
            break;
        }
    }
    Ok(())
}

fn respond(out: &mut TcpStream, status: u16, kind: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Error",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

fn json(out: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    respond(out, status, "application/json; charset=utf-8", body)
}

/// NDJSON, one chunk per word, flushed each, then the final object with the metrics.
fn stream_answer(out: &mut TcpStream, model: &str, chat: bool) -> std::io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let mut send = |line: String| -> std::io::Result<()> {
        write!(out, "{:x}\r\n{line}\n\r\n", line.len() + 1)?;
        out.flush()
    };
    for word in WORDS {
        std::thread::sleep(std::time::Duration::from_millis(5));
        let content = if chat {
            format!(r#""message":{{"role":"assistant","content":"{word}"}}"#)
        } else {
            format!(r#""response":"{word}""#)
        };
        send(format!(
            r#"{{"model":"{model}","created_at":"{}",{content},"done":false}}"#,
            created_at()
        ))?;
    }
    send(final_chunk(model, chat, ""))?;
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn final_chunk(model: &str, chat: bool, text: &str) -> String {
    let content = if chat {
        format!(r#""message":{{"role":"assistant","content":"{text}"}}"#)
    } else {
        format!(r#""response":"{text}""#)
    };
    let context = if chat {
        ""
    } else {
        r#""context":[128006,9125,882],"#
    };
    format!(
        r#"{{"model":"{model}","created_at":"{}",{content},"done":true,"done_reason":"stop",{context}"total_duration":162761250,"load_duration":1397084,"prompt_eval_count":26,"prompt_eval_duration":13074791,"eval_count":{},"eval_duration":52479709}}"#,
        created_at(),
        WORDS.len()
    )
}

fn tag() -> String {
    format!(
        r#"{{"name":"{MODEL}","model":"{MODEL}","modified_at":"2026-08-20T10:00:00Z","size":1321098329,"digest":"{DIGEST}","details":{{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"1.2B","quantization_level":"Q8_0"}},"capabilities":["completion"]}}"#
    )
}

fn show() -> String {
    format!(
        r#"{{"modelfile":"FROM /root/.ollama/models/blobs/sha256-{DIGEST}\n","details":{{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"1.2B","quantization_level":"Q8_0"}},"model_info":{{"general.architecture":"llama","general.parameter_count":1235814432,"llama.context_length":131072}},"capabilities":["completion"]}}"#
    )
}

/// The model is "loaded" for five minutes after a call, as Ollama's keep-alive does.
fn ps(loaded_at: u64) -> String {
    if loaded_at == 0 || now_s() > loaded_at + 300 {
        return r#"{"models":[]}"#.into();
    }
    format!(
        r#"{{"models":[{{"name":"{MODEL}","model":"{MODEL}","size":1800000000,"digest":"{DIGEST}","details":{{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"1.2B","quantization_level":"Q8_0"}},"expires_at":"{}","size_vram":0,"context_length":4096}}]}}"#,
        rfc3339(loaded_at + 300)
    )
}

/// The model named in the body, normalised to `name:tag`, or Ollama's 404 body.
fn known_model(body: &str) -> Result<String, String> {
    let name = field(body, "model").unwrap_or_default();
    let full = if name.contains(':') {
        name.clone()
    } else {
        format!("{name}:latest")
    };
    if full == MODEL {
        Ok(name)
    } else {
        Err(format!(r#"{{"error":"model '{name}' not found"}}"#))
    }
}

/// The value of a top-level `"key": value` in a small JSON object: a string's content, or
/// the literal (`false`, `12`) as written. Enough for the requests a sidecar forwards.
fn field(body: &str, key: &str) -> Option<String> {
    let at = body.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = body[at..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(value),
                '\\' => value.extend(chars.next()),
                c => value.push(c),
            }
        }
        None
    } else {
        let end = rest.find([',', '}', ' ', '\n']).unwrap_or(rest.len());
        Some(rest[..end].to_string())
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn created_at() -> String {
    rfc3339(now_s())
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

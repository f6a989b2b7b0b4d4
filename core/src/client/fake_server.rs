//! A one-thread HTTP/1.1 stand-in for the server in unit tests: it records
//! each request exactly as it arrived and plays back canned answers, so the
//! tests check the bytes on the wire rather than the client's intentions.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::Duration;

pub(super) struct Recorded {
    pub method: String,
    /// The request target: path and query as sent.
    pub target: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub(super) struct FakeServer {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub url: String,
    requests: Receiver<Recorded>,
}

impl FakeServer {
    /// Answers one request per connection with each `(status, body)` in turn.
    pub fn start(replies: Vec<(u16, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sender, requests) = channel();
        thread::spawn(move || {
            for (status, body) in replies {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let recorded = read_request(&mut reader);
                let content_type = if body.is_empty() { "" } else { "content-type: application/json\r\n" };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\n{content_type}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                reader.get_mut().write_all(answer.as_bytes()).unwrap();
                if sender.send(recorded).is_err() {
                    return;
                }
            }
        });
        Self { url, requests }
    }

    pub fn next_request(&self) -> Recorded {
        self.requests.recv_timeout(Duration::from_secs(10)).expect("the client sent no request")
    }
}

fn read_request(reader: &mut impl BufRead) -> Recorded {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap().to_owned();
    let target = parts.next().unwrap().to_owned();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length = headers.get("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Recorded { method, target, headers, body }
}

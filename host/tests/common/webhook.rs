//! A webhook receiver on a loopback port for the event tests: records every POST and
//! answers 200, after a delay the test sets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use request_access_host::events::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use serde_json::Value;

pub const SECRET: &str = "a-shared-secret";

/// One delivery as the receiver got it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub signature: String,
    pub timestamp: String,
    pub body: String,
}

/// A webhook receiver on `port`: records every POST, answers 200 after `delay_ms`.
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Delivery>>>,
    pub delay_ms: Arc<AtomicU64>,
}

impl Receiver {
    pub fn start(listener: TcpListener) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (seen, delay) = (got.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (seen, delay) = (seen.clone(), delay.clone());
                std::thread::spawn(move || serve_one(stream, &seen, &delay));
            }
        });
        Receiver { got, delay_ms }
    }

    /// The events received, each once (a delivery repeated after a timeout is the same
    /// `id`), in the order first received.
    pub fn events(&self) -> Vec<Value> {
        let mut ids = std::collections::HashSet::new();
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|d| serde_json::from_str::<Value>(&d.body).unwrap())
            .filter(|e| ids.insert(e["id"].as_str().unwrap().to_string()))
            .collect()
    }

    pub fn wait_for(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            if events.len() >= count || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve_one(stream: TcpStream, seen: &Mutex<Vec<Delivery>>, delay: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = std::collections::HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap_or_default();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    seen.lock().unwrap().push(Delivery {
        signature: headers.get(SIGNATURE_HEADER).cloned().unwrap_or_default(),
        timestamp: headers.get(TIMESTAMP_HEADER).cloned().unwrap_or_default(),
        body: String::from_utf8(body).unwrap(),
    });
    std::thread::sleep(Duration::from_millis(delay.load(Ordering::Relaxed)));
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

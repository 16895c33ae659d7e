//! A lean Server-Sent Events client for thousands of connections: raw tokio `TcpStream`s, the
//! `GET` written by hand, the chunked body decoded incrementally, and of each event only its
//! `id:` (the revision) kept; the JSON is not parsed.
//!
//! [`plain`] opens an ordinary keep-alive connection the same way (one `GET`, read whole), the
//! comparison for an idle stream's memory.
//!
//! Every connection binds its own loopback source address first ([`source`]): one address
//! offers ~28 000 ephemeral ports towards the server's one port, and the bench's other
//! connections (and the machine's other users) keep `127.0.0.1`'s. Closing sends a reset
//! (`SO_LINGER` 0), so that thousands of closes leave no `TIME_WAIT` behind to exhaust the
//! ports of the next scenario.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connections per loopback source address.
const PER_SOURCE: usize = 16_000;

/// The source address of connection `index` of a scenario numbered `scenario` (1..=250):
/// `127.0.<scenario>.<2 + index / 16 000>`, so that no two scenarios share ports.
pub fn source(scenario: u8, index: usize) -> IpAddr {
    let host = 2 + (index / PER_SOURCE).min(250) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, scenario, host))
}

/// What a stream said, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An event with `id: <revision>`.
    Change(u64),
    /// `event: chat_deleted`: the stream ends.
    ChatDeleted,
}

/// One open stream, its headers read (`200`), its body not yet.
pub struct Stream {
    socket: TcpStream,
    decoder: Decoder,
    buffer: Box<[u8]>,
}

/// Opens `path` from `from` with `Last-Event-ID: last` when given; the answer's head must come
/// within `within` and say `200`.
pub async fn open(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    last: Option<u64>,
    within: Duration,
) -> anyhow::Result<Stream> {
    tokio::time::timeout(within, open_now(addr, from, path, last))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {within:?}"))?
}

async fn open_now(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    last: Option<u64>,
) -> anyhow::Result<Stream> {
    let mut socket = connect(addr, from).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
    );
    if let Some(last) = last {
        request.push_str(&format!("Last-Event-ID: {last}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await.context("send")?;
    let mut buffer = vec![0u8; 4096].into_boxed_slice();
    let (head, rest) = read_head(&mut socket, &mut buffer).await?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!(
            "not a chunked answer: {}",
            head.lines().next().unwrap_or("")
        );
    }
    let mut decoder = Decoder::default();
    decoder.feed(&rest);
    Ok(Stream {
        socket,
        decoder,
        buffer,
    })
}

/// A plain keep-alive connection (the comparison for idle streams): one `GET path` answered
/// `200` and read whole, then the connection is handed back open.
pub async fn plain(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    within: Duration,
) -> anyhow::Result<TcpStream> {
    let exchange = async {
        let mut socket = connect(addr, from).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.context("send")?;
        let mut buffer = vec![0u8; 4096];
        let (head, rest) = read_head(&mut socket, &mut buffer).await?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("no content-length")?;
        let mut got = rest.len();
        while got < length {
            let n = socket.read(&mut buffer).await?;
            if n == 0 {
                bail!("closed in the body");
            }
            got += n;
        }
        Ok(socket)
    };
    tokio::time::timeout(within, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {within:?}"))?
}

/// A connection to `addr` from `from` (any port), closed with a reset.
async fn connect(addr: SocketAddr, from: IpAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("socket")?;
    socket.set_reuseaddr(true)?;
    socket.set_zero_linger()?;
    socket
        .bind(SocketAddr::new(from, 0))
        .with_context(|| format!("bind {from}"))?;
    let socket = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect from {from}"))?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// Reads an answer's head, which must say `200`: the head, and the bytes read after it.
async fn read_head(socket: &mut TcpStream, buffer: &mut [u8]) -> anyhow::Result<(String, Vec<u8>)> {
    let mut head = Vec::with_capacity(512);
    let end = loop {
        let n = socket.read(buffer).await.context("read head")?;
        if n == 0 {
            bail!("closed before an answer");
        }
        head.extend_from_slice(&buffer[..n]);
        if let Some(at) = find(&head, b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > 16 * 1024 {
            bail!("answer head too long");
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let status = text.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        bail!("answered {status}");
    }
    Ok((text, head[end..].to_vec()))
}

impl Stream {
    /// Waits for more events and appends them to `out`; `false` when the stream ended (the
    /// server closed it or ended the chunked body).
    pub async fn read(&mut self, out: &mut Vec<Event>) -> anyhow::Result<bool> {
        loop {
            if self.decoder.drain(out) {
                return Ok(true);
            }
            if self.decoder.ended() {
                return Ok(false);
            }
            let n = self.socket.read(&mut self.buffer).await?;
            if n == 0 {
                self.decoder.drain(out);
                return Ok(false);
            }
            self.decoder.feed(&self.buffer[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk: this many bytes left.
    Data(usize),
    /// The CRLF after a chunk's data: this many bytes left to skip.
    Trailer(usize),
    /// The last (zero-length) chunk was seen.
    End,
}

/// The chunked body, decoded into SSE lines, into events: fed bytes as they come, cut anywhere.
#[derive(Debug, Default)]
pub struct Decoder {
    chunk: Chunk,
    /// The chunk-size line so far.
    size_line: Vec<u8>,
    /// The current SSE line so far.
    line: Vec<u8>,
    /// The current event's id, and whether it is `event: chat_deleted`.
    id: Option<u64>,
    deleted: bool,
    events: Vec<Event>,
}

impl Decoder {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.chunk {
                Chunk::End => return,
                Chunk::Size => {
                    let Some(at) = bytes.iter().position(|&b| b == b'\n') else {
                        self.size_line.extend_from_slice(bytes);
                        return;
                    };
                    self.size_line.extend_from_slice(&bytes[..at]);
                    bytes = &bytes[at + 1..];
                    let line = String::from_utf8_lossy(&self.size_line);
                    let digits = line.trim().split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(digits, 16).unwrap_or(0);
                    self.size_line.clear();
                    self.chunk = if size == 0 {
                        Chunk::End
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    let take = left.min(bytes.len());
                    let (data, rest) = bytes.split_at(take);
                    self.lines(data);
                    bytes = rest;
                    self.chunk = if take == left {
                        Chunk::Trailer(2)
                    } else {
                        Chunk::Data(left - take)
                    };
                }
                Chunk::Trailer(left) => {
                    let take = left.min(bytes.len());
                    bytes = &bytes[take..];
                    self.chunk = if take == left {
                        Chunk::Size
                    } else {
                        Chunk::Trailer(left - take)
                    };
                }
            }
        }
    }

    /// The SSE lines of a piece of the body.
    fn lines(&mut self, mut data: &[u8]) {
        while let Some(at) = data.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&data[..at]);
            data = &data[at + 1..];
            let line = std::mem::take(&mut self.line);
            self.line(line.strip_suffix(b"\r").unwrap_or(&line));
            self.line = line;
            self.line.clear();
        }
        self.line.extend_from_slice(data);
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            // The end of an event.
            if self.deleted {
                self.events.push(Event::ChatDeleted);
            } else if let Some(id) = self.id {
                self.events.push(Event::Change(id));
            }
            self.id = None;
            self.deleted = false;
        } else if let Some(value) = line.strip_prefix(b"id:") {
            self.id = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if let Some(value) = line.strip_prefix(b"event:") {
            self.deleted = value.trim_ascii() == b"chat_deleted";
        }
        // `data:` (not needed: the id is the revision) and `:` comments (keep-alives).
    }

    /// Moves the events decoded so far into `out`; whether there were any.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> bool {
        let any = !self.events.is_empty();
        out.append(&mut self.events);
        any
    }

    pub fn ended(&self) -> bool {
        self.chunk == Chunk::End
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
        }
        out
    }

    #[test]
    fn events_are_decoded_wherever_the_bytes_are_cut() {
        let body = chunked(&[
            ":\n\n",
            "id: 7\ndata: {\"revision\":7}\n\n",
            "id: 8\ndata: {\"revision\":8}\n\nid: 9\n",
            "data: {}\n\n",
            "event: chat_deleted\ndata: {\"deleted\":true}\n\n",
        ]);
        let mut whole = body.clone();
        whole.extend_from_slice(b"0\r\n\r\n");
        for cut in 1..whole.len() {
            let mut decoder = Decoder::default();
            let mut events = Vec::new();
            for piece in whole.chunks(cut) {
                decoder.feed(piece);
                decoder.drain(&mut events);
            }
            assert_eq!(
                events,
                [
                    Event::Change(7),
                    Event::Change(8),
                    Event::Change(9),
                    Event::ChatDeleted
                ],
                "cut every {cut} bytes"
            );
            assert!(decoder.ended());
        }
    }

    #[test]
    fn crlf_lines_and_chunk_extensions_are_read() {
        let mut decoder = Decoder::default();
        decoder.feed(b"13;ext=1\r\nid: 12\r\ndata: x\r\n\r\n\r\n");
        decoder.feed(b"2\r\n\r\n\r\n");
        let mut events = Vec::new();
        decoder.drain(&mut events);
        assert_eq!(events, [Event::Change(12)]);
        assert!(!decoder.ended());
    }

    #[test]
    fn sources_spread_over_addresses_per_scenario() {
        assert_eq!(source(3, 0).to_string(), "127.0.3.2");
        assert_eq!(source(3, 15_999).to_string(), "127.0.3.2");
        assert_eq!(source(3, 16_000).to_string(), "127.0.3.3");
        assert_eq!(source(4, 49_999).to_string(), "127.0.4.5");
    }
}

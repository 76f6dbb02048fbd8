//! git's pkt-line framing: encoding helpers for what a server sends, and a reader for what a
//! client sends.
//!
//! A pkt-line is four hex digits giving the length of the whole line (the four digits included)
//! followed by the payload; `0000` is a flush packet, `0001` a delimiter and `0002` a
//! response-end (protocol v2). The longest line git accepts is 65520 bytes.

use std::io::{self, BufRead, Write};

use crate::Result;

/// The flush packet, `0000`: ends a list (the ref advertisement, the wants, a side-band stream).
pub const FLUSH: &[u8] = b"0000";

/// The delimiter packet, `0001`: separates the sections of a protocol v2 message.
pub const DELIM: &[u8] = b"0001";

/// Longest pkt-line git accepts, length digits included (`LARGE_PACKET_MAX`).
pub const MAX_LINE: usize = 65520;

/// Longest payload of a data line: [`MAX_LINE`] less the four length digits.
pub const MAX_PAYLOAD: usize = MAX_LINE - 4;

/// A data pkt-line carrying `payload` (pass the trailing `\n` yourself where git expects one).
///
/// # Panics
/// When `payload` is longer than [`MAX_PAYLOAD`]; use [`header`] to frame a line with any
/// length (for a hostile peer).
pub fn data(payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= MAX_PAYLOAD,
        "pkt-line payload of {} bytes is longer than {MAX_PAYLOAD}",
        payload.len()
    );
    let mut line = Vec::with_capacity(payload.len() + 4);
    line.extend_from_slice(&header(payload.len() + 4));
    line.extend_from_slice(payload);
    line
}

/// A data pkt-line for the text `line` with `\n` appended (`data("NAK\n")`).
///
/// # Panics
/// When the line is longer than [`MAX_PAYLOAD`].
pub fn text(line: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(line.len() + 1);
    payload.extend_from_slice(line.as_bytes());
    payload.push(b'\n');
    data(&payload)
}

/// The four length digits for a line of `len` bytes in all: lowercase hex, the low 16 bits
/// only. Any value can be framed this way, also lengths git rejects (1-3, or more than
/// [`MAX_LINE`]).
pub fn header(len: usize) -> [u8; 4] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [
        HEX[(len >> 12) & 15],
        HEX[(len >> 8) & 15],
        HEX[(len >> 4) & 15],
        HEX[len & 15],
    ]
}

/// Writes `payload` as side-band packets of `band` (1: data, 2: progress, 3: fatal error), each
/// carrying at most `max_payload` bytes (65515 for `side-band-64k`, 995 for `side-band`).
pub fn write_sideband(
    out: &mut impl Write,
    band: u8,
    payload: &[u8],
    max_payload: usize,
) -> Result<()> {
    for chunk in payload.chunks(max_payload.clamp(1, MAX_PAYLOAD - 1)) {
        out.write_all(&header(chunk.len() + 5))?;
        out.write_all(&[band])?;
        out.write_all(chunk)?;
    }
    Ok(())
}

/// One packet read from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pkt {
    /// `0000`.
    Flush,
    /// `0001` (protocol v2 delimiter).
    Delim,
    /// `0002` (protocol v2 response end).
    ResponseEnd,
    /// A data line's payload (trailing `\n` kept).
    Data(Vec<u8>),
}

impl Pkt {
    /// The payload as text without its trailing `\n` (lossy UTF-8); `0000`, `0001` and `0002`
    /// for the special packets.
    pub fn text(&self) -> String {
        match self {
            Self::Flush => "0000".to_owned(),
            Self::Delim => "0001".to_owned(),
            Self::ResponseEnd => "0002".to_owned(),
            Self::Data(payload) => {
                let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
                String::from_utf8_lossy(payload).into_owned()
            }
        }
    }
}

/// Reads pkt-lines from a client.
#[derive(Debug)]
pub struct PktReader<R> {
    inner: R,
}

impl<R: BufRead> PktReader<R> {
    /// Reads packets from `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner }
    }

    /// The next packet, or `None` when the stream ends cleanly before one starts. A malformed
    /// length or a stream that ends inside a packet is an error.
    pub fn read(&mut self) -> Result<Option<Pkt>> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = match self.inner.read(&mut len[got..]) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stream ended inside a pkt-line length",
                    ))
                };
            }
            got += n;
        }
        let digits = std::str::from_utf8(&len)
            .ok()
            .and_then(|d| usize::from_str_radix(d, 16).ok())
            .ok_or_else(|| {
                invalid(format!(
                    "bad pkt-line length {:?}",
                    String::from_utf8_lossy(&len)
                ))
            })?;
        match digits {
            0 => Ok(Some(Pkt::Flush)),
            1 => Ok(Some(Pkt::Delim)),
            2 => Ok(Some(Pkt::ResponseEnd)),
            3 => Err(invalid("pkt-line length 3".to_owned())),
            n if n > MAX_LINE => Err(invalid(format!("pkt-line length {n} over {MAX_LINE}"))),
            n => {
                let mut payload = vec![0u8; n - 4];
                self.inner.read_exact(&mut payload)?;
                Ok(Some(Pkt::Data(payload)))
            }
        }
    }

    /// The reader given to [`PktReader::new`].
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Every packet in `bytes` (a request body); stops at the first malformed packet.
pub fn parse_all(bytes: &[u8]) -> Vec<Pkt> {
    let mut reader = PktReader::new(bytes);
    let mut out = Vec::new();
    while let Ok(Some(pkt)) = reader.read() {
        out.push(pkt);
    }
    out
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::{FLUSH, Pkt, PktReader, data, header, parse_all, text, write_sideband};

    #[test]
    fn lines_are_framed_with_their_length() {
        assert_eq!(text("NAK"), b"0008NAK\n");
        assert_eq!(data(b""), b"0004");
        assert_eq!(header(0xffff), *b"ffff");
        assert_eq!(FLUSH, b"0000");
    }

    #[test]
    fn reader_reads_data_and_special_packets() {
        let input: &[u8] = b"0009done\n000000010002";
        let mut reader = PktReader::new(input);
        assert_eq!(
            reader.read().expect("read"),
            Some(Pkt::Data(b"done\n".to_vec()))
        );
        assert_eq!(reader.read().expect("read"), Some(Pkt::Flush));
        assert_eq!(reader.read().expect("read"), Some(Pkt::Delim));
        assert_eq!(reader.read().expect("read"), Some(Pkt::ResponseEnd));
        assert_eq!(reader.read().expect("read"), None);
        assert!(PktReader::new(&b"00"[..]).read().is_err());
        assert!(PktReader::new(&b"zzzz"[..]).read().is_err());
        assert_eq!(parse_all(b"0008NAK\n0000").len(), 2);
    }

    #[test]
    fn sideband_splits_payload_into_bands() {
        let mut out = Vec::new();
        write_sideband(&mut out, 1, b"abcde", 2).expect("write");
        assert_eq!(out, b"0007\x01ab0007\x01cd0006\x01e");
    }
}

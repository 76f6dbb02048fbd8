//! Reading from a server under the session's budgets: every byte is counted against
//! `--max-transfer-bytes` and every failure is recorded with its reason.

use std::io::{self, Read};
use std::sync::Arc;

use super::Session;

/// A reader whose bytes count against the session's transfer budget.
pub(super) struct Metered<R> {
    inner: R,
    session: Arc<Session>,
    /// Names the connection in error messages ("reading from the server").
    what: &'static str,
}

impl<R: Read> Metered<R> {
    pub fn new(inner: R, session: Arc<Session>, what: &'static str) -> Self {
        Metered {
            inner,
            session,
            what,
        }
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.session.remaining()?;
        match self.inner.read(buf) {
            Ok(n) => {
                self.session.count(n)?;
                Ok(n)
            }
            Err(e) => Err(self.session.network(self.what, &e)),
        }
    }
}

/// Whether the first pkt-line in `buf` is `ERR <message>`, git's way of refusing a request
/// before the ref advertisement; returns the message.
pub(super) fn pkt_error(buf: &[u8]) -> Option<String> {
    let len = usize::from_str_radix(std::str::from_utf8(buf.get(..4)?).ok()?, 16).ok()?;
    let line = buf.get(4..len.min(buf.len()))?;
    let message = line.strip_prefix(b"ERR ")?;
    Some(crate::escape::controls(
        String::from_utf8_lossy(message).trim_end(),
    ))
}

#[cfg(test)]
mod tests {
    use super::pkt_error;

    #[test]
    fn an_err_pkt_line_is_recognised_and_its_message_escaped() {
        assert_eq!(
            pkt_error(b"0030ERR access denied or repository not exported\n").as_deref(),
            Some("access denied or repository not exported")
        );
        assert_eq!(
            pkt_error(b"0012ERR bad\x1b[31m\n").as_deref(),
            Some("bad\\u{1b}[31m")
        );
        assert_eq!(pkt_error(b"003f0123456789abcdef refs/heads/main"), None);
        assert_eq!(pkt_error(b"00"), None);
    }
}

//! What a scripted upload-pack says, shared by [`super::ScriptedGitDaemon`] (`git://`) and
//! [`super::ScriptedHttp`] (smart HTTP): the ref advertisement, the shallow list, `NAK` and the
//! pack, in protocol v0 (what libgit2 speaks). Protocol v2 is [`super::upload_pack_v2`].

use std::io::Write;
use std::sync::Arc;

use super::pktline::{self, FLUSH, Pkt};
use crate::Result;

/// Capabilities advertised unless told otherwise.
pub const DEFAULT_CAPABILITIES: &str =
    "multi_ack_detailed side-band-64k thin-pack ofs-delta shallow no-progress include-tag";

/// The id an empty repository advertises (with the ref name `capabilities^{}`).
pub const ZERO_ID: &str = "0000000000000000000000000000000000000000";

/// A protocol v0 ref advertisement: `(40-hex id, ref name)` lines, the first carrying the
/// capabilities after a NUL, then a flush. No refs at all is advertised as git does for an empty
/// repository: `<zero id> capabilities^{}\0<capabilities>`. Encoding panics on a line longer
/// than a pkt-line can carry (65516 bytes); send such bytes with `DaemonScript::Raw` or
/// `Reply::Raw` instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefAdvertisement {
    /// `(id, ref name)` in the order sent; ids are sent as given (any text).
    pub refs: Vec<(String, String)>,
    /// Space-separated capabilities, sent after the NUL of the first line.
    pub capabilities: String,
}

impl RefAdvertisement {
    /// Advertises `refs` with [`DEFAULT_CAPABILITIES`].
    pub fn new<I, S, T>(refs: I) -> Self
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<String>,
        T: Into<String>,
    {
        Self {
            refs: refs
                .into_iter()
                .map(|(id, name)| (id.into(), name.into()))
                .collect(),
            capabilities: DEFAULT_CAPABILITIES.to_owned(),
        }
    }

    /// An empty repository's advertisement.
    pub fn empty() -> Self {
        Self::new(Vec::<(String, String)>::new())
    }

    /// Replaces the capability list (e.g. without `side-band-64k`, or with
    /// `symref=HEAD:refs/heads/main` added).
    #[must_use]
    pub fn capabilities(mut self, capabilities: &str) -> Self {
        capabilities.clone_into(&mut self.capabilities);
        self
    }

    /// The advertisement as sent: pkt-lines and a flush.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let empty = [(ZERO_ID.to_owned(), "capabilities^{}".to_owned())];
        let refs = if self.refs.is_empty() {
            &empty[..]
        } else {
            &self.refs[..]
        };
        for (i, (id, name)) in refs.iter().enumerate() {
            let line = if i == 0 {
                format!("{id} {name}\0{}\n", self.capabilities)
            } else {
                format!("{id} {name}\n")
            };
            out.extend_from_slice(&pktline::data(line.as_bytes()));
        }
        out.extend_from_slice(FLUSH);
        out
    }
}

/// Writes a ref advertisement that never ends: a first line with `capabilities`, then
/// `<id> refs/heads/endless/<n>` lines with ever new ids and names, until writing fails (the
/// client hung up or the server is stopping).
pub fn write_endless_advertisement(out: &mut impl Write, capabilities: &str) -> Result<()> {
    out.write_all(&pktline::data(
        format!("{} HEAD\0{capabilities}\n", fake_id(0)).as_bytes(),
    ))?;
    write_endless(out, |n| {
        format!("{} refs/heads/endless/{:012}\n", fake_id(n + 1), n + 1)
    })
}

/// Writes the pkt-lines `line(0)`, `line(1)`, ... in 64 KiB batches until writing fails.
pub(crate) fn write_endless(out: &mut impl Write, line: impl Fn(u64) -> String) -> Result<()> {
    let mut batch = Vec::with_capacity(72 * 1024);
    for n in 0u64.. {
        batch.extend_from_slice(&pktline::data(line(n).as_bytes()));
        if batch.len() >= 64 * 1024 {
            out.write_all(&batch)?;
            batch.clear();
        }
    }
    Ok(())
}

/// A distinct 40-hex id for counter `n` (not the id of any real object).
pub(crate) fn fake_id(n: u64) -> String {
    format!("{:024x}{n:016x}", 0xdead_beef_u64)
}

/// What the server sends as the shallow list after the client's wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Shallow {
    /// No `shallow` lines (a flush still ends the empty list when the client asked to deepen).
    #[default]
    None,
    /// These ids as `shallow <id>` lines, then a flush (sent even if the client did not ask to
    /// deepen, which a client must not accept).
    List(Vec<String>),
    /// `shallow <id>` lines with ever new ids until the client hangs up.
    Endless,
}

/// The server's answer to a fetch: the shallow list, `NAK`, and a pack in side-band framing
/// (band 1; progress on band 2) when the client asked for `side-band-64k` or `side-band`, raw
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackResponse {
    /// The shallow list (see [`Shallow`]).
    pub shallow: Shallow,
    /// The pack bytes, sent as they are (e.g. from [`super::pack::PackBuilder::build`]).
    pub pack: Arc<[u8]>,
    /// Progress messages sent on band 2 before the pack (not to a client that asked for
    /// `no-progress`, nor without side-band).
    pub progress: Vec<String>,
    /// A fatal error sent on band 3 after the pack (side-band only).
    pub fatal: Option<String>,
}

impl PackResponse {
    /// Sends `pack` with no shallow lines, no progress and no error.
    pub fn new(pack: impl Into<Arc<[u8]>>) -> Self {
        Self {
            shallow: Shallow::None,
            pack: pack.into(),
            progress: Vec::new(),
            fatal: None,
        }
    }

    /// Sets the shallow list.
    #[must_use]
    pub fn shallow(mut self, shallow: Shallow) -> Self {
        self.shallow = shallow;
        self
    }

    /// Adds a band 2 progress message (end it with `\n` or `\r`).
    #[must_use]
    pub fn progress(mut self, message: &str) -> Self {
        self.progress.push(message.to_owned());
        self
    }

    /// Sends `message` on band 3 (a fatal error) after the pack.
    #[must_use]
    pub fn fatal(mut self, message: &str) -> Self {
        self.fatal = Some(message.to_owned());
        self
    }
}

/// What the client asked for in its wants section (up to the first flush).
#[derive(Debug, Clone, Default)]
pub(crate) struct Needs {
    /// Capabilities from the first `want` line.
    pub capabilities: Vec<String>,
    /// Number of `want` lines.
    pub wants: usize,
    /// Whether a `deepen`, `deepen-since` or `deepen-not` line came.
    pub deepen: bool,
    /// Whether the client listed its own `shallow` commits.
    pub client_shallow: bool,
}

impl Needs {
    /// Takes note of one line of the wants section.
    pub(crate) fn add(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("want ") {
            if self.wants == 0 {
                self.capabilities = rest.split(' ').skip(1).map(str::to_owned).collect();
            }
            self.wants += 1;
        } else if line.starts_with("deepen") {
            self.deepen = true;
        } else if line.starts_with("shallow ") {
            self.client_shallow = true;
        }
    }

    fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Largest side-band payload, if the client asked for side-band.
    fn sideband(&self) -> Option<usize> {
        if self.has("side-band-64k") {
            Some(pktline::MAX_PAYLOAD - 1)
        } else if self.has("side-band") {
            Some(995)
        } else {
            None
        }
    }
}

/// Whether a shallow section (lines and a flush) is sent after the wants.
fn sends_shallow(response: &PackResponse, needs: &Needs) -> bool {
    needs.deepen || needs.client_shallow || response.shallow != Shallow::None
}

/// Writes the shallow section, if one is due: the `shallow` lines and a flush.
pub(crate) fn write_shallow_section(
    out: &mut impl Write,
    response: &PackResponse,
    needs: &Needs,
) -> Result<()> {
    if !sends_shallow(response, needs) {
        return Ok(());
    }
    match &response.shallow {
        Shallow::None => {}
        Shallow::List(ids) => {
            for id in ids {
                // Without a newline, as git's upload-pack writes it (libgit2 insists).
                out.write_all(&pktline::data(format!("shallow {id}").as_bytes()))?;
            }
        }
        Shallow::Endless => write_endless(out, |n| format!("shallow {}", fake_id(n)))?,
    }
    out.write_all(FLUSH)?;
    Ok(())
}

/// Writes `NAK`.
pub(crate) fn write_nak(out: &mut impl Write) -> Result<()> {
    out.write_all(&pktline::text("NAK"))?;
    Ok(())
}

/// Writes the pack (side-band framed or raw, as the client asked) and, in side-band, the
/// progress messages, the fatal error and the closing flush.
pub(crate) fn write_pack(
    out: &mut impl Write,
    response: &PackResponse,
    needs: &Needs,
) -> Result<()> {
    let Some(max) = needs.sideband() else {
        out.write_all(&response.pack)?;
        return Ok(());
    };
    write_sideband_pack(out, response, needs.has("no-progress"), max)
}

/// Writes the pack in side-band packets of at most `max` bytes: progress on band 2 (unless
/// `no_progress`), the pack on band 1, the fatal error on band 3, then a flush.
pub(crate) fn write_sideband_pack(
    out: &mut impl Write,
    response: &PackResponse,
    no_progress: bool,
    max: usize,
) -> Result<()> {
    if !no_progress {
        for message in &response.progress {
            pktline::write_sideband(out, 2, message.as_bytes(), max)?;
        }
    }
    pktline::write_sideband(out, 1, &response.pack, max)?;
    if let Some(fatal) = &response.fatal {
        pktline::write_sideband(out, 3, fatal.as_bytes(), max)?;
    }
    out.write_all(FLUSH)?;
    Ok(())
}

/// Writes a stateless (smart HTTP) upload-pack answer to the request body `body`, as
/// `git upload-pack --stateless-rpc` would answer it: the shallow section if due, then `NAK`
/// and the pack if the request ended with `done`, or just `NAK` after a round of `have`s, or
/// nothing more after a wants-only request (the shallow probe of a `--depth` fetch). An
/// [`Shallow::Endless`] list is written until writing fails.
pub(crate) fn write_stateless_answer(
    out: &mut impl Write,
    body: &[u8],
    response: &PackResponse,
) -> Result<()> {
    let mut needs = Needs::default();
    let mut pkts = pktline::parse_all(body).into_iter();
    for pkt in pkts.by_ref() {
        match pkt {
            Pkt::Data(_) => needs.add(&pkt.text()),
            _ => break,
        }
    }
    if needs.wants == 0 {
        return Ok(());
    }
    write_shallow_section(out, response, &needs)?;
    for pkt in pkts {
        match pkt {
            Pkt::Data(_) if pkt.text() == "done" => {
                write_nak(out)?;
                return write_pack(out, response, &needs);
            }
            Pkt::Flush => return write_nak(out),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{PackResponse, RefAdvertisement, Shallow, write_stateless_answer};

    fn stateless_answer(body: &[u8], response: &PackResponse) -> Vec<u8> {
        let mut out = Vec::new();
        write_stateless_answer(&mut out, body, response).expect("write to a Vec");
        out
    }

    #[test]
    fn empty_repository_advertises_capabilities_only() {
        let adv = RefAdvertisement::empty().capabilities("ofs-delta");
        let line = format!("{} capabilities^{{}}\0ofs-delta\n", "0".repeat(40));
        let expected = format!("{:04x}{line}0000", line.len() + 4);
        assert_eq!(adv.encode(), expected.as_bytes());
    }

    #[test]
    fn stateless_answer_follows_upload_pack() {
        let response =
            PackResponse::new(b"PACK".to_vec()).shallow(Shallow::List(vec!["a".repeat(40)]));
        let want = format!("want {} side-band-64k no-progress\n", "a".repeat(40));
        let want = super::pktline::data(want.as_bytes());
        let mut probe = want.clone();
        probe.extend_from_slice(b"000ddeepen 1\n0000");
        let answer = stateless_answer(&probe, &response);
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("0034shallow {}0000", "a".repeat(40))
        );
        let mut fetch = probe;
        fetch.extend_from_slice(b"0009done\n");
        let answer = stateless_answer(&fetch, &response);
        assert!(
            String::from_utf8_lossy(&answer).ends_with("00000008NAK\n0009\x01PACK0000"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}

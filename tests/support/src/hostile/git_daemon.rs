//! `ScriptedGitDaemon`: a `git://` server written here, that says what a test scripts instead
//! of what a repository holds, in protocol v0 or v2 as scripted (a script can look at the
//! client's `version=2` to choose).

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use super::pktline::{self, Pkt, PktReader};
use super::upload_pack::{
    self, DEFAULT_CAPABILITIES, Needs, PackResponse, RefAdvertisement, write_endless_advertisement,
};
use super::upload_pack_v2::{V2Command, V2Script};
use super::{ByteCounter, Counted, SETTLE_TIMEOUT, Workers};
use crate::Result;
use crate::server::{AcceptLoop, lock};

/// What the daemon does on one connection, after reading the client's first line.
#[derive(Debug, Clone)]
pub enum DaemonScript {
    /// Advertise refs, read the client's wants (`want`, `shallow`, `deepen` lines up to a
    /// flush), send the shallow section if due, answer each round of `have`s with `NAK`, and on
    /// `done` send `NAK` and the pack. A client that only lists refs (a flush instead of wants)
    /// gets nothing more.
    UploadPack {
        /// The refs and capabilities advertised.
        advertisement: RefAdvertisement,
        /// The shallow list and the pack.
        response: PackResponse,
    },
    /// [`DaemonScript::UploadPack`] with the advertisement given as bytes (pkt-lines and the
    /// flush), for what [`RefAdvertisement`] cannot say, such as ref names that are not UTF-8.
    RawAdvertisementUploadPack {
        /// The advertisement as sent.
        advertisement: Vec<u8>,
        /// The shallow list and the pack.
        response: PackResponse,
    },
    /// A ref advertisement that never ends (ref lines until the client hangs up), with these
    /// capabilities on its first line.
    EndlessAdvertisement {
        /// Capabilities of the first line.
        capabilities: String,
    },
    /// `ERR <message>` as the first line, then close.
    Error(String),
    /// Close without a word.
    Close,
    /// These bytes verbatim, then close.
    Raw(Vec<u8>),
    /// Protocol v2: the capability advertisement, then the script's answer to each command
    /// until the client ends the session or the script hangs up.
    V2(V2Script),
}

impl DaemonScript {
    /// [`DaemonScript::UploadPack`] advertising `refs` with the default capabilities and
    /// sending `pack`.
    pub fn upload_pack<I, S, T>(refs: I, pack: impl Into<Arc<[u8]>>) -> Self
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<String>,
        T: Into<String>,
    {
        Self::UploadPack {
            advertisement: RefAdvertisement::new(refs),
            response: PackResponse::new(pack),
        }
    }

    /// [`DaemonScript::EndlessAdvertisement`] with the default capabilities.
    pub fn endless_advertisement() -> Self {
        Self::EndlessAdvertisement {
            capabilities: DEFAULT_CAPABILITIES.to_owned(),
        }
    }
}

/// One connection as the daemon saw it (see [`ScriptedGitDaemon::requests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRequest {
    /// Connection number, from 0, in accept order.
    pub connection: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// The service asked for: `git-upload-pack` (or anything the client sent before the space).
    pub service: String,
    /// The repository path asked for (`/repo.git`).
    pub path: String,
    /// The `host=` parameter (`127.0.0.1:PORT`), if sent.
    pub host: Option<String>,
    /// Further NUL-separated parameters (e.g. `version=2`), empty ones left out.
    pub extra: Vec<String>,
    /// The client's pkt-lines after the advertisement, as text without the trailing newline
    /// (`want <id> <capabilities>`, `deepen 1`, `done`, ...); a flush is `0000`.
    pub lines: Vec<String>,
}

impl GitRequest {
    /// Parses the first pkt-line payload: `git-upload-pack /path\0host=h\0\0version=2\0`.
    fn parse(connection: usize, peer: SocketAddr, payload: &[u8]) -> Self {
        let text = String::from_utf8_lossy(payload.strip_suffix(b"\n").unwrap_or(payload));
        let mut parts = text.split('\0');
        let command = parts.next().unwrap_or_default();
        let (service, path) = command.split_once(' ').unwrap_or((command, ""));
        let mut host = None;
        let mut extra = Vec::new();
        for part in parts.filter(|p| !p.is_empty()) {
            match part.strip_prefix("host=") {
                Some(h) if host.is_none() => host = Some(h.to_owned()),
                _ => extra.push(part.to_owned()),
            }
        }
        Self {
            connection,
            peer,
            service: service.to_owned(),
            path: path.to_owned(),
            host,
            extra,
            lines: Vec::new(),
        }
    }

    /// The capabilities of the first `want` line.
    pub fn capabilities(&self) -> Vec<String> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("want "))
            .map(|rest| rest.split(' ').skip(1).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The ids of the `want` lines.
    pub fn wants(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("want "))
            .filter_map(|rest| rest.split(' ').next())
            .map(str::to_owned)
            .collect()
    }
}

/// The scripts' signature: what to do on a connection, given its first line.
type Handler = dyn Fn(&GitRequest) -> DaemonScript + Send + Sync;

/// What the connection threads share.
struct State {
    handler: Box<Handler>,
    log: Mutex<Vec<GitRequest>>,
    sent: ByteCounter,
    workers: Arc<Workers>,
}

/// A raw `git://` server on `<ip>:<port>` that follows a script per connection: it reads the
/// client's first pkt-line (`git-upload-pack /path\0host=...\0`), records it, asks the script
/// what to do and does it (see [`DaemonScript`]).
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use crate_test_support::hostile::{DaemonScript, PackBuilder, ScriptedGitDaemon, TreeItem};
/// let mut pack = PackBuilder::new();
/// let blob = pack.blob(b"{}");
/// let tree = pack.tree(&[TreeItem::file("ro-crate-metadata.json", blob)]);
/// let commit = pack.commit(tree, &[], "crafted");
/// let daemon = ScriptedGitDaemon::start(DaemonScript::upload_pack(
///     [(commit.hex(), "refs/heads/main")],
///     pack.build(),
/// ))?;
/// let url = daemon.url("/repo.git"); // git://127.0.0.1:PORT/repo.git
/// # Ok(()) }
/// ```
pub struct ScriptedGitDaemon {
    accept: Option<AcceptLoop>,
    state: Arc<State>,
}

impl std::fmt::Debug for ScriptedGitDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedGitDaemon")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

impl ScriptedGitDaemon {
    /// Serves `script` on every connection, on `127.0.0.1`.
    pub fn start(script: DaemonScript) -> Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), move |_| script.clone())
    }

    /// Serves on `ip` (port 0), asking `script` what to do on each connection (it sees the
    /// client's first line and the connection number, so connections can differ).
    pub fn start_on(
        ip: IpAddr,
        script: impl Fn(&GitRequest) -> DaemonScript + Send + Sync + 'static,
    ) -> Result<Self> {
        let state = Arc::new(State {
            handler: Box::new(script),
            log: Mutex::new(Vec::new()),
            sent: ByteCounter::default(),
            workers: Arc::new(Workers::default()),
        });
        let accept = {
            let state = Arc::clone(&state);
            let mut next = 0usize;
            AcceptLoop::start_on(ip, "scripted-daemon", move |stream, tracked| {
                let connection = next;
                next += 1;
                let id = tracked.track(&stream);
                let tracked = Arc::clone(tracked);
                let state2 = Arc::clone(&state);
                let _ = state.workers.spawn("scripted-daemon-conn", move || {
                    let _ = serve(&stream, connection, &state2);
                    let _ = stream.shutdown(Shutdown::Both);
                    tracked.untrack(id);
                });
            })?
        };
        Ok(Self {
            accept: Some(accept),
            state,
        })
    }

    /// The address served (`<ip>:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.accept
            .as_ref()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), AcceptLoop::addr)
    }

    /// `git://<ip>:<port><path>` (a `/` is put before `path` if it has none).
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("git://{}{slash}{path}", self.addr())
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accept
            .as_ref()
            .map_or(0, |a| a.tracked().connections())
    }

    /// Bytes sent to clients so far.
    pub fn bytes_sent(&self) -> u64 {
        self.state.sent.get()
    }

    /// Waits until at least `n` bytes have been sent; returns whether that happened within
    /// `timeout` (for stopping a client in the middle of an endless answer).
    pub fn wait_for_bytes_sent(&self, n: u64, timeout: Duration) -> bool {
        self.state.sent.wait_for(n, timeout)
    }

    /// Every connection that sent a first line, in accept order, with the lines the client
    /// sent. Waits (up to 5 s) for connections in progress to end first.
    pub fn requests(&self) -> Vec<GitRequest> {
        self.state.workers.wait_idle(SETTLE_TIMEOUT);
        let mut log = lock(&self.state.log).clone();
        log.sort_by_key(|r| r.connection);
        log
    }
}

impl Drop for ScriptedGitDaemon {
    fn drop(&mut self) {
        // Stops accepting and shuts every connection down, which ends the threads serving them.
        drop(self.accept.take());
        self.state.workers.wait_idle(SETTLE_TIMEOUT);
    }
}

/// Serves one connection.
fn serve(stream: &TcpStream, connection: usize, state: &State) -> Result<()> {
    let peer = stream.peer_addr()?;
    let mut reader = PktReader::new(BufReader::new(stream.try_clone()?));
    let mut out = BufWriter::with_capacity(
        64 * 1024,
        Counted {
            inner: stream.try_clone()?,
            counter: &state.sent,
        },
    );
    let Some(Pkt::Data(first)) = reader.read()? else {
        return Ok(());
    };
    let request = GitRequest::parse(connection, peer, &first);
    let script = (state.handler)(&request);
    let slot = {
        let mut log = lock(&state.log);
        log.push(request);
        log.len() - 1
    };
    let record = |pkt: &Pkt| {
        if let Some(entry) = lock(&state.log).get_mut(slot) {
            entry.lines.push(pkt.text());
        }
    };
    match script {
        DaemonScript::Close => return Ok(()),
        DaemonScript::Error(message) => {
            out.write_all(&pktline::text(&format!("ERR {message}")))?;
        }
        DaemonScript::Raw(bytes) => out.write_all(&bytes)?,
        DaemonScript::EndlessAdvertisement { capabilities } => {
            write_endless_advertisement(&mut out, &capabilities)?;
        }
        DaemonScript::UploadPack {
            advertisement,
            response,
        } => {
            out.write_all(&advertisement.encode())?;
            out.flush()?;
            upload_pack(&mut reader, &mut out, &response, record)?;
        }
        DaemonScript::RawAdvertisementUploadPack {
            advertisement,
            response,
        } => {
            out.write_all(&advertisement)?;
            out.flush()?;
            upload_pack(&mut reader, &mut out, &response, record)?;
        }
        DaemonScript::V2(script) => {
            out.write_all(&script.advertisement())?;
            out.flush()?;
            while let Some(command) = V2Command::read(&mut reader, record)? {
                let open = script.answer(&command, &mut out)?;
                out.flush()?;
                if !open {
                    break;
                }
            }
        }
    }
    out.flush()?;
    drop(out);
    // Let the client read everything before the connection closes: half-close, then wait
    // (bounded) for the client to hang up, discarding whatever it still sends.
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(SETTLE_TIMEOUT))?;
    let _ = std::io::copy(&mut reader.into_inner().take(1 << 20), &mut std::io::sink());
    Ok(())
}

/// The negotiation after the advertisement (see [`DaemonScript::UploadPack`]).
fn upload_pack(
    reader: &mut PktReader<impl std::io::BufRead>,
    out: &mut impl Write,
    response: &PackResponse,
    record: impl Fn(&Pkt),
) -> Result<()> {
    let mut needs = Needs::default();
    loop {
        let Some(pkt) = reader.read()? else {
            return Ok(());
        };
        record(&pkt);
        match pkt {
            Pkt::Data(_) => needs.add(&pkt.text()),
            _ => break,
        }
    }
    if needs.wants == 0 {
        // `git ls-remote`: a flush instead of wants.
        return Ok(());
    }
    upload_pack::write_shallow_section(out, response, &needs)?;
    out.flush()?;
    loop {
        let Some(pkt) = reader.read()? else {
            return Ok(());
        };
        record(&pkt);
        match pkt {
            Pkt::Flush => {
                upload_pack::write_nak(out)?;
                out.flush()?;
            }
            Pkt::Data(_) if pkt.text() == "done" => break,
            _ => {}
        }
    }
    upload_pack::write_nak(out)?;
    upload_pack::write_pack(out, response, &needs)?;
    out.flush()?;
    Ok(())
}

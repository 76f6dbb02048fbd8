//! What a scripted upload-pack says in git protocol v2, shared by [`super::ScriptedGitDaemon`]
//! (`git://`, [`super::DaemonScript::V2`]) and [`super::ScriptedHttp`] ([`super::Reply::V2`]):
//! the capability advertisement, the `ls-refs` answer and, for each `fetch` command in turn, an
//! answer of the script's choosing (the `shallow-info` and `packfile` sections, an `ERR`, or a
//! hang-up).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::pktline::{self, DELIM, FLUSH, Pkt, PktReader};
use super::upload_pack::{PackResponse, Shallow, fake_id, write_endless, write_sideband_pack};
use crate::Result;

/// Capabilities advertised after `version 2` unless told otherwise: what GitHub's servers offer
/// a fetch (shallow and filter), so the client takes its partial path.
pub const V2_CAPABILITIES: &[&str] = &[
    "agent=git/hostile",
    "ls-refs=unborn",
    "fetch=shallow filter",
    "object-format=sha1",
];

/// How the server answers `ls-refs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsRefs {
    /// `<id> <name>` lines (sent as given, whatever the client's prefixes), then a flush.
    List(Vec<(String, String)>),
    /// `<id> refs/heads/endless/<n>` lines with ever new ids until the client hangs up.
    Endless,
}

/// The answer to one `fetch` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAnswer {
    /// A `shallow-info` section when the response has a shallow list (endless included), then
    /// the `packfile` section: progress on band 2 (unless the client asked for `no-progress`),
    /// the pack on band 1, the fatal error on band 3, a flush.
    Pack(PackResponse),
    /// `ERR <message>`, then the connection is closed.
    Error(String),
    /// The connection is closed without a word.
    Close,
}

/// A protocol v2 upload-pack: what it advertises, how it answers `ls-refs`, and its answers to
/// the `fetch` commands in the order they come (counted over every clone of the script, so over
/// every connection and HTTP request of a server); past the last answer, it hangs up.
#[derive(Debug, Clone)]
pub struct V2Script {
    /// Capability lines after `version 2`.
    pub capabilities: Vec<String>,
    /// The `ls-refs` answer.
    pub refs: LsRefs,
    /// The answers to the `fetch` commands, in order.
    pub fetches: Vec<FetchAnswer>,
    answered: Arc<AtomicUsize>,
}

impl V2Script {
    /// Lists `refs` and answers the fetch commands with `fetches`, advertising
    /// [`V2_CAPABILITIES`].
    pub fn new<I, S, T>(refs: I, fetches: Vec<FetchAnswer>) -> Self
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<String>,
        T: Into<String>,
    {
        Self::with_refs(
            LsRefs::List(
                refs.into_iter()
                    .map(|(id, name)| (id.into(), name.into()))
                    .collect(),
            ),
            fetches,
        )
    }

    /// An `ls-refs` answer that never ends.
    pub fn endless_ls_refs() -> Self {
        Self::with_refs(LsRefs::Endless, Vec::new())
    }

    fn with_refs(refs: LsRefs, fetches: Vec<FetchAnswer>) -> Self {
        Self {
            capabilities: V2_CAPABILITIES.iter().map(|&c| c.to_owned()).collect(),
            refs,
            fetches,
            answered: Arc::default(),
        }
    }

    /// Replaces the capability lines (e.g. `fetch=shallow` for a server without filters).
    #[must_use]
    pub fn capabilities(mut self, capabilities: &[&str]) -> Self {
        self.capabilities = capabilities.iter().map(|&c| c.to_owned()).collect();
        self
    }

    /// How many `fetch` commands the server has received so far.
    pub fn fetches_received(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// `version 2`, the capability lines and a flush.
    pub(crate) fn advertisement(&self) -> Vec<u8> {
        let mut out = pktline::text("version 2");
        for capability in &self.capabilities {
            out.extend_from_slice(&pktline::text(capability));
        }
        out.extend_from_slice(FLUSH);
        out
    }

    /// Answers `command`; `false` when the connection is to be closed after it.
    pub(crate) fn answer(&self, command: &V2Command, out: &mut impl Write) -> Result<bool> {
        match command.name.as_str() {
            "ls-refs" => {
                self.write_refs(out)?;
                Ok(true)
            }
            "fetch" => {
                let n = self.answered.fetch_add(1, Ordering::SeqCst);
                match self.fetches.get(n) {
                    Some(FetchAnswer::Pack(response)) => {
                        write_packfile(out, response, command)?;
                        Ok(true)
                    }
                    Some(FetchAnswer::Error(message)) => {
                        out.write_all(&pktline::text(&format!("ERR {message}")))?;
                        Ok(false)
                    }
                    Some(FetchAnswer::Close) | None => Ok(false),
                }
            }
            _ => Ok(false),
        }
    }

    fn write_refs(&self, out: &mut impl Write) -> Result<()> {
        match &self.refs {
            LsRefs::List(refs) => {
                for (id, name) in refs {
                    out.write_all(&pktline::text(&format!("{id} {name}")))?;
                }
            }
            LsRefs::Endless => write_endless(out, |n| {
                format!("{} refs/heads/endless/{n:012}\n", fake_id(n))
            })?,
        }
        out.write_all(FLUSH)?;
        Ok(())
    }
}

/// Writes the answer to a `fetch` command with a pack.
fn write_packfile(
    out: &mut impl Write,
    response: &PackResponse,
    command: &V2Command,
) -> Result<()> {
    match &response.shallow {
        Shallow::None => {}
        Shallow::List(ids) => {
            out.write_all(&pktline::text("shallow-info"))?;
            for id in ids {
                out.write_all(&pktline::text(&format!("shallow {id}")))?;
            }
            out.write_all(DELIM)?;
        }
        Shallow::Endless => {
            out.write_all(&pktline::text("shallow-info"))?;
            write_endless(out, |n| format!("shallow {}\n", fake_id(n)))?;
        }
    }
    out.write_all(&pktline::text("packfile"))?;
    // Protocol v2 always frames the pack in side-band-64k.
    let max = pktline::MAX_PAYLOAD - 1;
    write_sideband_pack(out, response, command.has("no-progress"), max)
}

/// One command as the client sent it: `command=<name>`, capability lines, a delimiter, the
/// arguments, a flush.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct V2Command {
    /// What follows `command=`.
    pub name: String,
    /// The argument lines after the delimiter (`want <id>`, `deepen 1`, `done`, ...).
    pub arguments: Vec<String>,
}

impl V2Command {
    /// Reads the next command; `None` when the client hung up or ended the session (a flush
    /// instead of a command). Every packet is passed to `record` first.
    pub(crate) fn read(
        reader: &mut PktReader<impl BufRead>,
        record: impl Fn(&Pkt),
    ) -> Result<Option<Self>> {
        let mut command = Self::default();
        let mut in_arguments = false;
        while let Some(pkt) = reader.read()? {
            record(&pkt);
            match pkt {
                Pkt::Data(_) => command.add(&pkt.text(), in_arguments),
                Pkt::Delim => in_arguments = true,
                Pkt::Flush | Pkt::ResponseEnd => break,
            }
        }
        Ok((!command.name.is_empty()).then_some(command))
    }

    /// The command in an HTTP request body.
    pub(crate) fn parse(body: &[u8]) -> Self {
        let mut command = Self::default();
        let mut in_arguments = false;
        for pkt in pktline::parse_all(body) {
            match pkt {
                Pkt::Data(_) => command.add(&pkt.text(), in_arguments),
                Pkt::Delim => in_arguments = true,
                Pkt::Flush | Pkt::ResponseEnd => break,
            }
        }
        command
    }

    fn add(&mut self, line: &str, in_arguments: bool) {
        if in_arguments {
            self.arguments.push(line.to_owned());
        } else if let Some(name) = line.strip_prefix("command=") {
            name.clone_into(&mut self.name);
        }
    }

    fn has(&self, argument: &str) -> bool {
        self.arguments.iter().any(|a| a == argument)
    }
}

#[cfg(test)]
mod tests {
    use super::{FetchAnswer, PackResponse, Shallow, V2Command, V2Script};

    fn fetch(arguments: &[&str]) -> V2Command {
        V2Command {
            name: "fetch".to_owned(),
            arguments: arguments.iter().map(|&a| a.to_owned()).collect(),
        }
    }

    fn answer(script: &V2Script, command: &V2Command) -> (bool, String) {
        let mut out = Vec::new();
        let open = script.answer(command, &mut out).expect("write to a Vec");
        (open, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn a_command_is_read_with_its_arguments() {
        let body = b"0012command=fetch\n0017object-format=sha1\n00010009done\n0000";
        assert_eq!(V2Command::parse(body), fetch(&["done"]));
    }

    #[test]
    fn fetch_commands_get_the_scripted_answers_in_turn_then_a_hang_up() {
        let pack = PackResponse::new(b"PACK".to_vec()).shallow(Shallow::List(vec!["a".repeat(40)]));
        let script = V2Script::new(
            [("b".repeat(40), "refs/heads/main")],
            vec![FetchAnswer::Pack(pack), FetchAnswer::Error("no".to_owned())],
        );
        let (open, first) = answer(&script, &fetch(&["done"]));
        assert!(open);
        assert_eq!(
            first,
            format!(
                "0011shallow-info\n0035shallow {}\n0001000dpackfile\n0009\x01PACK0000",
                "a".repeat(40)
            )
        );
        assert_eq!(
            answer(&script, &fetch(&[])),
            (false, "000bERR no\n".to_owned())
        );
        assert_eq!(answer(&script, &fetch(&[])), (false, String::new()));
        assert_eq!(script.fetches_received(), 3);
        let refs = V2Command {
            name: "ls-refs".to_owned(),
            arguments: Vec::new(),
        };
        assert_eq!(
            answer(&script, &refs),
            (
                true,
                format!("003d{} refs/heads/main\n0000", "b".repeat(40))
            )
        );
    }
}

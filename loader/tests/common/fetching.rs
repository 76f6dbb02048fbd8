//! The library's fetch with test defaults, for the tests that call it directly (`fetch.rs`,
//! `partial.rs` and the hostile-server suites): a builder over [`FetchRequest`].

use std::time::{Duration, Instant};

use crate_loader::credentials::{Credentials, Secret};
use crate_loader::fetch::{FetchError, FetchLimits, FetchRequest, Fetched, fetch};
use crate_loader::source::{MetadataPath, Policy, Source};

/// Where cr8tor puts the metadata file, the default path of a [`Fetch`].
pub const META: &str = "bagit/data/ro-crate-metadata.json";

/// The smallest crate the fetch tests serve: what matters to them is that its bytes come back.
pub const CRATE: &[u8] = br#"{"@context":"https://w3id.org/ro/crate/1.1/context","@graph":[]}"#;

/// A fetch of `url` with test defaults; tweak fields before calling [`Fetch::run`].
pub struct Fetch {
    pub url: String,
    pub branch: String,
    pub path: String,
    pub credentials: Credentials,
    pub limits: FetchLimits,
    pub timeout: Duration,
    pub skip_if_head_is: Option<String>,
    /// Paths to look up in the fetched commit's trees (payload presence); `None`: none.
    pub payload_paths: Option<Vec<String>>,
}

impl Fetch {
    pub fn of(url: impl Into<String>) -> Fetch {
        Fetch {
            url: url.into(),
            branch: "main".into(),
            path: format!("/{META}"),
            credentials: Credentials::default(),
            limits: FetchLimits::default(),
            timeout: Duration::from_secs(60),
            skip_if_head_is: None,
            payload_paths: None,
        }
    }
    #[allow(
        dead_code,
        reason = "not every suite that shares this file sends a token"
    )]
    pub fn token(mut self, token: &str) -> Fetch {
        self.credentials.token = Some(Secret::new(token));
        self
    }
    pub fn run(&self) -> Result<Fetched, FetchError> {
        let policy = Policy {
            allow_insecure: true,
            allow_local: false,
        };
        let source = Source::parse(&self.url, policy).expect("test URL parses");
        let path = MetadataPath::parse(&self.path).expect("test path parses");
        let paths = |_: &[u8]| self.payload_paths.clone();
        fetch(&FetchRequest {
            source: &source,
            branch: &self.branch,
            path: &path,
            credentials: &self.credentials,
            default_username: "pat",
            limits: self.limits,
            deadline: Instant::now() + self.timeout,
            work_dir: None,
            skip_if_head_is: self.skip_if_head_is.as_deref(),
            payload_paths: self.payload_paths.is_some().then_some(&paths),
        })
    }
    pub fn fails(&self) -> FetchError {
        match self.run() {
            Ok(fetched) => panic!("fetch of {} succeeded: {fetched:?}", self.url),
            Err(e) => e,
        }
    }
}

//! The API surface shared by the manager (`crate-operator`) and the loader (`crate-loader`):
//! the two custom resources and the contract the loader Job keeps with the manager.
//!
//! This crate is deliberately free of any client or runtime code so the loader can depend on it
//! without linking the controller runtime.
#![forbid(unsafe_code)]

pub mod analytics_crate;
pub mod contract;
pub mod datasource;
#[cfg(feature = "cli")]
pub mod logging;
pub mod repo_url;
pub mod request;
pub mod rules;

pub use analytics_crate::{AnalyticsCrate, AnalyticsCrateSpec, AnalyticsCrateStatus, RepoSpec};
pub use datasource::{AnalyticsDataSource, AnalyticsDataSourceSpec};

/// The API group both custom resources live in (upstream compatible).
pub const GROUP: &str = "xlscsde.nhs.uk";

//! A throw-away CA and a server certificate signed by it, for the test servers' https.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

use crate::Result;

/// The CA a server's certificate is signed by: its PEM, and a file holding it (deleted with it).
#[derive(Debug)]
pub(crate) struct Ca {
    pub pem: String,
    pub file: PathBuf,
    _dir: TempDir,
}

/// A CA and a server certificate for `ip` and `localhost`, as a rustls configuration.
pub(crate) fn make_tls(ip: IpAddr) -> Result<(Arc<ServerConfig>, Ca)> {
    let failed =
        |what: &'static str| move |e: rcgen::Error| io::Error::other(format!("{what}: {e}"));
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "crate-test-support scripted CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(failed("CA key"))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(failed("CA certificate"))?;

    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, ip.to_string());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.subject_alt_names = vec![
        SanType::IpAddress(ip),
        SanType::DnsName("localhost".try_into().map_err(failed("SAN"))?),
    ];
    let key = KeyPair::generate().map_err(failed("server key"))?;
    let cert = params
        .signed_by(&key, &ca)
        .map_err(failed("server certificate"))?;

    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(io::Error::other)?;

    let dir = tempfile::Builder::new()
        .prefix("crate-test-scripted-ca-")
        .tempdir()?;
    let file = dir.path().join("ca.pem");
    let pem = ca.pem();
    std::fs::write(&file, &pem)?;
    Ok((
        Arc::new(config),
        Ca {
            pem,
            file,
            _dir: dir,
        },
    ))
}

//! The control plane's PKI, made fresh for every run: a CA, the apiserver's serving certificate
//! for 127.0.0.1 and the `kubernetes` Service address, an administrator's client certificate (group `system:masters`) and the key that
//! signs service-account tokens. ECDSA P-256 throughout: quick to generate, accepted everywhere.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::{Result, error};

/// Paths of the PEM files written by [`write`].
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

fn failed(what: &str) -> impl Fn(rcgen::Error) -> std::io::Error + '_ {
    move |e| error(format!("failed to make the {what}: {e}"))
}

/// Generates the PKI into `dir`.
pub(crate) fn write(dir: &Path) -> Result<Pki> {
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "crate-operator e2e CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(failed("CA key"))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(failed("CA"))?;

    let leaf = |common_name: &str,
                organisation: Option<&str>,
                usage: ExtendedKeyUsagePurpose,
                sans: Vec<SanType>|
     -> Result<(String, String)> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if let Some(o) = organisation {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.subject_alt_names = sans;
        let key = KeyPair::generate().map_err(failed(common_name))?;
        let cert = params.signed_by(&key, &ca).map_err(failed(common_name))?;
        Ok((cert.pem(), key.serialize_pem()))
    };

    let dns = |name: &str| -> Result<SanType> {
        Ok(SanType::DnsName(name.try_into().map_err(failed("SAN"))?))
    };
    let (serving_cert, serving_key) = leaf(
        "kube-apiserver",
        None,
        ExtendedKeyUsagePurpose::ServerAuth,
        vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            dns("localhost")?,
            dns("kubernetes.default.svc")?,
            // The `kubernetes` Service's address, which Pods on the real node connect to (see
            // `node`).
            SanType::IpAddress(crate::node::SERVICE_IP.into()),
        ],
    )?;
    let (admin_cert, admin_key) = leaf(
        "crate-operator-e2e-admin",
        Some("system:masters"),
        ExtendedKeyUsagePurpose::ClientAuth,
        Vec::new(),
    )?;
    let sa_key = KeyPair::generate().map_err(failed("service-account key"))?;

    let ca_pem = ca.pem();
    let file = |name: &str, contents: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        fs::write(&path, contents)
            .map_err(|e| error(format!("failed to write {}: {e}", path.display())))?;
        Ok(path)
    };
    Ok(Pki {
        ca_cert: file("ca.crt", &ca_pem)?,
        serving_cert: file("apiserver.crt", &serving_cert)?,
        serving_key: file("apiserver.key", &serving_key)?,
        admin_cert: file("admin.crt", &admin_cert)?,
        admin_key: file("admin.key", &admin_key)?,
        service_account_key: file("sa.key", &sa_key.serialize_pem())?,
        service_account_pub: file("sa.pub", &sa_key.public_key_pem())?,
        ca_pem,
    })
}

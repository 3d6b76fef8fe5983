//! Embeds Mozilla's root certificates (from `webpki-root-certs`) as one PEM bundle, so the AWS
//! SDK's HTTPS client trusts a fixed store parsed from memory instead of scanning the OS
//! certificate directory at every cold start (DESIGN: "a fixed trust store is the first lever").
use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_AWS").is_none() {
        return;
    }
    let mut pem = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let b64 = STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            // base64 output is ASCII.
            let _ = writeln!(pem, "{}", std::str::from_utf8(chunk).unwrap());
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("roots.pem");
    std::fs::write(out, pem).unwrap();
}

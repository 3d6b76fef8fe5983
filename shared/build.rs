//! Embeds the root certificates of Amazon Trust Services (from Mozilla's set in
//! `webpki-root-certs`) as one PEM bundle for the AWS SDK's HTTPS client.
//!
//! Every AWS endpoint exvid calls (DynamoDB, S3, MediaConvert, STS) presents a chain to one of
//! these five roots. Trusting only them is tighter than the OS store, and it is fast: the SDK
//! parses the trust store each time it builds a client (twice during init), and parsing ~150
//! roots cost ~1.1 ms per parse on the benchmark machine, against ~40 µs for these five.
//! `AWS_CA_BUNDLE` replaces the bundle at run time (proxies, private endpoints).
use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Subject names of the Amazon Trust Services roots (Starfield G2 cross-signs them).
const AWS_ROOTS: &[&str] = &[
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_AWS").is_none() {
        return;
    }
    let mut pem = String::new();
    let mut found = Vec::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let der = cert.as_ref();
        let Some(name) = AWS_ROOTS.iter().find(|n| contains(der, n.as_bytes())) else {
            continue;
        };
        found.push(*name);
        let b64 = STANDARD.encode(der);
        let _ = writeln!(pem, "# {name}\n-----BEGIN CERTIFICATE-----");
        for chunk in b64.as_bytes().chunks(64) {
            let _ = writeln!(pem, "{}", std::str::from_utf8(chunk).unwrap());
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    for name in AWS_ROOTS {
        assert!(
            found.contains(name),
            "root '{name}' is no longer in webpki-root-certs; update shared/build.rs"
        );
    }
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("aws-roots.pem");
    std::fs::write(out, pem).unwrap();
}

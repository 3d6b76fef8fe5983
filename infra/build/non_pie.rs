//! Links the bootstrap as a non-PIE executable: the loader then has ~100 relocations to apply
//! instead of ~16,000 and no relocated pages to copy, which is most of what separates a Lambda's
//! cold start from a bare runtime's (docs/performance.md). `EXVID_PIE=1` keeps a PIE.
fn main() {
    println!("cargo:rerun-if-env-changed=EXVID_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("EXVID_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

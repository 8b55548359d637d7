//! Links `octo` with packed relative relocations (DT_RELR): the dynamic loader applies ~78,000
//! relative relocations at every start, and reading them from a 1.8 MB `.rela.dyn` cost ~1 ms of a
//! one-shot `octo run-step` (issue 10). The binary stays position-independent (ASLR unchanged).
//! Needs GNU ld ≥ 2.38 (or lld) and glibc ≥ 2.36 on Linux/glibc targets (other targets get nothing);
//! `OCTO_NO_PACKED_RELOCS=1` builds without it.

fn main() {
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu && std::env::var_os("OCTO_NO_PACKED_RELOCS").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=OCTO_NO_PACKED_RELOCS");
}

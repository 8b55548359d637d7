//! Builds the `plugins/` workspace for wasm32-wasip2 so the host can embed the built-in components.
//!
//! The nested cargo gets its own target directory (next to ours) so it never waits on the lock the
//! outer build holds, and a cleaned environment so the host's flags do not leak into a wasm build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let repo = manifest_dir.ancestors().nth(2).unwrap().to_path_buf();
    let plugins = repo.join("plugins");
    for watched in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "sdk",
        "sdk-macros",
        "run-script",
        "deploy-package",
        "http-health-check",
        "update-check",
        "telemetry",
        "experiences",
        "dynamic-extensions",
        "vendor-common",
        "examples",
        "test-fixtures",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", repo.join("wit").display());
    println!("cargo:rerun-if-env-changed=OCTO_PLUGINS_TARGET_DIR");

    let target_dir = std::env::var_os("OCTO_PLUGINS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // OUT_DIR = <target>/<profile>/build/<pkg>-<hash>/out
            let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
            out.ancestors().nth(4).unwrap().join("octo-plugins")
        });

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(plugins.join("Cargo.toml"))
    .env("CARGO_TARGET_DIR", &target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo to build the plugins");
    if !status.success() {
        if !wasm_target_installed() {
            panic!(
                "the wasm32-wasip2 target is not installed: run `rustup target add wasm32-wasip2` (the README's commands do this for you)"
            );
        }
        panic!(
            "building the plugins in {} failed (see the output above)",
            plugins.display()
        );
    }
    let built = target_dir.join("wasm32-wasip2").join("release");
    for name in [
        "run_script",
        "deploy_package",
        "http_health_check",
        "update_check",
        "telemetry",
        "experiences",
        "dynamic_extensions",
    ] {
        let path = built.join(format!("{name}.wasm"));
        assert!(path.is_file(), "{} was not built", path.display());
        // Its digest, so a run need not hash the embedded bytes to recognise them.
        let bytes = std::fs::read(&path).expect("read a built plugin");
        println!(
            "cargo:rustc-env=OCTO_SHA256_{}={}",
            name.to_uppercase(),
            octo_fsutil::sha256_hex(&bytes)
        );
    }
    println!("cargo:rustc-env=OCTO_PLUGINS_DIR={}", built.display());
}

fn wasm_target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| {
            Path::new(String::from_utf8_lossy(&o.stdout).trim())
                .join("lib/rustlib/wasm32-wasip2")
                .is_dir()
        })
        .unwrap_or(false)
}

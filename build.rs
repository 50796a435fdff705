//! Records the git commit the binary is built from, for `/__version__`.

use std::process::Command;

fn main() {
    let commit = std::env::var("SYMDEPOT_COMMIT")
        .ok()
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SYMDEPOT_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=SYMDEPOT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

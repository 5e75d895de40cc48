//! The docker config.json reader (src/outputs/registry/auth.rs `lookup`, which reads
//! `$DOCKER_CONFIG/config.json` and podman's auth.json): any bytes as that file.
//!
//! PATH names an empty directory, so a `credHelpers`/`credsStore` entry names a helper that
//! cannot be found: the lookup must fail with a message, never run anything.

#![no_main]

use base64::Engine;
use cargo_containerize::outputs::registry::auth::{Credential, lookup};
use cargo_containerize_fuzz::{assert_printable, printed};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

const REGISTRIES: [&str; 3] = ["docker.io", "ghcr.io", "127.0.0.1:5000"];
const CANARY: &str = "Canary-5ecret-7a1c";

fn config_file() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty-path");
        std::fs::create_dir(&empty).unwrap();
        // SAFETY: libFuzzer runs the target on this one thread; nothing else reads the
        // environment while it is set.
        unsafe {
            std::env::set_var("DOCKER_CONFIG", dir.path());
            std::env::set_var("HOME", dir.path());
            std::env::set_var("REGISTRY_AUTH_FILE", dir.path().join("no-auth.json"));
            std::env::remove_var("XDG_RUNTIME_DIR");
            std::env::set_var("PATH", &empty);
        }
        let file = dir.path().join("config.json");
        (dir, file)
    })
    .1
}

/// The config with every secret it holds replaced by the canary, so that a secret in a
/// message is seen.
fn with_canary(config: &mut Value) {
    let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) else {
        return;
    };
    for entry in auths.values_mut() {
        let Some(entry) = entry.as_object_mut() else {
            continue;
        };
        let user = match entry.get("username").and_then(Value::as_str) {
            Some(u) if !u.contains(CANARY) => u.to_string(),
            _ => "user".to_string(),
        };
        if entry.contains_key("username") {
            entry.insert("username".into(), Value::from(user.clone()));
        }
        for (key, value) in entry.iter_mut() {
            match key.as_str() {
                "password" | "identitytoken" => *value = Value::from(CANARY),
                "auth" => {
                    *value = Value::from(
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("{user}:{CANARY}")),
                    )
                }
                _ => {}
            }
        }
    }
}

fn check(file: &PathBuf, bytes: &[u8], secrets: bool) {
    std::fs::write(file, bytes).unwrap();
    for registry in REGISTRIES {
        match lookup(registry, std::time::Duration::from_secs(1)) {
            Ok(Credential::Anonymous) => {}
            Ok(c) if secrets => {
                let shown = format!("{c:?} {}", c.describe());
                assert!(!shown.contains(CANARY), "a secret shows: {shown}");
            }
            Ok(_) => {}
            Err(e) => {
                let msg = printed(&e);
                assert_printable("lookup", &msg);
                if secrets {
                    assert!(!msg.contains(CANARY), "a secret is in the message: {msg}");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let file = config_file();
    check(file, data, false);
    if let Ok(mut config) = serde_json::from_slice::<Value>(data) {
        with_canary(&mut config);
        check(file, &serde_json::to_vec(&config).unwrap(), true);
    }
});

//! The helper crates through which the builder compiles C libraries for the target (a static
//! OpenSSL, mimalloc): a tiny Cargo project the tool writes into its cache, whose only
//! dependency is the crate that ships the C sources, built with cargo so `--offline`, mirrors
//! and source replacement apply as to the user's own dependencies. [`Scaffold`] describes one;
//! [`Scaffold::write`] writes it (under its lock), [`HelperCrate::resolve`] makes its
//! `Cargo.lock` and [`HelperCrate::build`] runs cargo on it for the target.

use super::cc::CCompiler;
use crate::metadata::Project;
use crate::util::atomic;
use crate::util::digest::Digest;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One helper crate: what it builds and the one dependency that builds it.
pub struct Scaffold<'a> {
    /// What it builds, as messages name it: "OpenSSL", "mimalloc".
    pub what: &'a str,
    /// The package's name after `cargo-containerize-`.
    pub name: &'a str,
    /// The manifest's first line after `Written by cargo-containerize: `.
    pub purpose: &'a str,
    /// The manifest's table for the dependency: `dependencies` or `build-dependencies`.
    pub table: &'a str,
    /// The dependency's line in that table (`openssl-src = { version = … }`).
    pub dependency: &'a str,
    /// Its build script, if it has one.
    pub build_rs: Option<&'a str>,
}

/// A helper crate written under the cache, with its lock held (a bounded wait) for as long as
/// this value lives: its files, lock file and target directory are in use.
pub struct HelperCrate {
    pub dir: PathBuf,
    /// What it builds, as messages name it.
    what: String,
    _lock: atomic::DirLock,
}

impl Scaffold<'_> {
    /// The helper's `Cargo.toml`.
    pub fn manifest(&self) -> String {
        format!(
            "# Written by cargo-containerize: {}\n\
             [package]\nname = \"cargo-containerize-{}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\nbuild = {}\n\n\
             [lib]\npath = \"lib.rs\"\n\n[workspace]\n\n\
             [{}]\n{}\n",
            self.purpose,
            self.name,
            if self.build_rs.is_some() {
                "\"build.rs\""
            } else {
                "false"
            },
            self.table,
            self.dependency
        )
    }

    /// Writes the helper under `root/src` (`root` below the cache at `base`), in the directory
    /// named by the digest of `key` (what makes two helpers different), and holds its lock.
    pub fn write(&self, base: &Path, root: &Path, key: &str, shell: &Shell) -> Result<HelperCrate> {
        let key = Digest::sha256_of(key.as_bytes());
        let short = &key.hex()[..16];
        let src = root.join("src");
        crate::util::owned::make_private_dir(base, &src)?;
        let lock_path = src.join(format!("{short}.lock"));
        let lock = atomic::lock_file(
            &lock_path,
            &format!(
                "the lock on {} held by another cargo-containerize building {}",
                lock_path.display(),
                self.what
            ),
            None,
            shell,
        )?;
        let dir = src.join(short);
        // Cargo runs what is in this directory as the user: none of it may be another user's.
        crate::util::owned::check_private_tree(base, &dir)?;
        super::cached::write_if_changed(&dir.join("Cargo.toml"), &self.manifest())?;
        if let Some(build_rs) = self.build_rs {
            super::cached::write_if_changed(&dir.join("build.rs"), build_rs)?;
        }
        super::cached::write_if_changed(&dir.join("lib.rs"), "")?;
        Ok(HelperCrate {
            dir,
            what: self.what.to_string(),
            _lock: lock,
        })
    }
}

impl HelperCrate {
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("Cargo.lock")
    }

    /// Resolves the helper's dependencies into its `Cargo.lock` (`cargo generate-lockfile`, run
    /// in `cwd` so the user's cargo configuration applies). When cargo fails, the error is
    /// `failed(first error line of cargo's)`.
    pub fn resolve(
        &self,
        cwd: &Path,
        offline: bool,
        failed: impl FnOnce(&str) -> anyhow::Error,
    ) -> Result<()> {
        let mut cmd = Command::new(super::cargo());
        cmd.arg("generate-lockfile")
            .arg("--manifest-path")
            .arg(self.dir.join("Cargo.toml"))
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if offline {
            cmd.arg("--offline");
        }
        let out = cmd.output().context("running cargo generate-lockfile")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("cargo failed")
                .trim_start_matches("error: ");
            return Err(failed(first));
        }
        Ok(())
    }

    /// Builds the helper for `triple` with `cc` (`--release --locked`, its own target
    /// directory, in the project's directory), after `configure` adds what this helper needs
    /// (arguments, variables). cargo's stderr goes through the shell unless it is quiet (then
    /// only on failure). A failed build is an error saying `building <label> failed`, with a full
    /// disk named as such, else pointing at cargo's errors and then at `remedy`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        project: &Project,
        triple: &str,
        cc: &CCompiler,
        offline: bool,
        shell: &Shell,
        configure: impl FnOnce(&mut Command),
        (label, remedy): (&str, &str),
    ) -> Result<Output> {
        let mut cmd = Command::new(super::cargo());
        cmd.arg(if cc.zig { "zigbuild" } else { "build" })
            .args(["--release", "--locked", "--target", triple])
            .arg("--manifest-path")
            .arg(self.dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(self.dir.join("target"))
            .current_dir(&project.package_root);
        if offline {
            cmd.arg("--offline");
        }
        for (k, v) in &cc.env {
            cmd.env(k, v);
        }
        configure(&mut cmd);
        let output = super::helper_output(&mut cmd, shell)
            .with_context(|| format!("running cargo to build {}; is cargo on PATH?", self.what))?;
        if !output.status.success() {
            if shell.is_quiet() {
                shell.passthrough(&output.stderr);
            }
            if let Some(full) = crate::memo::base().and_then(|b| super::cached::disk_full_note(&b))
            {
                bail!("building {label} failed: {full}");
            }
            bail!(
                "building {label} failed (cargo's errors are above); fix what they name, or {remedy}"
            );
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_a_package_outside_any_workspace_with_one_dependency() {
        let with_script = Scaffold {
            what: "OpenSSL",
            name: "openssl",
            purpose: "builds a static OpenSSL with openssl-src.",
            table: "build-dependencies",
            dependency: "openssl-src = { version = \"^300\", features = [] }",
            build_rs: Some("fn main() {}"),
        };
        let m: toml_edit::DocumentMut = with_script.manifest().parse().unwrap();
        assert_eq!(
            m["package"]["name"].as_str(),
            Some("cargo-containerize-openssl")
        );
        assert_eq!(m["package"]["build"].as_str(), Some("build.rs"));
        assert!(m["workspace"].is_table(), "its own workspace");
        assert_eq!(
            m["build-dependencies"]["openssl-src"]["version"].as_str(),
            Some("^300")
        );
        let without = Scaffold {
            build_rs: None,
            ..with_script
        };
        let m: toml_edit::DocumentMut = without.manifest().parse().unwrap();
        assert_eq!(m["package"]["build"].as_bool(), Some(false));
    }

    #[test]
    fn a_helper_is_written_once_per_key_under_its_lock() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("h");
        crate::util::owned::make_private_dir(base.path(), &root).unwrap();
        let scaffold = Scaffold {
            what: "mimalloc",
            name: "mimalloc",
            purpose: "test.",
            table: "dependencies",
            dependency: "x = \"1\"",
            build_rs: None,
        };
        let dir = {
            let h = scaffold
                .write(base.path(), &root, "key 1", &Shell::discard())
                .unwrap();
            assert_eq!(
                std::fs::read_to_string(h.dir.join("Cargo.toml")).unwrap(),
                scaffold.manifest()
            );
            assert!(h.dir.join("lib.rs").is_file() && !h.dir.join("build.rs").exists());
            h.dir.clone()
        };
        let again = scaffold
            .write(base.path(), &root, "key 1", &Shell::discard())
            .unwrap();
        assert_eq!(again.dir, dir, "the same key, the same directory");
        let other = scaffold
            .write(base.path(), &root, "key 2", &Shell::discard())
            .unwrap();
        assert_ne!(other.dir, dir);
    }
}

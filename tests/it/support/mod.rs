//! Harness of the registry tests: a real distribution registry (`docker-registry`, 2.8) on a
//! free loopback port, optionally with TLS and htpasswd auth; a fault-injecting HTTP proxy to
//! put in front of it; a token server; podman in a sandbox configured through environment
//! variables only, so that the tool's own `podman load` uses the same private storage as the
//! test; and the base images of tests/it/base_images.rs, made locally from Debian packages.

pub mod bases;
pub mod docker;
pub mod podman;
pub mod proxy;
pub mod registry;
pub mod token;

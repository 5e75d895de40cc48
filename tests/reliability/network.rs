//! Reliability: network.

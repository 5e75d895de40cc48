//! Reliability: layout.

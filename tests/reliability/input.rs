//! Reliability: input.

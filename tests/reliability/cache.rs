//! Reliability: cached blobs are proven to match their digests before they are reused.

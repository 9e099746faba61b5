//! engine-api's integration tests, one binary.

mod ws;

//! Shared test kit for diffkeeper's integration tests.

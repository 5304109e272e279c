//! Shared test kit for diffkeeper's integration tests: one module per concern.

pub mod btf;
pub mod btf_edit;
pub mod doc_flags;
pub mod doc_links;
pub mod filesystems;
pub mod http;
pub mod mirror;
pub mod mountns;
pub mod pki;
pub mod recorder;
pub mod replay;
pub mod scenario;
pub mod scratch;
pub mod sidecar;
pub mod store_log;
pub mod storm;
pub mod tarball;

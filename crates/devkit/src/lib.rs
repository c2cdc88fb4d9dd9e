//! The demo and the throwaway PostgreSQL cluster: what `oppty-router demo` and the tests run on.
//!
//! Owns starting a cluster from the system's binaries (and, for the demo on a machine with only
//! Rust, installing them), and the demo's story. The daemon's library never depends on this crate,
//! so no daemon path can reach initdb, chown or the demo's clock games; the binary calls it for
//! `demo` only.

pub mod demo;
pub mod throwaway;

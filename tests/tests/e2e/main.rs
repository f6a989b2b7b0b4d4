//! End-to-end suites: the real server on loopback (port 0) over a
//! temporary SQLite file, driven over real HTTP by the core device client
//! and by raw requests. One test binary: each extra binary is a slow link.
//!
//! With `COUNTERSIGN_TEST_BACKEND=postgres` the same suites run over
//! PostgreSQL: a throwaway cluster started once for the binary, a fresh
//! database per server (see `support::config`).

mod support;

mod admin;
mod authentication;
mod callbacks;
mod challenges;
mod codes;
mod delivery;
mod enrolment;
mod key_rotation;
mod malformed;
mod metrics;
mod openapi;
mod rejections;
mod restart;
mod window;

//! What the server does, independent of how it was asked: each flow is
//! called by an HTTP handler, a background worker or the CLI alike.

pub mod admin;
pub mod authenticate;
pub mod authentication_value;
pub mod callbacks;
pub mod challenges;
pub mod codes;
pub mod device_auth;
pub mod devices;
pub mod enrolment;
pub mod rekey;

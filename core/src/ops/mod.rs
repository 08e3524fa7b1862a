//! Operators and auth: what operators send and who they are.
//!
//! - [`admin`] parses the admin API's requests;
//! - [`operators`] holds the operators and their tokens' scopes;
//! - [`session`] signs the operator console's session cookie; [`credential`] binds it to
//!   what it was started with; [`revocation`] ends it on the server;
//! - [`access`] verifies Cloudflare Access tokens (feature `access`);
//! - [`authz`] says what every operations request needs (scope, console-page check, CSRF
//!   token, an existing bundle); [`body`] reads request bodies with a cap;
//! - [`publish`] names what a publish writes besides its files (manifest, claim) and why
//!   one is refused.

#[cfg(feature = "access")]
pub mod access;
pub mod admin;
pub mod authz;
pub mod body;
pub mod credential;
pub mod operators;
pub mod publish;
pub mod revocation;
pub mod session;

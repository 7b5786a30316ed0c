//! The pull ledger (docs/ledger.md): `registry-cleanup ledger serve`
//! receives the registry's notifications and records who pulled which
//! image when; `run`/`inventory --ledger URL` read it back for rules with
//! `unpulled_for`. May import `wire` and `domain` only.
//!
//! - `events`: the registry's notification envelope, read and filtered;
//! - `store`: what is kept, and the [`store::Store`] trait, with `sqlite`
//!   (embedded, the default) and `postgres` (shared by replicas);
//! - `server`: the HTTP service (`POST /events`, `GET …/pulls`, `/healthz`);
//! - `client`: what `--ledger` asks, and [`client::read_pulls`].

pub mod client;
pub mod events;
pub mod postgres;
pub mod server;
pub mod sqlite;
pub mod store;

//! The container registry's API and its tokens (`/jwt/auth`): manifests,
//! tag lists, `/gitlab/v1`, deletes, capabilities. Imports only `wire` and
//! `domain`.

pub mod auth;
pub mod client;

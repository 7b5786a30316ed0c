//! Carrying out a policy: the clients a run shares, listing a repository's
//! tags, the deleter (safe deletes, one outcome per tag), the client engine
//! (list → plan → delete → report) and the server engine (GitLab's bulk
//! API). Imports every layer below `commands`.

pub mod client_engine;
pub mod clients;
pub mod deleter;
pub mod listing;
pub mod record;
pub mod removal;
pub mod restore;
pub mod scope;
pub mod server_engine;
pub mod stop;

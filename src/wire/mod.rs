//! The wire: one HTTP client for both APIs (retries, rate budget, requests
//! in flight), pagination links, redacted secrets, progress lines. Imports
//! only `domain`.

pub mod http;
pub mod links;
pub mod progress;
pub mod secret;
pub mod throttle;
pub mod urls;

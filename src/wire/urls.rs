//! Building request URLs: paths joined under a base that may have a prefix
//! of its own (GitLab under `/gitlab`), and segments percent-encoded.

use url::Url;

/// `base` + `path`, keeping any path prefix of `base` (GitLab under /gitlab).
pub fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// One path segment, percent-encoded (tag names from a server are not trusted).
pub fn encode_segment(segment: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b':');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

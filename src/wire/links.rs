//! `Link` headers (RFC 8288) as GitLab and the registry send them for paging.

use std::collections::HashSet;

use url::Url;

use crate::wire::http::{HttpError, HttpResponse};

/// Pages we follow at most for one listing (100 per page: 10 million records).
pub const MAX_PAGES: usize = 100_000;

/// Every `<target>; rel="…"` of a `Link` header, as (target, rels).
pub fn parse_link_header(header: &str) -> Option<Vec<(String, Vec<String>)>> {
    let mut links = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.strip_prefix('<')?;
        let end = rest.find('>')?;
        let target = rest[..end].trim().to_string();
        rest = &rest[end + 1..];
        let mut rels = Vec::new();
        // Parameters up to the next link (a ',' outside quotes).
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start();
                break;
            }
            if rest.is_empty() {
                break;
            }
            rest = rest.strip_prefix(';')?.trim_start();
            let eq = rest.find('=');
            let stop = rest.find([';', ',']).unwrap_or(rest.len());
            match eq {
                Some(eq) if eq < stop => {
                    let name = rest[..eq].trim().to_ascii_lowercase();
                    let after = rest[eq + 1..].trim_start();
                    let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                        let close = quoted.find('"')?;
                        (&quoted[..close], &quoted[close + 1..])
                    } else {
                        let stop = after.find([';', ',']).unwrap_or(after.len());
                        (after[..stop].trim(), &after[stop..])
                    };
                    if name == "rel" {
                        rels.extend(value.split_whitespace().map(str::to_ascii_lowercase));
                    }
                    rest = remaining;
                }
                _ => {
                    rest = &rest[stop..];
                }
            }
        }
        links.push((target, rels));
    }
    Some(links)
}

/// The `rel="next"` target of `response`'s `Link` header, resolved against
/// `current` (not yet checked: see [`Pager::follow`]).
pub fn next_link(response: &HttpResponse, current: &Url) -> Result<Option<Url>, HttpError> {
    let Some(header) = response.header("link") else {
        return Ok(None);
    };
    let links = parse_link_header(header).ok_or_else(|| {
        response.invalid(format!("unparsable Link header {:?}", truncate(header)))
    })?;
    let Some((target, _)) = links
        .iter()
        .find(|(_, rels)| rels.iter().any(|r| r == "next"))
    else {
        return Ok(None);
    };
    current
        .join(target)
        .map(Some)
        .map_err(|err| response.invalid(format!("Link rel=next {:?}: {err}", truncate(target))))
}

/// Guards one paginated listing. A next page on another origin would get
/// our credentials; a next page already fetched (a cycle, however long) or
/// more than [`MAX_PAGES`] pages would loop for ever. Each is an error, so the
/// listing is incomplete and nothing is deleted on its strength.
#[derive(Debug)]
pub struct Pager {
    seen: HashSet<Url>,
}

impl Pager {
    pub fn new(first: &Url) -> Pager {
        Pager {
            seen: HashSet::from([first.clone()]),
        }
    }

    /// Checks `next`, announced by `response` to the request for `current`.
    pub fn follow(
        &mut self,
        response: &HttpResponse,
        current: &Url,
        next: Url,
    ) -> Result<Url, HttpError> {
        if next.origin() != current.origin() {
            return Err(response.foreign_page(&next));
        }
        if self.seen.len() >= MAX_PAGES {
            return Err(response.invalid(format!("more than {MAX_PAGES} pages")));
        }
        if !self.seen.insert(next.clone()) {
            return Err(response.invalid(format!(
                "the next page {} was already fetched: the server's pagination loops",
                crate::wire::http::display_url(&next)
            )));
        }
        Ok(next)
    }

    /// The checked `rel="next"` page of `response`, if any.
    pub fn next_from_link(
        &mut self,
        response: &HttpResponse,
        current: &Url,
    ) -> Result<Option<Url>, HttpError> {
        match next_link(response, current)? {
            Some(next) => self.follow(response, current, next).map(Some),
            None => Ok(None),
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gitlab_link_headers() {
        let header = r#"<https://gitlab.example.com/api/v4/projects/8/registry/repositories/2/tags?page=2&per_page=20>; rel="next", <https://gitlab.example.com/api/v4/projects/8/registry/repositories/2/tags?page=1&per_page=20>; rel="first", <https://h/x?a=1,2>; rel="last""#;
        let links = parse_link_header(header).expect("parses");
        assert_eq!(links.len(), 3);
        assert!(links[0].0.ends_with("page=2&per_page=20"));
        assert_eq!(links[0].1, vec!["next"]);
        assert_eq!(links[2].0, "https://h/x?a=1,2");
    }

    #[test]
    fn parses_registry_style_and_odd_spacing() {
        let links =
            parse_link_header(r#"</v2/g/p/tags/list?last=b&n=2>;rel=next"#).expect("parses");
        assert_eq!(
            links,
            vec![(
                "/v2/g/p/tags/list?last=b&n=2".to_string(),
                vec!["next".to_string()]
            )]
        );
        let links = parse_link_header(r#"<a>; title="x, y"; rel="prev next""#).expect("parses");
        assert_eq!(links[0].1, vec!["prev", "next"]);
        let links = parse_link_header(r#"<a>; foo; rel="next""#).expect("parses");
        assert_eq!(links[0].1, vec!["next"]);
    }

    fn response(link: &str) -> HttpResponse {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "link",
            reqwest::header::HeaderValue::from_str(link).expect("header"),
        );
        HttpResponse {
            method: reqwest::Method::GET,
            url: Url::parse("https://gitlab.example.com/api/v4/x").expect("url"),
            status: reqwest::StatusCode::OK,
            headers,
            body: bytes::Bytes::new(),
            attempts: 1,
            earlier_attempt_may_have_applied: false,
        }
    }

    #[test]
    fn pager_follows_same_origin_pages_once() {
        let first = Url::parse("https://gitlab.example.com/api/v4/x?page=1").expect("url");
        let mut pager = Pager::new(&first);
        let second = pager
            .next_from_link(&response(r#"</api/v4/x?page=2>; rel="next""#), &first)
            .expect("valid")
            .expect("a next page");
        assert_eq!(
            second.as_str(),
            "https://gitlab.example.com/api/v4/x?page=2"
        );
        // Back to page 1: a cycle.
        let error = pager
            .next_from_link(&response(r#"</api/v4/x?page=1>; rel="next""#), &second)
            .expect_err("a loop");
        assert!(error.to_string().contains("already fetched"), "{error}");
        // The current page again.
        let error = Pager::new(&first)
            .next_from_link(&response(r#"</api/v4/x?page=1>; rel="next""#), &first)
            .expect_err("self link");
        assert!(error.to_string().contains("already fetched"), "{error}");
        for elsewhere in [
            r#"<https://evil.example.com/api/v4/x?page=2>; rel="next""#,
            r#"<//evil.example.com/x>; rel="next""#,
            r#"<http://gitlab.example.com/api/v4/x?page=2>; rel="next""#,
        ] {
            let error = Pager::new(&first)
                .next_from_link(&response(elsewhere), &first)
                .expect_err(elsewhere);
            assert!(
                matches!(error, HttpError::ForeignPage { .. }),
                "a variant, not a message: {error:?}"
            );
            assert!(error.to_string().contains("another origin"), "{error}");
        }
        assert_eq!(
            Pager::new(&first)
                .next_from_link(&response(r#"</api/v4/x?page=1>; rel="prev""#), &first)
                .expect("no next"),
            None
        );
    }

    #[test]
    fn rejects_garbage() {
        for header in [
            "no brackets",
            "<unterminated",
            r#"<a>; rel="next"#,
            "<a> junk",
        ] {
            assert!(parse_link_header(header).is_none(), "{header:?}");
        }
    }
}

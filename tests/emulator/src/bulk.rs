//! GitLab's bulk tag delete (`DELETE /projects/:id/registry/repositories/:rid/tags`):
//! parameter validation as Grape does it and the selection
//! `Projects::ContainerRepository::CleanupTagsService` makes.

use chrono::{DateTime, Utc};
use regex::Regex;

/// The validated parameters of one call.
#[derive(Debug)]
pub(crate) struct BulkParams {
    delete: String,
    keep: Option<String>,
    keep_n: Option<i64>,
    older_than: Option<String>,
}

/// One tag as the cleanup service sees it.
pub(crate) struct Candidate<'a> {
    pub name: &'a str,
    pub created_at: Option<DateTime<Utc>>,
    pub protected: bool,
}

/// Validates like the Grape `params` block: `name_regex_delete` or its alias
/// `name_regex` required, every regex must compile, `keep_n` must be an integer.
/// The error is the `{"error": …}` message (problems joined by ", ").
pub(crate) fn validate(params: &[(String, String)]) -> Result<BulkParams, String> {
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let mut errors = Vec::new();
    for name in ["name_regex_delete", "name_regex", "name_regex_keep"] {
        if let Some(value) = get(name) {
            if let Err(err) = Regex::new(&value) {
                errors.push(format!(
                    "{name} is an invalid regexp: {}",
                    one_line(&err.to_string())
                ));
            }
        }
    }
    let keep_n = match get("keep_n") {
        None => None,
        Some(value) => match value.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push("keep_n is invalid".to_string());
                None
            }
        },
    };
    let delete = get("name_regex_delete").or_else(|| get("name_regex"));
    if delete.is_none() {
        errors.push(
            "name_regex, name_regex_delete are missing, at least one parameter must be provided"
                .to_string(),
        );
    }
    if !errors.is_empty() {
        return Err(errors.join(", "));
    }
    Ok(BulkParams {
        delete: delete.unwrap_or_default(),
        keep: get("name_regex_keep"),
        keep_n,
        older_than: get("older_than"),
    })
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The tags GitLab's worker deletes, given the repository's tags and `now`.
///
/// The regexes are compiled exactly as GitLab builds them, `\A` + regex + `\z`,
/// so a top-level `a|b` becomes `\Aa|b\z` (`a` anchored at the start only, `b` at
/// the end only). `latest` and protected tags are never deleted; `keep_n` keeps
/// the newest N candidates (undated = newest; ties by name); `older_than` only
/// deletes tags with a known date older than `now - older_than`. An unparsable
/// `older_than` makes the (asynchronous) worker fail: nothing is deleted.
pub(crate) fn select(
    params: &BulkParams,
    tags: &[Candidate<'_>],
    now: DateTime<Utc>,
) -> Vec<String> {
    let anchored = |regex: &str| Regex::new(&format!("\\A{regex}\\z")).ok();
    let Some(delete) = anchored(&params.delete) else {
        return vec![];
    };
    let keep = anchored(params.keep.as_deref().unwrap_or(""));
    let mut candidates: Vec<&Candidate<'_>> = tags
        .iter()
        .filter(|tag| tag.name != "latest" && !tag.protected)
        .filter(|tag| delete.is_match(tag.name))
        .filter(|tag| !keep.as_ref().is_some_and(|keep| keep.is_match(tag.name)))
        .collect();
    if let Some(keep_n) = params.keep_n {
        candidates.sort_by(|a, b| {
            let key = |tag: &Candidate<'_>| tag.created_at.unwrap_or(now);
            key(b).cmp(&key(a)).then_with(|| a.name.cmp(b.name))
        });
        let keep_n = usize::try_from(keep_n.max(0)).unwrap_or(usize::MAX);
        candidates = candidates.into_iter().skip(keep_n).collect();
    }
    if let Some(older_than) = &params.older_than {
        let Some(seconds) = parse_chronic_duration(older_than) else {
            return vec![];
        };
        let cutoff = now - chrono::Duration::milliseconds((seconds * 1000.0) as i64);
        candidates.retain(|tag| tag.created_at.is_some_and(|at| at < cutoff));
    }
    candidates.iter().map(|tag| tag.name.to_string()).collect()
}

/// Seconds in a duration as Ruby's `ChronicDuration.parse` reads it: numbers with
/// optional units, summed (`1h`, `2d`, `1month`, `90d`, `3600s`, `30m`, `1d 2h`,
/// a bare `3600`). `m` is minutes, `mo`/`month` 30 days, `y`/`year` 365.25 days.
/// `None` where ChronicDuration gives nil.
pub fn parse_chronic_duration(text: &str) -> Option<f64> {
    let text = text.trim().to_ascii_lowercase();
    let mut total = 0.0;
    let mut seen = false;
    let mut rest = text.as_str();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if let Some(after) = rest.strip_prefix("and ") {
            rest = after;
            continue;
        }
        if rest.is_empty() {
            break;
        }
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor = match unit {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "wk" | "wks" | "week" | "weeks" => 604_800.0,
            "mo" | "mos" | "month" | "months" => 2_592_000.0,
            "y" | "yr" | "yrs" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += number * factor;
        seen = true;
    }
    seen.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn chronic_durations() {
        let cases = [
            ("1h", Some(3600.0)),
            ("2d", Some(172_800.0)),
            ("7d", Some(604_800.0)),
            ("1month", Some(2_592_000.0)),
            ("90d", Some(7_776_000.0)),
            ("3600s", Some(3600.0)),
            ("30m", Some(1800.0)),
            ("1d 2h", Some(93_600.0)),
            ("2w3d", Some(1_468_800.0)),
            ("3600", Some(3600.0)),
            ("1 day", Some(86_400.0)),
            ("soon", None),
            ("", None),
            ("5 fortnights", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_chronic_duration(text), expected, "{text:?}");
        }
    }

    #[test]
    fn validation_messages_are_gitlabs() {
        assert_eq!(
            validate(&params(&[("keep_n", "1")])).unwrap_err(),
            "name_regex, name_regex_delete are missing, at least one parameter must be provided"
        );
        let err = validate(&params(&[("name_regex_delete", "(")])).unwrap_err();
        assert!(
            err.starts_with("name_regex_delete is an invalid regexp: "),
            "{err}"
        );
        let err = validate(&params(&[("name_regex", ".*"), ("keep_n", "x")])).unwrap_err();
        assert_eq!(err, "keep_n is invalid");
        assert!(validate(&params(&[("name_regex", ".*")])).is_ok());
    }

    #[test]
    fn top_level_alternation_anchors_badly() {
        let p = validate(&params(&[("name_regex_delete", "mr-1|mr-2")])).expect("valid");
        let names = ["mr-1", "mr-2", "mr-1-x", "x-mr-2", "mr-10"];
        let tags: Vec<Candidate<'_>> = names
            .iter()
            .map(|name| Candidate {
                name,
                created_at: None,
                protected: false,
            })
            .collect();
        let deleted = select(&p, &tags, Utc::now());
        // \Amr-1|mr-2\z: "mr-1…" prefix or "…mr-2" suffix.
        assert_eq!(deleted, vec!["mr-1", "mr-2", "mr-1-x", "x-mr-2", "mr-10"]);
        let p = validate(&params(&[("name_regex_delete", "(?:mr-1|mr-2)")])).expect("valid");
        assert_eq!(select(&p, &tags, Utc::now()), vec!["mr-1", "mr-2"]);
    }
}

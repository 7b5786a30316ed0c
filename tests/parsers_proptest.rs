//! Property tests for every parser that reads text from a user or a server:
//! none may panic or hang on any input, and well-formed input round-trips.
//!
//! Bounded for CI: 256 cases per property (`PROPTEST_CASES` does not raise
//! it), short inputs, a few seconds in all.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use registry_cleanup::domain::names::{RepositoryPath, TagName};
use registry_cleanup::domain::policy::{parse_duration, Policy};
use registry_cleanup::registry::auth::{decode_claims, parse_challenge, Claims};
use registry_cleanup::wire::http::server_delay;
use registry_cleanup::wire::links::parse_link_header;
use registry_cleanup::wire::urls::encode_segment;
use registry_cleanup::wire::urls::join_path;
use reqwest::header::{HeaderMap, HeaderValue};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const UNITS: &[(&str, u64)] = &[
    ("s", 1),
    ("min", 60),
    ("mins", 60),
    ("minute", 60),
    ("minutes", 60),
    ("h", 3_600),
    ("d", 86_400),
    ("w", 604_800),
    ("month", 2_592_000),
    ("months", 2_592_000),
    ("y", 31_536_000),
    ("year", 31_536_000),
    ("years", 31_536_000),
];

/// Text that looks like YAML: keys the policy knows, indentation, flow
/// syntax, anchors, quotes, numbers and the odd stray byte.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("rules:".to_string()),
        Just("protect:".to_string()),
        Just("protect_latest:".to_string()),
        Just("version:".to_string()),
        Just("  - ".to_string()),
        Just("    delete: ".to_string()),
        Just("    keep: ".to_string()),
        Just("    keep_n: ".to_string()),
        Just("    older_than: ".to_string()),
        Just("    repositories: ".to_string()),
        Just("    name: ".to_string()),
        Just("\n".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!!str ".to_string()),
        Just("---\n".to_string()),
        Just("\"mr-\\\\d+\"".to_string()),
        Just("'.*'".to_string()),
        Just("(".to_string()),
        Just("~".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        "-?[0-9]{1,25}".prop_map(|s| s),
        "[0-9]{1,4}(s|m|min|h|d|w|month|y)".prop_map(|s| s),
        "[a-z_]{1,8}".prop_map(|s| s),
        "\\PC{0,4}".prop_map(|s| s),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations_never_panic(text in "\\PC{0,30}") {
        let _ = parse_duration(&text);
    }

    #[test]
    fn durations_add_up(parts in proptest::collection::vec((0u64..100_000, 0..UNITS.len()), 1..6)) {
        let text: String = parts.iter().map(|(n, unit)| format!("{n}{}", UNITS[*unit].0)).collect();
        let expected: u64 = parts.iter().map(|(n, unit)| n * UNITS[*unit].1).sum();
        let parsed = parse_duration(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.seconds, expected);
        prop_assert_eq!(parsed.source, text);
    }

    #[test]
    fn huge_durations_are_refused_not_wrapped(n in "[1-9][0-9]{19,40}", unit in 0..UNITS.len()) {
        let text = format!("{n}{}", UNITS[unit].0);
        prop_assert!(parse_duration(&text).is_err(), "{} parsed", text);
    }

    #[test]
    fn policies_never_panic(text in yamlish()) {
        match Policy::parse(&text, "p.yml") {
            Ok(policy) => prop_assert!(!policy.rules.is_empty()),
            Err(err) => {
                let message = err.to_string();
                prop_assert!(message.starts_with("p.yml"), "{}", message);
            }
        }
    }

    #[test]
    fn policies_of_arbitrary_text_never_panic(text in "\\PC{0,200}") {
        let _ = Policy::parse(&text, "p.yml");
    }

    #[test]
    fn link_headers_never_panic(text in "[<>;,=\" a-z/:?&.\\PC]{0,80}") {
        let _ = parse_link_header(&text);
    }

    #[test]
    fn link_headers_round_trip(
        links in proptest::collection::vec(
            ("[a-zA-Z0-9/:?&=._~%-]{0,40}", proptest::collection::vec("[a-z]{1,6}", 1..3)),
            1..5,
        ),
        spaced in any::<bool>(),
    ) {
        let (separator, semicolon) = if spaced { (", ", "; ") } else { (",", ";") };
        let header = links
            .iter()
            .map(|(target, rels)| format!("<{target}>{semicolon}rel=\"{}\"", rels.join(" ")))
            .collect::<Vec<_>>()
            .join(separator);
        let parsed = parse_link_header(&header).ok_or_else(|| TestCaseError::fail(format!("{header:?} did not parse")))?;
        let expected: Vec<(String, Vec<String>)> = links.clone();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn challenges_never_panic(text in "[A-Za-z =,\"\\\\]{0,20}\\PC{0,40}") {
        let _ = parse_challenge(&text);
    }

    #[test]
    fn challenges_round_trip(
        scheme in "[A-Za-z][A-Za-z0-9-]{0,10}",
        params in proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9_]{0,10}", "[ -~]{0,30}", any::<bool>()), 0..5),
    ) {
        let rendered: Vec<String> = params
            .iter()
            .map(|(key, value, quoted)| {
                let plain = !value.is_empty()
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || "-._:/".contains(c));
                if *quoted || !plain {
                    format!("{key}=\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
                } else {
                    format!("{key}={value}")
                }
            })
            .collect();
        let header = if rendered.is_empty() { scheme.clone() } else { format!("{scheme} {}", rendered.join(", ")) };
        let challenge = parse_challenge(&header).ok_or_else(|| TestCaseError::fail(format!("{header:?} did not parse")))?;
        prop_assert_eq!(&challenge.scheme, &scheme);
        let expected: Vec<(String, String)> =
            params.iter().map(|(k, v, _)| (k.to_ascii_lowercase(), v.clone())).collect();
        prop_assert_eq!(challenge.params, expected);
    }

    #[test]
    fn jwt_claims_never_panic(payload in "\\PC{0,80}", exp in any::<i64>(), iat in proptest::option::of(any::<i64>())) {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let _ = decode_claims(&format!("a.{}.c", engine.encode(&payload)));
        let _ = decode_claims(&payload);
        let json = format!("{{\"exp\":{exp},\"iat\":{},\"access\":[]}}", iat.map_or("null".to_string(), |i| i.to_string()));
        let claims = decode_claims(&format!("a.{}.c", engine.encode(json))).unwrap_or_default();
        let _ = claims.refresh_at();
        let _ = Claims { exp: Some(exp), iat, access: vec![] }.refresh_at();
    }

    #[test]
    fn a_token_is_refreshed_before_it_expires(iat in 1_000_000_000i64..3_000_000_000, lifetime in 1i64..100_000) {
        let claims = Claims { exp: Some(iat + lifetime), iat: Some(iat), access: vec![] };
        let at = claims.refresh_at().ok_or_else(|| TestCaseError::fail("no refresh time"))?;
        let exp = SystemTime::UNIX_EPOCH + Duration::from_secs((iat + lifetime) as u64);
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(iat as u64);
        prop_assert!(at < exp);
        prop_assert!(at >= issued);
        prop_assert!(exp.duration_since(at).unwrap_or_default() <= Duration::from_secs(30));
    }

    #[test]
    fn retry_headers_never_panic(
        retry_after in prop_oneof!["\\PC{0,30}", any::<u64>().prop_map(|n| n.to_string())],
        reset in prop_oneof!["[0-9]{0,30}", any::<u64>().prop_map(|n| n.to_string())],
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&retry_after) {
            headers.insert("retry-after", value);
        }
        if let Ok(value) = HeaderValue::from_str(&reset) {
            headers.insert("ratelimit-reset", value);
        }
        let _ = server_delay(&headers, SystemTime::now());
    }

    #[test]
    // Every generated name is valid (the OCI grammar, dots and dashes
    // weighted up so `..`-like names come often): each case reaches the
    // assertion, where arbitrary text was valid in 2 % of cases.
    fn valid_tag_names_stay_one_path_segment(
        name in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}|[a-z0-9_][.-]{1,6}[a-z0-9._-]{0,8}"
    ) {
        prop_assert!(TagName::parse(&name).is_ok(), "{name} is a valid tag name");
        let base = url::Url::parse("https://registry.example.com").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let encoded = encode_segment(&name);
        let url = join_path(&base, &format!("v2/group/project/manifests/{encoded}"));
        prop_assert_eq!(url.path(), format!("/v2/group/project/manifests/{encoded}"));
        let last = url.path_segments().and_then(|mut segments| segments.next_back()).map(str::to_string);
        prop_assert_eq!(last.as_deref(), Some(name.as_str()), "the name is the last segment, unchanged");
    }

    #[test]
    fn valid_repository_paths_keep_their_segments(path in "[a-z0-9._/-]{0,30}") {
        if RepositoryPath::parse(&path).is_ok() {
            let base = url::Url::parse("https://registry.example.com").map_err(|e| TestCaseError::fail(e.to_string()))?;
            let url = join_path(&base, &format!("v2/{path}/tags/list"));
            prop_assert_eq!(url.path(), format!("/v2/{path}/tags/list"));
        }
    }
}

//! Optional UTC times in JSON, as chrono's serde support reads and writes
//! them, byte for byte, with a fast path for the one form listings and
//! reports use nearly always: `2026-07-25T03:28:12Z`. An inventory and its
//! report hold a time or two per tag; chrono's general RFC 3339 parser and
//! its `Display`-based writer were a fifth of `plan`'s time on 100,000 tags.
//! Any other form (fractions, offsets, lower case, years past 9999, leap
//! seconds) goes through chrono itself, so results and errors are chrono's.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// `#[serde(serialize_with)]` for an `Option<DateTime<Utc>>`.
pub fn serialize<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        None => serializer.serialize_none(),
        Some(time) => match format_seconds(time) {
            Some(text) => serializer
                .serialize_some(std::str::from_utf8(&text).expect("ASCII digits and separators")),
            None => serializer.serialize_some(time),
        },
    }
}

/// `#[serde(deserialize_with)]` for an `Option<DateTime<Utc>>`.
pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    deserializer.deserialize_option(OptionalTime)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as chrono writes a whole-second time of the
/// years 0 to 9999; `None` for any other time.
fn format_seconds(time: &DateTime<Utc>) -> Option<[u8; 20]> {
    let year = u32::try_from(time.year())
        .ok()
        .filter(|year| *year <= 9999)?;
    if time.nanosecond() != 0 {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, value: u32, width: usize| {
        let mut value = value;
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year, 4);
    put(5, time.month(), 2);
    put(8, time.day(), 2);
    put(11, time.hour(), 2);
    put(14, time.minute(), 2);
    put(17, time.second(), 2);
    Some(text)
}

/// `YYYY-MM-DDTHH:MM:SSZ` read directly; `None` for anything else,
/// including impossible dates and leap seconds (chrono decides those).
fn parse_seconds(text: &str) -> Option<DateTime<Utc>> {
    let bytes: &[u8; 20] = text.as_bytes().try_into().ok()?;
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'Z'),
    ];
    if separators.iter().any(|&(at, byte)| bytes[at] != byte) {
        return None;
    }
    let number = |from: usize, to: usize| {
        bytes[from..to].iter().try_fold(0u32, |value, byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + u32::from(byte - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)?
        .and_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)
        .map(|time| time.and_utc())
}

struct OptionalTime;

impl<'de> Visitor<'de> for OptionalTime {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(Time).map(Some)
    }
}

struct Time;

impl Visitor<'_> for Time {
    type Value = DateTime<Utc>;

    /// chrono's words, so that errors read the same.
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        match parse_seconds(text) {
            Some(time) => Ok(time),
            None => text
                .parse::<DateTime<FixedOffset>>()
                .map(|time| time.with_timezone(&Utc))
                .map_err(E::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Ours(
        #[serde(serialize_with = "serialize", deserialize_with = "deserialize")]
        Option<DateTime<Utc>>,
    );

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Chronos(Option<DateTime<Utc>>);

    #[test]
    fn reads_and_writes_as_chrono_does() {
        for text in [
            "2026-07-25T03:28:12Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T12:00:00Z",
            "2026-07-25T03:28:12.5Z",
            "2026-07-25T03:28:12.123456789Z",
            "2026-07-25T03:28:12+02:00",
            "2026-07-25t03:28:12z",
            "2026-07-25 03:28:12Z",
            "2016-12-31T23:59:60Z",
            "+10000-01-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-07-25T24:00:00Z",
            "2026-07-25T03:28:1xZ",
            "2026-07-25",
            "",
        ] {
            let json = serde_json::to_string(text).expect("JSON");
            let ours = serde_json::from_str::<Ours>(&json).map_err(|err| err.to_string());
            let theirs = serde_json::from_str::<Chronos>(&json).map_err(|err| err.to_string());
            assert_eq!(
                ours.as_ref().map(|o| o.0),
                theirs.as_ref().map(|t| t.0),
                "{text}"
            );
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                assert_eq!(
                    serde_json::to_string(&ours).expect("JSON"),
                    serde_json::to_string(&theirs).expect("JSON"),
                    "{text}"
                );
            }
        }
        for (seconds, nanos) in [
            (0, 0),
            (-62_167_219_201, 0),
            (1_785_000_000, 5_000_000),
            (1, 7),
        ] {
            let time = DateTime::from_timestamp(seconds, nanos);
            assert_eq!(
                serde_json::to_string(&Ours(time)).expect("JSON"),
                serde_json::to_string(&Chronos(time)).expect("JSON"),
                "{time:?}"
            );
        }
        for json in ["null", "12", "true", "[]"] {
            let ours = serde_json::from_str::<Ours>(json).map_err(|err| err.to_string());
            let theirs = serde_json::from_str::<Chronos>(json).map_err(|err| err.to_string());
            assert_eq!(ours, theirs.map(|t| Ours(t.0)), "{json}");
        }
    }
}

//! The domain: what an application, a chat and a message are, and the rules their fields obey.
//!
//! Validation lives here, once: handlers turn raw input into these types and every layer below
//! trusts them.

pub mod event;

use base64::Engine;
use chrono::{DateTime, SubsecRound, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Longest application name, in characters.
pub const NAME_MAX_CHARS: usize = 255;
/// Longest message body, in bytes (a MySQL `TEXT` holds exactly this much).
pub const BODY_MAX_BYTES: usize = 65_535;

/// The current time, truncated to microseconds so that every store round-trips it unchanged.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// An application's public identifier: 192 random bits from a CSPRNG,
/// base64url without padding (32 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 24];
        // ThreadRng is a ChaCha CSPRNG seeded and periodically reseeded from the OS generator.
        rand::rng().fill_bytes(&mut bytes);
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts what a client sent as a token. Anything that cannot be a token is simply unknown,
    /// so this never fails with a validation error: the caller answers 404.
    pub fn parse(raw: &str) -> Option<Self> {
        let plausible = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        plausible.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Token {
    /// A token read back from our own store or topics: it was validated when it was generated.
    pub fn stored(raw: String) -> Self {
        Self(raw)
    }
}

/// On the topics a token is its string; one that cannot be a token is refused when decoding.
impl Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Token::parse(&raw).ok_or_else(|| serde::de::Error::custom("not a token"))
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chat or message number as it appears in a path: 1, 2, 3 …
/// Anything else (0, negative, past `i64::MAX`, not a number) names no resource.
pub fn parse_number(raw: &str) -> Option<u64> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n >= 1 && *n <= i64::MAX as u64)
}

/// A validated application name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: String) -> Result<Self, ApiError> {
        if raw.trim().is_empty() {
            return Err(ApiError::validation(
                "name must not be empty or only white space",
            ));
        }
        if raw.chars().count() > NAME_MAX_CHARS {
            return Err(ApiError::validation(format!(
                "name must be at most {NAME_MAX_CHARS} characters"
            )));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A validated message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(String);

impl Body {
    pub fn parse(raw: String) -> Result<Self, ApiError> {
        if raw.trim().is_empty() {
            return Err(ApiError::validation(
                "body must not be empty or only white space",
            ));
        }
        if raw.len() > BODY_MAX_BYTES {
            return Err(ApiError::validation(format!(
                "body must be at most {BODY_MAX_BYTES} bytes"
            )));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An application as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Application {
    pub token: String,
    pub name: String,
    pub chats_count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A chat as clients see it. `chat_number` repeats `number` for clients of other implementations.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Chat {
    pub number: u64,
    pub chat_number: u64,
    pub messages_count: u64,
    /// 0 at creation, raised by one by every creation, edit and deletion of one of its messages
    /// (SPEC §6): the position a client resumes the changes feed or a stream from.
    pub revision: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Chat {
    pub fn new(
        number: u64,
        messages_count: u64,
        revision: u64,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        Self {
            number,
            chat_number: number,
            messages_count,
            revision,
            created_at,
            updated_at,
        }
    }
}

/// A message as clients see it. `message_number` repeats `number` for clients of other
/// implementations.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Message {
    pub number: u64,
    pub message_number: u64,
    pub chat_number: u64,
    pub body: String,
    /// The chat's revision at this message's last change.
    pub revision: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Message {
    pub fn new(
        chat_number: u64,
        number: u64,
        body: String,
        revision: u64,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        Self {
            number,
            message_number: number,
            chat_number,
            body,
            revision,
            created_at,
            updated_at,
        }
    }
}

/// What is left of a deleted message in the changes feed and streams: its coordinates, the
/// revision of its deletion, and when. The body is erased.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Tombstone {
    pub number: u64,
    pub message_number: u64,
    pub chat_number: u64,
    pub revision: u64,
    /// Always `true`: what tells a tombstone from a message.
    pub deleted: bool,
    pub deleted_at: DateTime<Utc>,
}

impl Tombstone {
    pub fn new(chat_number: u64, number: u64, revision: u64, deleted_at: DateTime<Utc>) -> Self {
        Self {
            number,
            message_number: number,
            chat_number,
            revision,
            deleted: true,
            deleted_at,
        }
    }
}

/// One entry of the changes feed (SPEC §6): a message in its latest state, or its tombstone.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(untagged)]
pub enum Change {
    Message(Message),
    Deleted(Tombstone),
}

impl Change {
    pub fn revision(&self) -> u64 {
        match self {
            Self::Message(message) => message.revision,
            Self::Deleted(tombstone) => tombstone.revision,
        }
    }

    pub fn number(&self) -> u64 {
        match self {
            Self::Message(message) => message.number,
            Self::Deleted(tombstone) => tombstone.number,
        }
    }
}

/// The changes of a feed page (in revision order) that a reader may take: those below
/// `in_flight`, the lowest revision drawn for a change that has not reached the store yet
/// (`None`: nothing in flight). Where revisions are drawn before the changes are published (the
/// scaled shape), two changes made at once through two API processes can be stored in the
/// opposite order of their revisions: a reader that took the higher one would step over the
/// lower one for good. Returns the page and whether it was cut.
pub fn settled(mut changes: Vec<Change>, in_flight: Option<u64>) -> (Vec<Change>, bool) {
    let Some(in_flight) = in_flight else {
        return (changes, false);
    };
    match changes.iter().position(|c| c.revision() >= in_flight) {
        Some(cut) => {
            changes.truncate(cut);
            (changes, true)
        }
        None => (changes, false),
    }
}

/// Where a page of a list starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Items with a number greater than this (keyset pagination).
    pub after: u64,
    /// Items with a number smaller than this (keyset pagination; `u64::MAX`: no bound).
    pub before: u64,
    /// Latest first: the page is the end of the range, in descending order.
    pub descending: bool,
    /// Items skipped after `after` (only used for `page=` style and for search).
    pub offset: u64,
    pub limit: u32,
}

impl Page {
    /// The first `limit` items after `after`, in ascending order.
    pub const fn first(after: u64, offset: u64, limit: u32) -> Self {
        Self {
            after,
            before: u64::MAX,
            descending: false,
            offset,
            limit,
        }
    }

    /// `before` as a bound a SQL integer can hold.
    pub fn before_i64(&self) -> i64 {
        self.before.min(i64::MAX as u64) as i64
    }
}

/// A search term split into the words that must all occur in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerms {
    words: Vec<String>,
}

impl SearchTerms {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let words: Vec<String> = raw.split_whitespace().map(str::to_owned).collect();
        if words.is_empty() {
            return Err(ApiError::bad_request("the search term must not be empty"));
        }
        if raw.len() > 1024 {
            return Err(ApiError::bad_request(
                "the search term must be at most 1024 bytes",
            ));
        }
        Ok(Self { words })
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// What an index of `min`-character grams can look up, and whether [`Self::matches`] must
    /// then check the candidates: the words of at least `min` characters, except that a word
    /// holding a NUL is looked up by its NUL-free pieces of at least `min` characters (an FTS5
    /// string ends at NUL, so the word itself cannot be a query) and checked exactly.
    pub fn lookups(&self, min: usize) -> (Vec<&str>, bool) {
        let mut lookups = Vec::with_capacity(self.words.len());
        let mut check = false;
        for word in &self.words {
            if word.contains('\0') {
                check = true;
                lookups.extend(
                    word.split('\0')
                        .filter(|piece| piece.chars().count() >= min),
                );
            } else if word.chars().count() >= min {
                lookups.push(word.as_str());
            } else {
                check = true;
            }
        }
        (lookups, check)
    }

    /// Relevance where no search engine ranks: occurrences of the words, damped by the body's
    /// length (a short body that repeats a word ranks above a long one that mentions it once).
    pub fn score(&self, body: &str) -> f64 {
        let folded = fold(body);
        let hits: usize = self
            .words
            .iter()
            .map(|w| folded.matches(&fold(w)).count())
            .sum();
        hits as f64 / (1.0 + (folded.chars().count() as f64).ln())
    }

    /// The case-insensitive substring rule of SPEC §2, applied in Rust (any Unicode).
    pub fn matches(&self, body: &str) -> bool {
        let folded = fold(body);
        self.words.iter().all(|w| folded.contains(&fold(w)))
    }
}

/// Case folding for matching: lower case, Unicode aware.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_unique_and_url_safe() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(Token::parse(a.as_str()).is_some());
    }

    #[test]
    fn numbers_outside_the_range_name_nothing() {
        assert_eq!(parse_number("1"), Some(1));
        for bad in [
            "0",
            "-1",
            "abc",
            "",
            "18446744073709551616",
            "9223372036854775808",
        ] {
            assert_eq!(parse_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_and_bodies_are_validated() {
        assert!(Name::parse("  ".into()).is_err());
        assert!(Name::parse("x".repeat(256)).is_err());
        assert!(Name::parse("é".repeat(255)).is_ok());
        assert!(Body::parse("\n\t".into()).is_err());
        assert!(Body::parse("x".repeat(65_536)).is_err());
        assert!(Body::parse("x".repeat(65_535)).is_ok());
    }

    #[test]
    fn a_feed_page_stops_below_the_lowest_revision_in_flight() {
        let at = now();
        let change =
            |revision| Change::Message(Message::new(1, revision, "b".into(), revision, at, at));
        let revisions =
            |changes: &[Change]| changes.iter().map(Change::revision).collect::<Vec<_>>();
        // 3 is in flight: 4 is stored already, but a reader must not step over 3.
        let (page, cut) = settled(vec![change(1), change(2), change(4)], Some(3));
        assert_eq!((revisions(&page), cut), (vec![1, 2], true));
        // Nothing in flight below the page: all of it.
        let (page, cut) = settled(vec![change(2), change(4), change(5)], Some(9));
        assert_eq!((revisions(&page), cut), (vec![2, 4, 5], false));
        // Revisions assigned in commit order: nothing is ever in flight.
        let (page, cut) = settled(vec![change(7)], None);
        assert_eq!((revisions(&page), cut), (vec![7], false));
    }

    #[test]
    fn search_terms_match_all_words_case_insensitively() {
        let terms = SearchTerms::parse("RROR Mess").unwrap();
        assert!(terms.matches("error on all message"));
        assert!(!terms.matches("error on all"));
        assert!(SearchTerms::parse("  ").is_err());
        let nul = SearchTerms::parse("a\0b hello\0world error").unwrap();
        assert_eq!(nul.lookups(3), (vec!["hello", "world", "error"], true));
        assert!(nul.matches("A\0B and hello\0world, errors"));
        assert!(!nul.matches("a b and hello world, errors"));
        let plain = SearchTerms::parse("error all").unwrap();
        assert_eq!(plain.lookups(3), (vec!["error", "all"], false));
    }
}

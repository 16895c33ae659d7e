//! The scenarios: what each request is, and how its answer is checked.
//!
//! Every number the server hands out (a chat's, a message's) goes into one [`Ledger`] for the
//! whole run, checked as the answers arrive: a number seen twice is a duplicate. A created
//! message must also come back with the body that was sent (a number reused over an older row
//! would answer with the older body). A read of a sampled message must answer the body stored
//! (read from the database after the preload), and every result of a search must contain the
//! term: a wrong answer is an error, not a fast success.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Chats 1..=SPREAD receive the spread writes and the reads.
pub const SPREAD: u64 = 1000;
/// The chat that holds a tenth of the stored messages and is searched.
pub const SEARCH_CHAT: u64 = 1001;
/// The one chat every write of the hot-chat scenario goes to.
pub const HOT_CHAT: u64 = 1002;
/// The history scenarios read pages of this many messages.
pub const PAGE: u64 = 50;
/// Bodies are made of words from a vocabulary this large.
const VOCABULARY: u64 = 2000;
const WORDS_PER_BODY: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// POST a message into one of 1 000 chats, at random.
    CreateSpread,
    /// POST a message, always into the same chat.
    CreateHot,
    /// POST a chat.
    CreateChat,
    /// GET one message by number.
    ReadOne,
    /// GET one page (50) of a chat's messages, at a random `after`.
    ListPage,
    /// GET a search for one word in the search chat.
    Search,
    /// 80 % read one message, 20 % create a message (spread).
    Mixed,
    /// GET the first page (50) of the big chat: `?per_page=50` (the history baseline).
    HistoryFirst,
    /// GET the latest page (50) of the big chat: `?order=desc&per_page=50`.
    HistoryLatest,
    /// GET a deep page (50) of the big chat: `?order=desc&before=B&per_page=50`, `B` drawn
    /// over the middle half of its numbers.
    HistoryDeep,
    /// GET the changes feed near the end of the big chat: `?since=R&per_page=50`, `R` drawn
    /// over the last hundredth of its revisions.
    HistorySince,
    /// DELETE a message, each of a shuffled list once.
    DeleteMessage,
    /// The axum ceiling: the create-message request against a handler that only parses it
    /// and answers a Message-sized 201.
    Ceiling,
    /// The axum GET ceiling: the read-one-message request against a handler that answers a
    /// Message-sized 200.
    CeilingRead,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::CreateSpread => "create message (1000 chats)",
            Kind::CreateHot => "create message (1 hot chat)",
            Kind::CreateChat => "create chat",
            Kind::ReadOne => "read one message",
            Kind::ListPage => "list one page (50)",
            Kind::Search => "search (1 word)",
            Kind::Mixed => "mixed 80% read / 20% write",
            Kind::HistoryFirst => "first page (per_page=50)",
            Kind::HistoryLatest => "latest page (order=desc)",
            Kind::HistoryDeep => "deep page (order=desc, before=)",
            Kind::HistorySince => "feed near the end (since=)",
            Kind::DeleteMessage => "delete message",
            Kind::Ceiling => "axum POST ceiling (parse JSON, 201)",
            Kind::CeilingRead => "axum GET ceiling (200)",
        }
    }
}

/// Stored bodies of a sample of the readable messages: (chat number, message number) → body.
pub type Samples = HashMap<(u64, u64), String>;

/// Which readable messages are in the sample: about one in [`SAMPLE_EVERY`], spread over every
/// chat and number (the preload's own SQL selects the same ones).
pub const SAMPLE_EVERY: u64 = 16;

pub fn sampled(chat: u64, number: u64) -> bool {
    (chat + number).is_multiple_of(SAMPLE_EVERY)
}

/// What the requests refer to: the application, and how many messages each chat holds.
#[derive(Clone, Debug)]
pub struct Plan {
    pub token: String,
    /// Every spread chat holds at least this many messages, numbered from 1.
    pub readable: u64,
    /// The stored bodies a read of a sampled message must answer.
    pub samples: Arc<Samples>,
    /// The big chat of the history scenarios ([`SEARCH_CHAT`]) holds messages 1..=this, each
    /// with its number as revision (only the preload writes it).
    pub history: u64,
    /// The messages the delete scenario deletes, in this order, each once.
    pub doomed: Arc<Doomed>,
}

impl Plan {
    pub fn new(token: String, readable: u64, samples: Samples) -> Self {
        Self {
            token,
            readable,
            samples: Arc::new(samples),
            history: 0,
            doomed: Arc::new(Doomed::default()),
        }
    }

    /// The same, with the big chat holding messages 1..=`messages` (revision = number).
    pub fn with_history(mut self, messages: u64) -> Self {
        self.history = messages;
        self
    }

    /// The same, with the messages to delete.
    pub fn with_doomed(mut self, doomed: Doomed) -> Self {
        self.doomed = Arc::new(doomed);
        self
    }
}

/// Messages to delete, (chat number, message number), each handed out once across every
/// connection; the scenario ends when none is left.
#[derive(Default, Debug)]
pub struct Doomed {
    targets: Vec<(u64, u64)>,
    next: AtomicU64,
}

impl Doomed {
    pub fn new(targets: Vec<(u64, u64)>) -> Self {
        Self {
            targets,
            next: AtomicU64::new(0),
        }
    }

    fn take(&self) -> Option<(u64, u64)> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        self.targets.get(usize::try_from(index).ok()?).copied()
    }

    /// How many were handed out so far.
    pub fn taken(&self) -> usize {
        (self.next.load(Ordering::Relaxed) as usize).min(self.targets.len())
    }

    /// The first `n` handed out (or fewer).
    pub fn first(&self, n: usize) -> &[(u64, u64)] {
        &self.targets[..n.min(self.taken())]
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }
}

/// Every number handed out during the run: (chat number, message number), or (0, chat number).
#[derive(Default)]
pub struct Ledger {
    seen: Mutex<HashSet<(u64, u64)>>,
    messages: AtomicU64,
    chats: AtomicU64,
}

impl Ledger {
    /// Messages created through the API so far (to know how many are stored).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Chats created through the API so far.
    pub fn chats(&self) -> u64 {
        self.chats.load(Ordering::Relaxed)
    }

    /// The messages created through the API in chats `chats` with a number above `above`.
    pub fn created_in(&self, chats: std::ops::RangeInclusive<u64>, above: u64) -> Vec<(u64, u64)> {
        let seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        seen.iter()
            .filter(|&&(chat, number)| chats.contains(&chat) && number > above)
            .copied()
            .collect()
    }

    /// False when the key was already there: a duplicate.
    fn insert(&self, key: (u64, u64)) -> bool {
        let counter = if key.0 == 0 {
            &self.chats
        } else {
            &self.messages
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match self.seen.lock() {
            Ok(mut seen) => seen.insert(key),
            Err(poisoned) => poisoned.into_inner().insert(key),
        }
    }
}

pub enum Check {
    /// Any 2xx.
    Status,
    /// 200 with a message carrying this body (the stored one, from the sample).
    Body(String),
    /// 200 with a list of messages, each containing this term (case-insensitive).
    Contains(String),
    /// 201 with a message carrying this body; its number is recorded.
    Message(String),
    /// 201 with a chat; its number is recorded.
    Chat,
    /// 200 with a page of messages: `PAGE` of them, numbered from `first` one by one, down when
    /// `descending`.
    Page { first: u64, descending: bool },
    /// 204 exactly (a deletion).
    Deleted,
}

pub struct Req {
    pub method: Method,
    pub path: String,
    pub body: Option<String>,
    pub check: Check,
}

pub enum Verdict {
    Ok,
    Error,
    Duplicate,
}

pub struct Generator {
    pub kind: Kind,
    plan: Plan,
    ledger: Arc<Ledger>,
}

#[derive(Deserialize)]
struct Numbered {
    number: u64,
}

#[derive(Deserialize)]
struct Created {
    number: u64,
    chat_number: Option<u64>,
    body: Option<String>,
}

/// A pronounceable pseudo-word: 3 consonant-vowel syllables, distinct for each `i` in range.
pub fn word(i: u64) -> String {
    const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    let mut n = i.wrapping_mul(2654435761) % (70 * 70 * 70);
    let mut out = String::with_capacity(6);
    for _ in 0..3 {
        let syllable = n % 70;
        n /= 70;
        out.push(CONSONANTS[(syllable / 5) as usize] as char);
        out.push(VOWELS[(syllable % 5) as usize] as char);
    }
    out
}

/// A message body of a few random vocabulary words.
pub fn body(rng: &mut impl Rng) -> String {
    let words: Vec<String> = (0..WORDS_PER_BODY)
        .map(|_| word(rng.random_range(0..VOCABULARY)))
        .collect();
    words.join(" ")
}

pub fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

impl Generator {
    pub fn new(kind: Kind, plan: Plan, ledger: Arc<Ledger>) -> Self {
        Self { kind, plan, ledger }
    }

    fn create_message(&self, chat: u64, rng: &mut StdRng) -> Req {
        let text = body(rng);
        Req {
            method: Method::POST,
            path: format!("/applications/{}/chats/{chat}/messages", self.plan.token),
            body: Some(serde_json::json!({ "body": text }).to_string()),
            check: Check::Message(text),
        }
    }

    fn get(&self, path: String) -> Req {
        Req {
            method: Method::GET,
            path,
            body: None,
            check: Check::Status,
        }
    }

    fn read_one(&self, rng: &mut StdRng) -> Req {
        let chat = rng.random_range(1..=SPREAD);
        let number = rng.random_range(1..=self.plan.readable.max(1));
        let mut req = self.get(format!(
            "/applications/{}/chats/{chat}/messages/{number}",
            self.plan.token
        ));
        if let Some(stored) = self.plan.samples.get(&(chat, number)) {
            req.check = Check::Body(stored.clone());
        }
        req
    }

    /// A page of the big chat at `query`; one in [`SAMPLE_EVERY`] is checked in full (50
    /// messages, the first one `first`, consecutive), the others by their status.
    fn history(&self, rng: &mut StdRng, query: String, first: u64, descending: bool) -> Req {
        let mut req = self.get(format!(
            "/applications/{}/chats/{SEARCH_CHAT}/messages?{query}",
            self.plan.token
        ));
        if rng.random_range(0..SAMPLE_EVERY) == 0 {
            req.check = Check::Page { first, descending };
        }
        req
    }

    /// The next request, or `None` when the scenario has run out of work (every message of
    /// the delete scenario deleted).
    pub fn next(&self, rng: &mut StdRng) -> Option<Req> {
        let token = &self.plan.token;
        let n = self.plan.history;
        Some(match self.kind {
            Kind::CreateSpread | Kind::Ceiling => {
                self.create_message(rng.random_range(1..=SPREAD), rng)
            }
            Kind::CreateHot => self.create_message(HOT_CHAT, rng),
            Kind::CreateChat => Req {
                method: Method::POST,
                path: format!("/applications/{token}/chats"),
                body: None,
                check: Check::Chat,
            },
            Kind::ReadOne | Kind::CeilingRead => self.read_one(rng),
            Kind::ListPage => {
                let chat = rng.random_range(1..=SPREAD);
                let after = rng.random_range(0..self.plan.readable.saturating_sub(50).max(1));
                self.get(format!(
                    "/applications/{token}/chats/{chat}/messages?per_page=50&after={after}"
                ))
            }
            Kind::Search => {
                let term = word(rng.random_range(0..VOCABULARY));
                let mut req = self.get(format!(
                    "/applications/{token}/chats/{SEARCH_CHAT}/messages/search?q={term}"
                ));
                req.check = Check::Contains(term);
                req
            }
            Kind::Mixed => {
                if rng.random_range(0..10) < 2 {
                    self.create_message(rng.random_range(1..=SPREAD), rng)
                } else {
                    self.read_one(rng)
                }
            }
            Kind::HistoryFirst => self.history(rng, format!("per_page={PAGE}"), 1, false),
            Kind::HistoryLatest => {
                self.history(rng, format!("order=desc&per_page={PAGE}"), n, true)
            }
            Kind::HistoryDeep => {
                // The middle half of the chat: far from both ends, every page full.
                let before = rng.random_range((n / 4).max(PAGE + 1)..=(3 * n / 4).max(PAGE + 1));
                let query = format!("order=desc&before={before}&per_page={PAGE}");
                self.history(rng, query, before - 1, true)
            }
            Kind::HistorySince => {
                // The last hundredth of the revisions, leaving a full page after each.
                let last = n.saturating_sub(PAGE);
                let since = rng.random_range(last.saturating_sub((n / 100).max(1))..=last);
                let query = format!("since={since}&per_page={PAGE}");
                self.history(rng, query, since + 1, false)
            }
            Kind::DeleteMessage => {
                let (chat, number) = self.plan.doomed.take()?;
                Req {
                    method: Method::DELETE,
                    path: format!("/applications/{token}/chats/{chat}/messages/{number}"),
                    body: None,
                    check: Check::Deleted,
                }
            }
        })
    }

    pub fn check(&self, req: &Req, status: StatusCode, body: &[u8]) -> Verdict {
        if !status.is_success() {
            return Verdict::Error;
        }
        if matches!(self.kind, Kind::Ceiling | Kind::CeilingRead) {
            return Verdict::Ok;
        }
        let key = match &req.check {
            Check::Status => return Verdict::Ok,
            Check::Body(stored) => {
                return match serde_json::from_slice::<Created>(body) {
                    Ok(read) if read.body.as_deref() == Some(stored.as_str()) => Verdict::Ok,
                    _ => Verdict::Error,
                };
            }
            Check::Contains(term) => {
                return match serde_json::from_slice::<Vec<Created>>(body) {
                    Ok(found)
                        if found.iter().all(|m| {
                            m.body
                                .as_deref()
                                .is_some_and(|b| b.to_lowercase().contains(term.as_str()))
                        }) =>
                    {
                        Verdict::Ok
                    }
                    _ => Verdict::Error,
                };
            }
            Check::Message(sent) => match serde_json::from_slice::<Created>(body) {
                Ok(created) if created.body.as_deref() == Some(sent.as_str()) => {
                    (created.chat_number.unwrap_or(0), created.number)
                }
                _ => return Verdict::Error,
            },
            Check::Chat => match serde_json::from_slice::<Created>(body) {
                Ok(created) => (0, created.number),
                Err(_) => return Verdict::Error,
            },
            Check::Page { first, descending } => {
                return match serde_json::from_slice::<Vec<Numbered>>(body) {
                    Ok(page)
                        if status == StatusCode::OK && consecutive(&page, *first, *descending) =>
                    {
                        Verdict::Ok
                    }
                    _ => Verdict::Error,
                };
            }
            Check::Deleted if status == StatusCode::NO_CONTENT => return Verdict::Ok,
            Check::Deleted => return Verdict::Error,
        };
        if self.ledger.insert(key) {
            Verdict::Ok
        } else {
            Verdict::Duplicate
        }
    }
}

/// A full page numbered from `first`, one by one (down when `descending`).
fn consecutive(page: &[Numbered], first: u64, descending: bool) -> bool {
    page.len() as u64 == PAGE
        && page.iter().enumerate().all(|(i, m)| {
            let i = i as u64;
            let expected = if descending {
                first.checked_sub(i)
            } else {
                Some(first + i)
            };
            expected == Some(m.number)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(kind: Kind) -> Generator {
        let samples = Samples::from([((3, 13), "stored body".to_owned())]);
        let plan = Plan::new("t".into(), 20, samples);
        Generator::new(kind, plan, Arc::new(Ledger::default()))
    }

    fn req(check: Check) -> Req {
        Req {
            method: Method::GET,
            path: String::new(),
            body: None,
            check,
        }
    }

    #[test]
    fn a_read_of_a_sampled_message_must_answer_the_stored_body() {
        let g = generator(Kind::ReadOne);
        let read = req(Check::Body("stored body".into()));
        let answer = |body: &str| serde_json::json!({ "number": 13, "body": body }).to_string();
        let ok = g.check(&read, StatusCode::OK, answer("stored body").as_bytes());
        assert!(matches!(ok, Verdict::Ok));
        let wrong = g.check(&read, StatusCode::OK, answer("another").as_bytes());
        assert!(matches!(wrong, Verdict::Error));
    }

    #[test]
    fn every_search_result_must_contain_the_term() {
        let g = generator(Kind::Search);
        let search = req(Check::Contains("kaze".into()));
        let answer = |bodies: &[&str]| {
            let items: Vec<_> = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| serde_json::json!({ "number": i + 1, "body": b }))
                .collect();
            serde_json::to_vec(&items).unwrap()
        };
        let ok = g.check(&search, StatusCode::OK, &answer(&["la KAZE mo", "kazeko"]));
        assert!(matches!(ok, Verdict::Ok));
        let empty = g.check(&search, StatusCode::OK, &answer(&[]));
        assert!(matches!(empty, Verdict::Ok));
        let wrong = g.check(&search, StatusCode::OK, &answer(&["kaze", "tomo"]));
        assert!(matches!(wrong, Verdict::Error));
    }

    fn page(numbers: impl Iterator<Item = u64>) -> Vec<u8> {
        let items: Vec<_> = numbers
            .map(|n| serde_json::json!({ "number": n, "body": "b", "revision": n }))
            .collect();
        serde_json::to_vec(&items).unwrap()
    }

    #[test]
    fn a_history_page_must_hold_fifty_consecutive_numbers_from_the_right_one() {
        let g = generator(Kind::HistoryDeep);
        let latest = req(Check::Page {
            first: 500,
            descending: true,
        });
        let ok = g.check(&latest, StatusCode::OK, &page((451..=500).rev()));
        assert!(matches!(ok, Verdict::Ok));
        let ascending = g.check(&latest, StatusCode::OK, &page(451..=500));
        assert!(matches!(ascending, Verdict::Error));
        let short = g.check(&latest, StatusCode::OK, &page((461..=500).rev()));
        assert!(matches!(short, Verdict::Error));
        let feed = req(Check::Page {
            first: 91,
            descending: false,
        });
        let ok = g.check(&feed, StatusCode::OK, &page(91..=140));
        assert!(matches!(ok, Verdict::Ok));
        let gap = g.check(
            &feed,
            StatusCode::OK,
            &page((91..=141).filter(|&n| n != 100)),
        );
        assert!(matches!(gap, Verdict::Error));
    }

    #[test]
    fn each_doomed_message_is_deleted_once_then_the_scenario_ends() {
        let samples = Samples::new();
        let doomed = Doomed::new(vec![(1, 1), (2, 1), (1, 2)]);
        let plan = Plan::new("t".into(), 2, samples).with_doomed(doomed);
        let g = Generator::new(Kind::DeleteMessage, plan, Arc::new(Ledger::default()));
        let mut rng = seeded(0);
        let paths: Vec<String> = std::iter::from_fn(|| g.next(&mut rng))
            .map(|r| r.path)
            .collect();
        assert_eq!(
            paths,
            [
                "/applications/t/chats/1/messages/1",
                "/applications/t/chats/2/messages/1",
                "/applications/t/chats/1/messages/2"
            ]
        );
        let deleted = req(Check::Deleted);
        assert!(matches!(
            g.check(&deleted, StatusCode::NO_CONTENT, b""),
            Verdict::Ok
        ));
        assert!(matches!(
            g.check(&deleted, StatusCode::OK, b""),
            Verdict::Error
        ));
        assert!(matches!(
            g.check(&deleted, StatusCode::NOT_FOUND, b""),
            Verdict::Error
        ));
    }

    #[test]
    fn history_requests_stay_inside_the_chat_and_leave_a_full_page() {
        let plan = Plan::new("t".into(), 2, Samples::new()).with_history(100_000);
        let mut rng = seeded(3);
        for kind in [Kind::HistoryDeep, Kind::HistorySince] {
            let g = Generator::new(kind, plan.clone(), Arc::new(Ledger::default()));
            for _ in 0..1000 {
                let r = g.next(&mut rng).unwrap();
                let value = |name: &str| -> Option<u64> {
                    r.path
                        .split(['?', '&'])
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .map(|v| v.parse().unwrap())
                };
                if let Some(before) = value("before") {
                    assert!((25_000..=75_000).contains(&before), "{}", r.path);
                }
                if let Some(since) = value("since") {
                    assert!((98_950..=99_950).contains(&since), "{}", r.path);
                }
            }
        }
    }
}

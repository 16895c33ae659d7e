//! The JSON that the Elasticsearch adapter sends: index settings and mapping, `_bulk` NDJSON and
//! search queries. Pure functions, so that they can be checked against Elasticsearch's documented
//! JSON without a cluster.
//!
//! How SPEC §2's case-insensitive substring rule maps onto an inverted index: the body is indexed
//! twice more as sub-fields, both cut by an `ngram` tokenizer over *every* character
//! (`token_chars` left empty, its documented default: punctuation, `%`, `_` and white space are
//! kept) and lowercased:
//! - `body.tri`: every 3-character gram, one position apart. A word of 3 or more characters is
//!   a `match_phrase` over its own trigrams: consecutive positions mean an exact substring.
//! - `body.short`: every 1- and 2-character gram. A shorter word is a `term` on it.
//!
//! No query parser ever sees the user's words (no `query_string`, no wildcards), so `*`, `?`,
//! quotes and `OR` are plain characters.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::domain::{Page, SearchTerms, Token};
use crate::search::IndexOp;

/// Words with at least this many characters are matched through trigrams.
pub(crate) const TRIGRAM: usize = 3;

/// Microseconds, like every store, so a message read from the index equals the stored one.
fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The body of `PUT /{index}`.
pub fn settings_and_mapping() -> Value {
    json!({
        "settings": {
            // Both tokenizers stay within the default `index.max_ngram_diff` of 1 (3-3 and 1-2),
            // so that setting is left alone.
            "analysis": {
                "tokenizer": {
                    "trigram": { "type": "ngram", "min_gram": 3, "max_gram": 3, "token_chars": [] },
                    "short_gram": { "type": "ngram", "min_gram": 1, "max_gram": 2, "token_chars": [] }
                },
                "analyzer": {
                    "trigram": { "type": "custom", "tokenizer": "trigram", "filter": ["lowercase"] },
                    "short_gram": { "type": "custom", "tokenizer": "short_gram", "filter": ["lowercase"] }
                }
            }
        },
        "mappings": {
            // A stray field is a bug in this adapter: refuse it rather than guess a mapping.
            "dynamic": "strict",
            "properties": {
                "application_token": { "type": "keyword" },
                "chat_number": { "type": "long" },
                "number": { "type": "long" },
                // The body itself is only kept in `_source`; its sub-fields do the matching.
                "body": {
                    "type": "text",
                    "index": false,
                    "fields": {
                        "tri": { "type": "text", "analyzer": "trigram" },
                        "short": { "type": "text", "analyzer": "short_gram" }
                    }
                },
                "created_at": { "type": "date" },
                "updated_at": { "type": "date" },
                "revision": { "type": "long" }
            }
        }
    })
}

/// The fields added to the mapping since the index was first created: `PUT /{index}/_mapping`
/// adds them to an index made by an earlier version (adding a field is always allowed).
pub fn added_fields() -> Value {
    json!({ "properties": { "revision": { "type": "long" } } })
}

/// The Painless script of an edit: applied only over an older revision (of two concurrent
/// edits the higher revision wins, whichever arrives last). Fixed text; values are params.
const EDIT_SCRIPT: &str =
    "if (ctx._source.revision == null || ctx._source.revision < params.revision) \
     { ctx._source.body = params.body; ctx._source.updated_at = params.updated_at; \
       ctx._source.revision = params.revision } else { ctx.op = 'noop' }";

/// The NDJSON body of `POST /{index}/_bulk`: an action line and (but for a deletion) a source
/// line per operation, each ending in a newline (the last one included, as the bulk API
/// requires). [`IndexOp::DeleteAll`] is not a bulk action ([`delete_all_body`]): it is left out.
pub fn bulk_body(ops: &[IndexOp]) -> String {
    let mut out = String::new();
    for op in ops {
        let (action, source) = match op {
            IndexOp::Create {
                token,
                chat,
                number,
                body,
                created_at,
                revision,
            } => (
                json!({ "index": { "_id": op.id() } }),
                Some(json!({
                    "application_token": token,
                    "chat_number": chat,
                    "number": number,
                    "body": body,
                    "created_at": timestamp(created_at),
                    "updated_at": timestamp(created_at),
                    "revision": revision,
                })),
            ),
            IndexOp::Edit {
                body,
                updated_at,
                revision,
                ..
            } => (
                // Conflicts only come from a concurrent update of the same message: retry them.
                json!({ "update": { "_id": op.id(), "retry_on_conflict": 3 } }),
                Some(json!({
                    "script": {
                        "source": EDIT_SCRIPT,
                        "lang": "painless",
                        "params": {
                            "body": body,
                            "updated_at": timestamp(updated_at),
                            "revision": revision,
                        },
                    },
                    "upsert": {
                        "body": body,
                        "updated_at": timestamp(updated_at),
                        "revision": revision,
                    },
                })),
            ),
            IndexOp::Delete { .. } => (json!({ "delete": { "_id": op.id() } }), None),
            IndexOp::DeleteAll { .. } => continue,
        };
        // serde_json escapes newlines and quotes inside strings, so each value stays on one line.
        out.push_str(&action.to_string());
        out.push('\n');
        if let Some(source) = source {
            out.push_str(&source.to_string());
            out.push('\n');
        }
    }
    out
}

/// The body of `POST /{index}/_delete_by_query` for [`IndexOp::DeleteAll`]: every document of
/// the application, or of one of its chats (term filters: nothing the user typed is a query).
pub fn delete_all_body(token: &Token, chat: Option<u64>) -> Value {
    let mut filter = vec![json!({ "term": { "application_token": token.as_str() } })];
    if let Some(chat) = chat {
        filter.push(json!({ "term": { "chat_number": chat } }));
    }
    json!({ "query": { "bool": { "filter": filter } } })
}

/// Lowercases one code point at a time, as Lucene's `lowercase` filter does, so a short word
/// compares equal to the grams indexed in `body.short`.
fn lowercase_like_lucene(word: &str) -> String {
    word.chars().flat_map(char::to_lowercase).collect()
}

/// The body of `POST /{index}/_search` for one chat's messages containing every word.
pub fn query_body(token: &Token, chat: u64, terms: &SearchTerms, page: Page) -> Value {
    let must: Vec<Value> = terms
        .words()
        .iter()
        .map(|word| {
            if word.chars().count() >= TRIGRAM {
                json!({ "match_phrase": { "body.tri": { "query": word } } })
            } else {
                json!({ "term": { "body.short": { "value": lowercase_like_lucene(word) } } })
            }
        })
        .collect();
    json!({
        "from": page.offset,
        "size": page.limit,
        // Totals are never shown; counting them past the page is wasted work.
        "track_total_hits": false,
        "query": {
            "bool": {
                "filter": [
                    { "term": { "application_token": token.as_str() } },
                    { "term": { "chat_number": chat } }
                ],
                "must": must
            }
        },
        "sort": [
            { "_score": { "order": "desc" } },
            { "number": { "order": "asc" } }
        ],
        "_source": ["number", "chat_number", "body", "created_at", "updated_at"]
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, second).unwrap()
            + chrono::Duration::microseconds(123_456)
    }

    fn token() -> Token {
        Token::parse("tok-en_1").unwrap()
    }

    #[test]
    fn mapping_indexes_every_character_as_trigrams_and_short_grams() {
        let value = settings_and_mapping();
        let tokenizers = &value["settings"]["analysis"]["tokenizer"];
        assert_eq!(
            tokenizers["trigram"],
            json!({ "type": "ngram", "min_gram": 3, "max_gram": 3, "token_chars": [] })
        );
        assert_eq!(
            tokenizers["short_gram"],
            json!({ "type": "ngram", "min_gram": 1, "max_gram": 2, "token_chars": [] })
        );
        // Within the default index.max_ngram_diff (1), which is why it is not set.
        for name in ["trigram", "short_gram"] {
            let diff = tokenizers[name]["max_gram"].as_u64().unwrap()
                - tokenizers[name]["min_gram"].as_u64().unwrap();
            assert!(diff <= 1, "{name}");
        }
        assert!(value["settings"].get("index.max_ngram_diff").is_none());
        let analyzers = &value["settings"]["analysis"]["analyzer"];
        for name in ["trigram", "short_gram"] {
            assert_eq!(analyzers[name]["type"], "custom");
            assert_eq!(analyzers[name]["tokenizer"], name);
            assert_eq!(analyzers[name]["filter"], json!(["lowercase"]));
        }
        let properties = &value["mappings"]["properties"];
        assert_eq!(value["mappings"]["dynamic"], "strict");
        assert_eq!(properties["application_token"]["type"], "keyword");
        assert_eq!(properties["chat_number"]["type"], "long");
        assert_eq!(properties["number"]["type"], "long");
        assert_eq!(properties["created_at"]["type"], "date");
        assert_eq!(properties["updated_at"]["type"], "date");
        assert_eq!(properties["body"]["type"], "text");
        assert_eq!(properties["body"]["fields"]["tri"]["analyzer"], "trigram");
        assert_eq!(
            properties["body"]["fields"]["short"]["analyzer"],
            "short_gram"
        );
    }

    #[test]
    fn bulk_body_is_ndjson_with_deterministic_ids() {
        let ops = [
            IndexOp::Create {
                token: Token::parse("tok").unwrap(),
                chat: 2,
                number: 7,
                body: "say \"hi\"\nthen \\ leave ☃ 日本".into(),
                created_at: at(5),
                revision: 7,
            },
            IndexOp::Edit {
                token: Token::parse("tok").unwrap(),
                chat: 2,
                number: 7,
                body: "100% sure_thing\r\n".into(),
                updated_at: at(9),
                revision: 9,
            },
            IndexOp::Delete {
                token: Token::parse("tok").unwrap(),
                chat: 2,
                number: 8,
            },
            IndexOp::DeleteAll {
                token: Token::parse("tok").unwrap(),
                chat: Some(3),
            },
        ];
        let text = bulk_body(&ops);
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.strip_suffix('\n').unwrap().split('\n').collect();
        // A deletion is one line; deleting a chat's documents is not a bulk action.
        assert_eq!(lines.len(), 5, "{text}");
        let parsed: Vec<Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(parsed[0], json!({ "index": { "_id": "tok:2:7" } }));
        assert_eq!(
            parsed[1],
            json!({
                "application_token": "tok",
                "chat_number": 2,
                "number": 7,
                "body": "say \"hi\"\nthen \\ leave ☃ 日本",
                "created_at": "2026-01-02T03:04:05.123456Z",
                "updated_at": "2026-01-02T03:04:05.123456Z",
                "revision": 7,
            })
        );
        assert_eq!(
            parsed[2],
            json!({ "update": { "_id": "tok:2:7", "retry_on_conflict": 3 } })
        );
        assert_eq!(parsed[3]["script"]["source"], EDIT_SCRIPT);
        assert_eq!(
            parsed[3]["script"]["params"],
            json!({ "body": "100% sure_thing\r\n", "updated_at": "2026-01-02T03:04:09.123456Z", "revision": 9 })
        );
        assert_eq!(parsed[3]["upsert"]["revision"], 9);
        assert_eq!(parsed[4], json!({ "delete": { "_id": "tok:2:8" } }));
        assert_eq!(
            delete_all_body(&Token::parse("tok").unwrap(), Some(3)),
            json!({ "query": { "bool": { "filter": [
                { "term": { "application_token": "tok" } },
                { "term": { "chat_number": 3 } }
            ] } } })
        );
        assert!(
            lines[1].contains(r#"say \"hi\"\nthen \\ leave"#),
            "{}",
            lines[1]
        );
        assert_eq!(bulk_body(&[]), "");
    }

    #[test]
    fn long_words_are_phrases_of_trigrams_and_short_words_lowercased_terms() {
        let terms = SearchTerms::parse("RROR Er É * 0% e_t \"quoted\" or? Größe").unwrap();
        let page = Page::first(0, 40, 20);
        let body = query_body(&token(), 3, &terms, page);
        assert_eq!(
            body["query"]["bool"]["must"],
            json!([
                { "match_phrase": { "body.tri": { "query": "RROR" } } },
                { "term": { "body.short": { "value": "er" } } },
                { "term": { "body.short": { "value": "é" } } },
                { "term": { "body.short": { "value": "*" } } },
                { "term": { "body.short": { "value": "0%" } } },
                { "match_phrase": { "body.tri": { "query": "e_t" } } },
                { "match_phrase": { "body.tri": { "query": "\"quoted\"" } } },
                { "match_phrase": { "body.tri": { "query": "or?" } } },
                { "match_phrase": { "body.tri": { "query": "Größe" } } },
            ])
        );
        assert_eq!(
            body["query"]["bool"]["filter"],
            json!([
                { "term": { "application_token": "tok-en_1" } },
                { "term": { "chat_number": 3 } }
            ])
        );
        assert_eq!(
            body["sort"],
            json!([{ "_score": { "order": "desc" } }, { "number": { "order": "asc" } }])
        );
        assert_eq!(body["from"], 40);
        assert_eq!(body["size"], 20);
        let text = body.to_string();
        for forbidden in ["query_string", "wildcard", "regexp", "prefix", "fuzzy"] {
            assert!(!text.contains(forbidden), "{forbidden} in {text}");
        }
    }

    #[test]
    fn word_length_counts_characters_not_bytes() {
        // "本語" is 6 bytes but 2 characters: a short term, like the SQLite backend treats it.
        let terms = SearchTerms::parse("本語 日本語").unwrap();
        let page = Page::first(0, 0, 1);
        let body = query_body(&token(), 1, &terms, page);
        assert_eq!(
            body["query"]["bool"]["must"],
            json!([
                { "term": { "body.short": { "value": "本語" } } },
                { "match_phrase": { "body.tri": { "query": "日本語" } } },
            ])
        );
    }

    #[test]
    fn lowercasing_is_per_code_point() {
        // Rust's string lowercasing turns a final capital sigma into "ς"; Lucene does not.
        assert_eq!(lowercase_like_lucene("ΑΣ"), "ασ");
        assert_eq!(lowercase_like_lucene("Ab"), "ab");
    }
}

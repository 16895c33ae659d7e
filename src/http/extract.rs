//! Request parsing shared by the handlers: JSON bodies (flat or wrapped), query parameters,
//! path segments and pagination. Every rejection becomes an [`ApiError`], never plain text.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use crate::domain::{self, Page, Token};
use crate::error::ApiError;

/// Largest request body accepted (SPEC §2: 413 past 1 MiB).
pub const BODY_LIMIT: usize = 1024 * 1024;
pub const PER_PAGE_DEFAULT: u32 = 50;
/// Larger `per_page` values are served as this many items.
pub const PER_PAGE_MAX: u32 = 1000;
/// The largest `per_page` accepted at all (then capped): it is declared `int32`.
const PER_PAGE_LIMIT: u64 = i32::MAX as u64;
/// `page` and `after` are declared `int64`.
const INT64_MAX: u64 = i64::MAX as u64;

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(format!("malformed path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(_: QueryRejection) -> Self {
        ApiError::bad_request("malformed query string")
    }
}

/// Path parameters, with rejections in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters as sent, in order (repeated names allowed; the last one wins).
pub struct ApiQuery(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        Ok(Self(pairs))
    }
}

impl ApiQuery {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first of `names` that is present.
    pub fn get_any(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| self.get(name))
    }

    /// A non-negative integer of at most `max`: the bound of the type the OpenAPI document
    /// declares for it (`int32` or `int64`), so what the contract calls invalid is a 400 here.
    fn number(&self, name: &str, max: u64) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|raw| match raw.trim().parse::<u64>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "{name} must be an integer from 0 to {max}"
                ))),
            })
            .transpose()
    }
}

/// A JSON object from the request body. An empty body is `{}` (the seed creates chats with no
/// body); the content type is not checked, since the seed's clients do not all send one.
pub struct JsonObject(pub serde_json::Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::PayloadTooLarge
                    } else {
                        ApiError::bad_request("could not read the request body")
                    }
                })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(serde_json::Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) => Ok(Self(object)),
            Ok(_) => Err(ApiError::validation(
                "the request body must be a JSON object",
            )),
            Err(err) => Err(ApiError::bad_request(format!("malformed JSON: {err}"))),
        }
    }
}

impl JsonObject {
    /// A required string field, read flat (`{"name": …}`) or wrapped (`{"application": {"name": …}}`).
    pub fn string(&self, wrapper: &str, field: &str) -> Result<String, ApiError> {
        let wrapped = self.0.get(wrapper).and_then(Value::as_object);
        let value = wrapped
            .and_then(|inner| inner.get(field))
            .or_else(|| self.0.get(field));
        match value {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(ApiError::validation(format!("{field} must be a string"))),
            None => Err(ApiError::validation(format!("{field} is required"))),
        }
    }
}

pub fn token(raw: &str) -> Result<Token, ApiError> {
    Token::parse(raw).ok_or_else(|| ApiError::not_found("application not found"))
}

pub fn number(raw: &str, what: &str) -> Result<u64, ApiError> {
    domain::parse_number(raw).ok_or_else(|| ApiError::not_found(format!("{what} not found")))
}

/// `per_page`, `after`, `before`, `order`, `page` and `since`, validated.
pub struct Pagination {
    per_page: u32,
    after: Option<u64>,
    before: Option<u64>,
    descending: bool,
    page: u64,
    /// The changes feed's position (messages only).
    pub since: Option<u64>,
}

/// How the `Link rel="next"` of a page continues.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    /// By number, in the page's order: `after=` ascending, `before=` descending.
    Keyset,
    /// By revision: `since=` (the changes feed).
    Since,
    /// By page number (search, ranked by relevance).
    Page,
}

impl Pagination {
    pub fn from_query(query: &ApiQuery) -> Result<Self, ApiError> {
        let per_page = match query.number("per_page", PER_PAGE_LIMIT)? {
            None => PER_PAGE_DEFAULT,
            Some(0) => return Err(ApiError::bad_request("per_page must be at least 1")),
            Some(n) => n.min(u64::from(PER_PAGE_MAX)) as u32,
        };
        let page = match query.number("page", INT64_MAX)? {
            None => 1,
            Some(0) => return Err(ApiError::bad_request("page starts at 1")),
            Some(n) => n,
        };
        let descending = match query.get("order").map(str::trim) {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(ApiError::bad_request("order must be asc or desc")),
        };
        Ok(Self {
            per_page,
            after: query.number("after", INT64_MAX)?,
            before: query.number("before", INT64_MAX)?,
            descending,
            page,
            since: query.number("since", INT64_MAX)?,
        })
    }

    /// What to ask the store for: one item more than a page, to learn whether another follows.
    pub fn page(&self) -> Page {
        let offset = match (self.after, self.before) {
            (None, None) => (self.page - 1).saturating_mul(u64::from(self.per_page)),
            _ => 0,
        };
        Page {
            after: self.after.unwrap_or(0).min(i64::MAX as u64),
            before: self.before.unwrap_or(u64::MAX),
            descending: self.descending,
            offset: offset.min(i64::MAX as u64),
            limit: self.per_page + 1,
        }
    }

    /// The page with a `Link: <…>; rel="next"` header when more items follow, continuing as
    /// `how` says from `key` of the last item (its number, or its revision for `Since`).
    pub fn respond<T: Serialize>(
        &self,
        mut items: Vec<T>,
        path: &str,
        query: &ApiQuery,
        key: impl Fn(&T) -> u64,
        how: Continue,
    ) -> Response {
        let more = items.len() > self.per_page as usize;
        items.truncate(self.per_page as usize);
        let next = match items.last() {
            Some(last) if more => Some(match how {
                Continue::Keyset if self.descending => ("before", key(last)),
                Continue::Keyset => ("after", key(last)),
                Continue::Since => ("since", key(last)),
                Continue::Page => ("page", self.page + 1),
            }),
            _ => None,
        };
        let mut response = Json(items).into_response();
        if let Some((name, value)) = next {
            let mut serializer = url::form_urlencoded::Serializer::new(String::new());
            for (key, existing) in &query.0 {
                if !matches!(key.as_str(), "page" | "per_page") && key != name {
                    serializer.append_pair(key, existing);
                }
            }
            serializer.append_pair("per_page", &self.per_page.to_string());
            serializer.append_pair(name, &value.to_string());
            let link = format!("<{path}?{}>; rel=\"next\"", serializer.finish());
            if let Ok(value) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(header::LINK, value);
            }
        }
        response
    }

    /// Items of the changes feed asked of the store: one more than a page.
    pub fn feed_limit(&self) -> u32 {
        self.per_page + 1
    }
}

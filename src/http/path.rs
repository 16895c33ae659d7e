//! The one parser of raw request paths, for the middleware that runs before routing (rate limit
//! per token, idempotency scope).

/// The application token in `/applications/{token}/…` (also under `/api/v1`), if the path
/// names one.
pub fn application_token(path: &str) -> Option<&str> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    path.strip_prefix("/applications/")?
        .split('/')
        .next()
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::application_token;

    #[test]
    fn the_token_is_the_segment_after_applications() {
        assert_eq!(application_token("/applications/abc/chats"), Some("abc"));
        assert_eq!(application_token("/api/v1/applications/abc"), Some("abc"));
        assert_eq!(application_token("/applications"), None);
        assert_eq!(application_token("/applications/"), None);
        assert_eq!(application_token("/search"), None);
    }
}

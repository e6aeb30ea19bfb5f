use serde::Serialize;
use spin_sdk::http::{Request, Response};

use crate::{ApiError, json};

/// `limit`/`offset` from the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1..=[`Page::MAX_LIMIT`].
    pub limit: u32,
    /// At most `i64::MAX`, so it binds as an SQLite integer unchanged.
    pub offset: u64,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

impl Page {
    pub const DEFAULT_LIMIT: u32 = 20;
    pub const MAX_LIMIT: u32 = 100;

    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        Self::from_query(req.query())
    }

    /// Parses a raw query string (`a=1&limit=5`). Absent values take the defaults; present
    /// but invalid ones are a 400, not silently replaced. The first occurrence counts.
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let mut page = Self::default();
        if let Some(limit) = query_value(query, "limit") {
            page.limit = limit
                .parse()
                .ok()
                .filter(|limit| (1..=Self::MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    ApiError::invalid_request(format!(
                        "limit must be an integer from 1 to {}",
                        Self::MAX_LIMIT
                    ))
                })?;
        }
        if let Some(offset) = query_value(query, "offset") {
            page.offset = offset
                .parse()
                .ok()
                .filter(|offset| i64::try_from(*offset).is_ok())
                .ok_or_else(|| {
                    ApiError::invalid_request("offset must be a non-negative integer")
                })?;
        }
        Ok(page)
    }

    fn next(self, total: u64) -> Option<u64> {
        let next = self.offset.saturating_add(u64::from(self.limit));
        (next < total).then_some(next)
    }

    fn prev(self) -> Option<u64> {
        (self.offset > 0).then(|| self.offset.saturating_sub(u64::from(self.limit)))
    }
}

fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The raw value of the first `key=` in a query string, if any.
pub fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query_pairs(query).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// The RFC 8288 `Link` value for a page of a list at `path`, keeping the other query
/// parameters (filters) as they were; `None` when there is neither a next nor a previous page.
pub fn link_header(path: &str, query: &str, page: Page, total: u64) -> Option<String> {
    let kept: String = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            key != "limit" && key != "offset"
        })
        .map(|pair| format!("{pair}&"))
        .collect();
    let link = |offset: u64, rel: &str| {
        format!(
            "<{path}?{kept}limit={}&offset={offset}>; rel=\"{rel}\"",
            page.limit
        )
    };
    let links: Vec<String> = [
        page.next(total).map(|offset| link(offset, "next")),
        page.prev().map(|offset| link(offset, "prev")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!links.is_empty()).then(|| links.join(", "))
}

/// A 200 JSON array of one page of `total` items, with `X-Total-Count` and `Link`.
pub fn paginated<T: Serialize>(req: &Request, page: Page, total: u64, items: &[T]) -> Response {
    let mut response = json(200, items);
    if *response.status() != 200 {
        return response;
    }
    response.set_header("x-total-count", total.to_string());
    if let Some(link) = link_header(req.path(), req.query(), page, total) {
        response.set_header("link", link);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: u32, offset: u64) -> Page {
        Page { limit, offset }
    }

    #[test]
    fn defaults() {
        assert_eq!(Page::from_query("").unwrap(), page(20, 0));
        assert_eq!(Page::from_query("category=books").unwrap(), page(20, 0));
    }

    #[test]
    fn parses_limit_and_offset() {
        assert_eq!(Page::from_query("limit=5&offset=10").unwrap(), page(5, 10));
        assert_eq!(Page::from_query("offset=3").unwrap(), page(20, 3));
        assert_eq!(Page::from_query("limit=100").unwrap(), page(100, 0));
        assert_eq!(Page::from_query("limit=1&&x").unwrap(), page(1, 0));
        assert_eq!(Page::from_query("limit=7&limit=9").unwrap(), page(7, 0));
    }

    #[test]
    fn rejects_bad_values() {
        for query in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=abc",
            "limit=",
            "limit",
            "limit=1.5",
            "limit=99999999999",
            "offset=-1",
            "offset=x",
            "offset=",
            "offset=9223372036854775808",
        ] {
            let error = Page::from_query(query).unwrap_err();
            assert_eq!(
                (error.status, error.code.as_ref()),
                (400, "invalid_request"),
                "{query}"
            );
        }
        assert!(Page::from_query("offset=9223372036854775807").is_ok());
    }

    #[test]
    fn links_for_first_middle_last_and_only_pages() {
        assert_eq!(
            link_header("/api/products", "", page(10, 0), 25).as_deref(),
            Some(r#"</api/products?limit=10&offset=10>; rel="next""#)
        );
        assert_eq!(
            link_header("/api/products", "limit=10&offset=10", page(10, 10), 25).as_deref(),
            Some(
                r#"</api/products?limit=10&offset=20>; rel="next", </api/products?limit=10&offset=0>; rel="prev""#
            )
        );
        assert_eq!(
            link_header("/api/products", "", page(10, 20), 25).as_deref(),
            Some(r#"</api/products?limit=10&offset=10>; rel="prev""#)
        );
        assert_eq!(link_header("/api/products", "", page(10, 0), 10), None);
        assert_eq!(link_header("/api/products", "", page(10, 0), 0), None);
    }

    #[test]
    fn prev_clamps_at_zero_and_filters_are_kept() {
        assert_eq!(
            link_header(
                "/products",
                "q=a%20b&offset=3&sort=name&limit=5",
                page(5, 3),
                4
            )
            .as_deref(),
            Some(r#"</products?q=a%20b&sort=name&limit=5&offset=0>; rel="prev""#)
        );
    }

    #[test]
    fn paginated_response_has_headers_and_array_body() {
        let req = Request::builder()
            .uri("http://localhost:3000/api/orders?status=open&limit=2&offset=2")
            .build();
        let page = Page::from_request(&req).unwrap();
        let response = paginated(
            &req,
            page,
            5,
            &[serde_json::json!({"id": 3}), serde_json::json!({"id": 4})],
        );
        assert_eq!(*response.status(), 200);
        let header = |name: &str| {
            response
                .header(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        assert_eq!(header("x-total-count").as_deref(), Some("5"));
        assert_eq!(
            header("link").as_deref(),
            Some(
                r#"</api/orders?status=open&limit=2&offset=4>; rel="next", </api/orders?status=open&limit=2&offset=0>; rel="prev""#
            )
        );
        assert_eq!(header("content-type").as_deref(), Some("application/json"));
        assert_eq!(response.body(), br#"[{"id":3},{"id":4}]"#);
    }

    #[test]
    fn single_page_has_count_but_no_link() {
        let req = Request::builder().uri("/api/orders").build();
        let response = paginated::<u8>(&req, Page::default(), 0, &[]);
        assert_eq!(response.body(), b"[]");
        assert_eq!(
            response.header("x-total-count").and_then(|v| v.as_str()),
            Some("0")
        );
        assert!(response.header("link").is_none());
    }
}

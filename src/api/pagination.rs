//! Cursor pagination: `limit` (1–100, default 10) and `starting_after` (the id of the last
//! object of the previous page). Lists answer `{"object":"list","data":[…],"has_more":…}`.
//!
//! The cursor is parsed as an id of the list's kind (400 `invalid_cursor` otherwise) and the
//! store gets that id's canonical text, so `evt_01jd…` and `evt_01JD…` give the same page.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::{numbers, ApiError};
use crate::ids::{Cursor, TypedId};
use crate::store::Page;

/// The page sizes a list accepts (`limit`).
pub const LIMIT_RANGE: RangeInclusive<u32> = 1..=100;

/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 10;

/// The query parameters every list accepts.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many objects to return, 1–100 (default 10).
    #[serde(default, deserialize_with = "numbers::query_option")]
    pub limit: Option<u32>,
    /// Return objects after this id (the last id of the previous page).
    pub starting_after: Option<String>,
}

impl ListParams {
    /// Checks the bounds and the cursor (an id of kind `I`) and asks the store for one more
    /// than `limit`, to learn `has_more`.
    pub fn page<I: TypedId>(&self) -> Result<Page, ApiError> {
        page::<I>(self.limit, self.starting_after.as_deref())
    }
}

/// The store page for a list's `limit` (1–100, default 10) and cursor, which must be an id of
/// kind `I`: one row more than asked, so [`List::from_rows`] can tell whether another page
/// follows.
pub fn page<I: TypedId>(
    limit: Option<u32>,
    starting_after: Option<&str>,
) -> Result<Page, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !LIMIT_RANGE.contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!(
                "limit must be between {} and {}",
                LIMIT_RANGE.start(),
                LIMIT_RANGE.end()
            ),
        ));
    }
    Ok(Page {
        limit: limit + 1,
        starting_after: starting_after.map(cursor::<I>).transpose()?,
    })
}

/// Parses a `starting_after` as an id of kind `I`.
pub fn parse_cursor<I: TypedId>(text: &str) -> Result<I, ApiError> {
    text.parse::<I>().map_err(|_| {
        ApiError::bad_request(
            "invalid_cursor",
            format!(
                "starting_after must be the id of the last {} of the previous page (`{}…`)",
                I::KIND,
                I::PREFIX
            ),
        )
    })
}

/// 404 for a well-formed cursor that names no object of the list (lists that page in memory,
/// where the cursor must be one of the listed objects). A malformed one is 400
/// `invalid_cursor`; a well-formed id that does not exist is a missing resource, as anywhere.
pub fn cursor_not_in_list<I: TypedId>(cursor: &str) -> ApiError {
    ApiError::invalid(
        axum::http::StatusCode::NOT_FOUND,
        "resource_missing",
        format!("starting_after: no {} '{cursor}' in this list", I::KIND),
    )
}

fn cursor<I: TypedId>(text: &str) -> Result<Cursor, ApiError> {
    parse_cursor::<I>(text).map(Cursor::of)
}

/// A page of objects.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct List<T> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    /// Whether another page follows.
    pub has_more: bool,
    /// The path this list came from.
    pub url: &'static str,
}

impl<T> List<T> {
    /// Builds a page from the store's `limit + 1` rows.
    pub fn from_rows(mut rows: Vec<T>, page: &Page, url: &'static str) -> Self {
        let has_more = rows.len() as u32 >= page.limit;
        rows.truncate(page.limit as usize - 1);
        Self {
            object: "list",
            data: rows,
            has_more,
            url,
        }
    }
}

//! What a reader asks for: a page of a listing (`?skip=&limit=`) and a search text. Pure logic,
//! no I/O; refusals are field errors with the query's own names (`skip`, `limit`, `text`).

use common::FieldError;
use common::http::{is_percent_encoded, percent_decode};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;
/// Long enough for any product name; past it a search is refused rather than run.
pub const MAX_SEARCH: usize = 200;

/// A window on a listing sorted by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many articles to pass over.
    #[param(required = false, minimum = 0, default = 0)]
    pub skip: u64,
    /// How many articles to answer at most.
    #[param(required = false, minimum = 1, maximum = 200, default = 50)]
    pub limit: i64,
}

impl Page {
    /// The page a raw query string asks for; other parameters are ignored.
    pub fn parse(query: &str) -> Result<Self, Vec<FieldError>> {
        let mut page = Self {
            skip: 0,
            limit: DEFAULT_LIMIT,
        };
        let mut errors = Vec::new();
        for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            match name {
                "skip" => match value.parse::<u64>() {
                    Ok(skip) if skip <= i64::MAX as u64 => page.skip = skip,
                    _ => errors.push(FieldError::new("skip", "must be an integer of at least 0")),
                },
                "limit" => match value.parse::<i64>() {
                    Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => page.limit = limit,
                    _ => errors.push(FieldError::new("limit", "must be an integer from 1 to 200")),
                },
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(page)
        } else {
            Err(errors)
        }
    }
}

/// The text of `/articles/search/{text}` from its raw (percent-encoded) path segment, trimmed:
/// 1 to 200 characters, none of them a control character. Those are refused here rather than
/// left to the store: MongoDB refuses a `$regex` holding a NUL (error 51091, a 500), FerretDB
/// takes it, and no product name holds one.
pub fn search_text(segment: &str) -> Result<String, FieldError> {
    let refuse = |message| FieldError::new("text", message);
    if !is_percent_encoded(segment) {
        return Err(refuse("is not valid percent-encoding"));
    }
    let text =
        String::from_utf8(percent_decode(segment)).map_err(|_| refuse("is not valid UTF-8"))?;
    let text = text.trim();
    if text.chars().any(char::is_control) {
        return Err(refuse("must not contain control characters"));
    }
    match text.chars().count() {
        0 => Err(refuse("is required")),
        length if length > MAX_SEARCH => Err(refuse("must be at most 200 characters")),
        _ => Ok(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|error| error.path).collect()
    }

    #[test]
    fn an_empty_query_is_the_first_page_of_fifty() {
        assert_eq!(Page::parse(""), Ok(Page { skip: 0, limit: 50 }));
    }

    #[test]
    fn skip_and_limit_are_read_and_other_parameters_ignored() {
        assert_eq!(
            Page::parse("limit=200&skip=10&sort=x"),
            Ok(Page {
                skip: 10,
                limit: 200
            })
        );
    }

    #[test]
    fn a_limit_past_200_or_a_bad_number_is_refused_with_its_name() {
        assert_eq!(
            paths(Page::parse("limit=201&skip=-1").unwrap_err()),
            ["limit", "skip"]
        );
        assert_eq!(paths(Page::parse("limit=0").unwrap_err()), ["limit"]);
        assert_eq!(paths(Page::parse("limit=ten").unwrap_err()), ["limit"]);
    }

    #[test]
    fn search_text_is_percent_decoded_and_trimmed() {
        assert_eq!(
            search_text("cr%C3%A8me%20br%C3%BBl%C3%A9e%20").unwrap(),
            "crème brûlée"
        );
        assert_eq!(search_text("a+b").unwrap(), "a+b");
    }

    #[test]
    fn search_text_must_have_1_to_200_characters() {
        assert!(search_text("%20").is_err());
        assert!(search_text(&"é".repeat(200)).is_ok());
        assert!(search_text(&"x".repeat(201)).is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        for segment in ["a%00b", "%00", "a%01", "a%0Ab", "a%09b", "%7F", "a%C2%85b"] {
            let refusal = search_text(segment).unwrap_err();
            assert_eq!(refusal.path, "text", "{segment}");
            assert_eq!(refusal.message, "must not contain control characters");
        }
        assert_eq!(search_text("%09lamp%0A").unwrap(), "lamp");
    }

    #[test]
    fn malformed_encodings_are_refused_not_guessed() {
        for segment in ["%", "%4", "%zz", "%C3"] {
            assert_eq!(search_text(segment).unwrap_err().path, "text", "{segment}");
        }
    }
}

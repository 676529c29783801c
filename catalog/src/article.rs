//! Articles as clients see them, the rules an article body follows, and the text folding that
//! makes search case- and accent-insensitive. Pure logic, no I/O.

use common::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Keeps stock arithmetic far from overflow: no article holds more, no order line asks more.
pub const MAX_STOCK: i64 = 1_000_000_000;
const MAX_NAME: usize = 100;
const MAX_DESCRIPTION: usize = 2048;
const MAX_IMAGE: usize = 100;
/// Stored text holds no control character (descriptions keep their line breaks and tabs): a NUL
/// is more than a store can keep (PostgreSQL under FerretDB refuses it).
const CONTROL: &str = "must not contain control characters";

/// The article JSON of the contract, plus the read-only `stockVersion` (a contract extension):
/// the position in the article's stock ledger that `stock` is the balance of. An admin changing
/// the stock sends back the `stockVersion` it read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"_id": "0b5f7a4e-5d2c-4b8e-9a57-3f1d2c6e8a90", "name": "Desk lamp",
    "description": "Warm light", "image": "6d1c...", "price": 19.99, "stock": 7,
    "stockVersion": 1, "enabled": true}))]
pub struct Article {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub image: String,
    pub price: f64,
    pub stock: i64,
    #[serde(rename = "stockVersion")]
    pub stock_version: i64,
    pub enabled: bool,
}

/// The body of `POST /articles` and `POST /articles/{id}`, as the OpenAPI document shows it: what
/// [`ArticleInput::parse`] reads. An update's body may also carry back `_id` and `enabled` as
/// read (read-only: they must be the article's own); other fields are ignored.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"name": "Desk lamp", "description": "Warm light", "image": "",
    "price": 19.99, "stock": 7, "stockVersion": 1}))]
#[allow(dead_code)] // a schema only: bodies are read field by field, every error at once
pub struct ArticleBody {
    /// 1 to 100 characters once trimmed, no control character.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    name: String,
    /// Up to 2048 characters, no control character but line breaks and tabs; missing or `null`
    /// is empty.
    #[schema(max_length = 2048)]
    description: Option<String>,
    /// The image's id at the image service; up to 100 characters, no control character.
    #[schema(max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    image: Option<String>,
    /// A finite number of at least 0.
    #[schema(minimum = 0)]
    price: f64,
    /// An integer from 0 to 1000000000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    stock: i64,
    /// The `stockVersion` the stock was read at: needed when `stock` changes.
    #[schema(minimum = 0, rename = "stockVersion")]
    stock_version: Option<i64>,
}

/// Which article a body is for: a new one, or the stored one with this `_id`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target<'a> {
    New,
    Existing(&'a str),
}

/// What an admin sets on create and on update: every field, each time.
#[derive(Debug, Clone, PartialEq)]
pub struct ArticleInput {
    pub name: String,
    pub description: String,
    pub image: String,
    pub price: f64,
    pub stock: i64,
    /// The `stockVersion` the admin read, when sent: a changed `stock` is applied only if no
    /// other stock movement came in since.
    pub stock_version: Option<i64>,
    /// The `enabled` of an update's body (a client sending back the whole article it read):
    /// read-only, so the update goes through only if it is the article's own.
    pub enabled: Option<bool>,
}

impl ArticleInput {
    /// The body's fields, or every field error at once. Unknown fields are ignored. `_id` and
    /// `enabled` belong to the catalog: a new article's body must not carry them (the client must
    /// not believe they were honoured); an update's body may carry them back as it read them, so
    /// `_id` must be the article's own and `enabled` is checked against the stored article.
    pub fn parse(body: &Map<String, Value>, target: Target) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut enabled = None;
        match target {
            Target::New => {
                for owned in ["_id", "enabled"] {
                    if body.contains_key(owned) {
                        errors.push(FieldError::new(owned, "cannot be set"));
                    }
                }
            }
            Target::Existing(id) => {
                match body.get("_id") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(sent)) if sent == id => {}
                    Some(Value::String(_)) => {
                        errors.push(FieldError::new("_id", "names another article"))
                    }
                    Some(_) => errors.push(FieldError::new("_id", "must be a string")),
                }
                match body.get("enabled") {
                    None | Some(Value::Null) => {}
                    Some(Value::Bool(sent)) => enabled = Some(*sent),
                    Some(_) => errors.push(FieldError::new("enabled", "must be a boolean")),
                }
            }
        }
        let name = text(body, "name", &mut errors).trim().to_owned();
        if name.chars().any(char::is_control) {
            errors.push(FieldError::new("name", CONTROL));
        } else if name.is_empty() {
            errors.push(FieldError::new("name", "is required"));
        } else if name.chars().count() > MAX_NAME {
            errors.push(FieldError::new("name", "must be at most 100 characters"));
        }
        let description = text(body, "description", &mut errors);
        if description
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            errors.push(FieldError::new(
                "description",
                "must not contain control characters other than line breaks and tabs",
            ));
        } else if description.chars().count() > MAX_DESCRIPTION {
            errors.push(FieldError::new(
                "description",
                "must be at most 2048 characters",
            ));
        }
        let image = text(body, "image", &mut errors);
        if image.chars().any(char::is_control) {
            errors.push(FieldError::new("image", CONTROL));
        } else if image.chars().count() > MAX_IMAGE {
            errors.push(FieldError::new("image", "must be at most 100 characters"));
        }
        let price = price(body.get("price")).unwrap_or_else(|message| {
            errors.push(FieldError::new("price", message));
            0.0
        });
        let stock = stock(body.get("stock")).unwrap_or_else(|message| {
            errors.push(FieldError::new("stock", message));
            0
        });
        let stock_version = match body.get("stockVersion") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_i64() {
                Some(version) if version >= 0 => Some(version),
                _ => {
                    errors.push(FieldError::new(
                        "stockVersion",
                        "must be an integer of at least 0",
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(Self {
                name,
                description,
                image,
                price,
                stock,
                stock_version,
                enabled,
            })
        } else {
            Err(errors)
        }
    }
}

/// A text field; missing or `null` reads as empty, like everywhere in the system.
fn text(body: &Map<String, Value>, field: &str, errors: &mut Vec<FieldError>) -> String {
    match body.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            String::new()
        }
    }
}

fn price(value: Option<&Value>) -> Result<f64, &'static str> {
    match value {
        None | Some(Value::Null) => Err("is required"),
        Some(Value::Number(number)) => match number.as_f64() {
            Some(price) if price.is_finite() && price >= 0.0 => Ok(price),
            _ => Err("must be a finite number of at least 0"),
        },
        Some(_) => Err("must be a number"),
    }
}

fn stock(value: Option<&Value>) -> Result<i64, &'static str> {
    let number = match value {
        None | Some(Value::Null) => return Err("is required"),
        Some(Value::Number(number)) => number,
        Some(_) => return Err("must be a number"),
    };
    // `3.0` is the integer 3; `2.5` and `1e30` are not stock.
    let stock = number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|value| value.fract() == 0.0 && value.abs() <= MAX_STOCK as f64)
            .map(|value| value as i64)
    });
    match stock {
        Some(stock) if (0..=MAX_STOCK).contains(&stock) => Ok(stock),
        Some(stock) if stock < 0 => Err("must be at least 0"),
        Some(_) => Err("must be at most 1000000000"),
        None if number.as_f64().is_some_and(|value| value.fract() == 0.0) => {
            Err("must be at most 1000000000")
        }
        None => Err("must be an integer"),
    }
}

/// Lower case with the accents of Latin letters removed (`Crème Brûlée` → `creme brulee`), so
/// that search ignores both. Applied alike to stored text and to queries.
pub fn fold(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    for lower in text.chars().flat_map(char::to_lowercase) {
        match unaccented(lower) {
            Some(base) => folded.push_str(base),
            None => folded.push(lower),
        }
    }
    folded
}

/// The base letters of the accented lower-case letters of Latin-1 and Latin Extended-A.
fn unaccented(letter: char) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("àáâãäåāăą", "a"),
        ("çćĉċč", "c"),
        ("ďđð", "d"),
        ("èéêëēĕėęě", "e"),
        ("ĝğġģ", "g"),
        ("ĥħ", "h"),
        ("ìíîïĩīĭįı", "i"),
        ("ĵ", "j"),
        ("ķ", "k"),
        ("ĺļľŀł", "l"),
        ("ñńņňŉ", "n"),
        ("òóôõöøōŏő", "o"),
        ("ŕŗř", "r"),
        ("śŝşšſ", "s"),
        ("ţťŧ", "t"),
        ("ùúûüũūŭůűų", "u"),
        ("ŵ", "w"),
        ("ýÿŷ", "y"),
        ("źżž", "z"),
        ("ß", "ss"),
        ("æ", "ae"),
        ("œ", "oe"),
        ("þ", "th"),
    ];
    if letter.is_ascii() {
        return None;
    }
    TABLE
        .iter()
        .find(|(letters, _)| letters.contains(letter))
        .map(|(_, base)| *base)
}

/// A regular expression matching `text` literally: every ASCII character that is not a letter or
/// a digit is escaped, which both MongoDB (PCRE) and FerretDB (Go RE2) read as the character
/// itself.
pub fn literal_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() * 2);
    for character in text.chars() {
        if character.is_ascii() && !character.is_ascii_alphanumeric() {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern
}

/// The text searched for an article: its name and description, folded.
pub fn searchable(name: &str, description: &str) -> String {
    format!("{}\n{}", fold(name), fold(description))
}

/// The sort key of an article: its folded name, so `apple` and `Banana` sort as a reader expects.
pub fn sort_key(name: &str) -> String {
    fold(name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "0b5f7a4e-5d2c-4b8e-9a57-3f1d2c6e8a90";

    fn parse_for(body: Value, target: Target) -> Result<ArticleInput, Vec<String>> {
        ArticleInput::parse(body.as_object().unwrap(), target)
            .map_err(|errors| errors.into_iter().map(|error| error.path).collect())
    }

    fn parse(body: Value) -> Result<ArticleInput, Vec<String>> {
        parse_for(body, Target::New)
    }

    fn valid() -> Value {
        json!({"name": "Lamp", "description": "A lamp", "image": "", "price": 9.5, "stock": 3})
    }

    #[test]
    fn a_complete_body_is_accepted() {
        let input = parse(valid()).unwrap();
        assert_eq!(input.name, "Lamp");
        assert_eq!((input.price, input.stock), (9.5, 3));
    }

    #[test]
    fn every_field_error_is_reported_at_once_with_its_json_path() {
        let body = json!({"name": " ", "description": 5, "image": "x".repeat(101),
                          "price": -1, "stock": 1.5});
        assert_eq!(
            parse(body).unwrap_err(),
            ["name", "description", "image", "price", "stock"]
        );
    }

    #[test]
    fn null_or_missing_numbers_are_refused() {
        assert_eq!(
            parse(json!({"name": "Lamp", "price": null})).unwrap_err(),
            ["price", "stock"]
        );
    }

    #[test]
    fn numbers_as_strings_are_refused() {
        let mut body = valid();
        body["price"] = json!("9.5");
        body["stock"] = json!("3");
        assert_eq!(parse(body).unwrap_err(), ["price", "stock"]);
    }

    #[test]
    fn stock_must_be_a_non_negative_integer_within_bounds() {
        for (stock, accepted) in [
            (json!(0), true),
            (json!(3.0), true),
            (json!(MAX_STOCK), true),
            (json!(-1), false),
            (json!(0.5), false),
            (json!(MAX_STOCK + 1), false),
            (json!(1e30), false),
        ] {
            let mut body = valid();
            body["stock"] = stock.clone();
            assert_eq!(parse(body).is_ok(), accepted, "stock {stock}");
        }
    }

    #[test]
    fn a_new_article_cannot_choose_its_id_or_enabled() {
        let mut body = valid();
        body["_id"] = json!("mine");
        body["enabled"] = json!(true);
        assert_eq!(parse(body).unwrap_err(), ["_id", "enabled"]);
    }

    #[test]
    fn an_update_takes_back_the_whole_article_it_read() {
        let mut body = valid();
        body["_id"] = json!(ID);
        body["enabled"] = json!(false);
        body["stockVersion"] = json!(2);
        let input = parse_for(body, Target::Existing(ID)).unwrap();
        assert_eq!((input.enabled, input.stock_version), (Some(false), Some(2)));
        assert_eq!(
            parse_for(valid(), Target::Existing(ID)).unwrap().enabled,
            None
        );
    }

    #[test]
    fn an_update_naming_another_article_is_refused() {
        let mut body = valid();
        body["_id"] = json!("1c9e7d0a-3b2f-4e6d-8a1c-5f4b3a2e1d0c");
        body["enabled"] = json!("yes");
        assert_eq!(
            parse_for(body.clone(), Target::Existing(ID)).unwrap_err(),
            ["_id", "enabled"]
        );
        body["_id"] = json!(7);
        body["enabled"] = json!(true);
        assert_eq!(parse_for(body, Target::Existing(ID)).unwrap_err(), ["_id"]);
    }

    #[test]
    fn a_stock_version_is_read_when_sent_and_must_be_a_natural_number() {
        assert_eq!(parse(valid()).unwrap().stock_version, None);
        let mut body = valid();
        body["stockVersion"] = json!(4);
        assert_eq!(parse(body.clone()).unwrap().stock_version, Some(4));
        body["stockVersion"] = json!(null);
        assert_eq!(parse(body.clone()).unwrap().stock_version, None);
        for bad in [json!(-1), json!("4"), json!(1.5)] {
            body["stockVersion"] = bad;
            assert_eq!(parse(body.clone()).unwrap_err(), ["stockVersion"]);
        }
    }

    #[test]
    fn control_characters_are_refused_but_line_breaks_in_descriptions() {
        let mut body = valid();
        body["name"] = json!("La\u{0}mp");
        body["description"] = json!("one\u{7}");
        body["image"] = json!("\u{1b}[0m");
        assert_eq!(parse(body).unwrap_err(), ["name", "description", "image"]);
        let mut body = valid();
        body["description"] = json!("Line one\r\n\tLine two");
        assert!(parse(body).is_ok());
    }

    #[test]
    fn other_unknown_fields_are_ignored() {
        let mut body = valid();
        body["colour"] = json!("red");
        assert!(parse(body).is_ok());
    }

    #[test]
    fn missing_text_fields_read_as_empty() {
        let input = parse(json!({"name": "Lamp", "price": 0, "stock": 0})).unwrap();
        assert_eq!((input.description.as_str(), input.image.as_str()), ("", ""));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let mut body = valid();
        body["name"] = json!("é".repeat(100));
        assert!(parse(body).is_ok());
    }

    #[test]
    fn folding_removes_case_and_latin_accents() {
        assert_eq!(fold("Crème BRÛLÉE"), "creme brulee");
        assert_eq!(fold("Straße Œuvre"), "strasse oeuvre");
        assert_eq!(fold("Ελληνικά"), "ελληνικά");
    }

    #[test]
    fn literal_patterns_escape_every_metacharacter() {
        assert_eq!(literal_pattern("a.b*c"), r"a\.b\*c");
        assert_eq!(literal_pattern(r"(x|y)+\d"), r"\(x\|y\)\+\\d");
        assert_eq!(literal_pattern("é ü"), r"é\ ü");
    }
}

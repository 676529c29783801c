//! The cart and every rule about it, as pure functions on data: what a change does to the lines,
//! how a validation reply applies, what blocks a checkout, what `/cart/validate` reports and how
//! long to wait before re-sending a `place_order`. No I/O here; `store.rs` persists a `Cart` as it
//! is and `service.rs` runs these functions between a read and a conditional write.

use std::time::Duration;

use mongodb::bson::DateTime;
use rabbit::contract::{ArticleDataReply, OrderLine, PlaceOrder};
use serde::{Deserialize, Serialize};

/// The most a line may hold: a bound on what one click can order, well above any real basket.
pub const MAX_QUANTITY: i64 = 10_000;
/// The most distinct articles a cart holds, which bounds the document and the validation fan-out.
pub const MAX_LINES: usize = 100;
/// `articleId` is opaque to cart; this bounds what a client can make it store and send.
pub const MAX_ARTICLE_ID_LEN: usize = 100;

/// A user's cart as stored. `version` grows with every write, so a write made on a stale read
/// is refused and redone (optimistic concurrency, no lost update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// The user id while the cart is active, the cart's own id once closed. A unique index on it
    /// is what keeps one active cart per user, without partial indexes.
    pub active_for: String,
    pub order_id: String,
    pub articles: Vec<Line>,
    pub enabled: bool,
    pub created: DateTime,
    pub updated: DateTime,
    pub version: i64,
    /// The checkout's `place_order`, kept until its `order_placed` arrives (the outbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_order: Option<PendingOrder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub article_id: String,
    pub quantity: i64,
    /// What catalog said the last time it answered about this article.
    pub valid: bool,
    /// Whether catalog has answered at all since the line was added.
    pub validated: bool,
}

/// A `place_order` waiting for its `order_placed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingOrder {
    /// The checkout request's correlation id, carried by every re-send so the order's whole story
    /// is one id in the logs.
    pub correlation_id: String,
    /// Re-sends so far (the send at checkout not counted); drives the backoff.
    pub resends: u32,
    /// When the re-sender sends it again unless `order_placed` came first. Removed once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime>,
}

/// Why a change to a cart is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("the article is not in the cart")]
    NotInCart,
    #[error("at most {MAX_QUANTITY} of one article")]
    TooMany,
    #[error("at most {MAX_LINES} articles in a cart")]
    TooManyLines,
}

/// One entry of `/cart/validate`'s `errors` or `warnings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    pub article_id: String,
    pub message: String,
}

impl Issue {
    fn new(article_id: &str, message: impl Into<String>) -> Self {
        Self {
            article_id: article_id.into(),
            message: message.into(),
        }
    }
}

/// The body of `/cart/validate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Validation {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

impl Cart {
    /// A new, empty, active cart of `user_id`.
    pub fn new(id: String, user_id: &str, now: DateTime) -> Self {
        Self {
            id,
            user_id: user_id.into(),
            active_for: user_id.into(),
            order_id: String::new(),
            articles: Vec::new(),
            enabled: true,
            created: now,
            updated: now,
            version: 0,
            place_order: None,
        }
    }

    fn line_mut(&mut self, article_id: &str) -> Option<&mut Line> {
        self.articles
            .iter_mut()
            .find(|line| line.article_id == article_id)
    }

    pub fn has(&self, article_id: &str) -> bool {
        self.articles
            .iter()
            .any(|line| line.article_id == article_id)
    }

    /// Adds `quantity` of the article, in a new line (not yet validated) or on top of its line.
    pub fn add(&mut self, article_id: &str, quantity: i64) -> Result<(), CartError> {
        if let Some(line) = self.line_mut(article_id) {
            let total = line.quantity.saturating_add(quantity);
            if total > MAX_QUANTITY {
                return Err(CartError::TooMany);
            }
            line.quantity = total;
            return Ok(());
        }
        if quantity > MAX_QUANTITY {
            return Err(CartError::TooMany);
        }
        if self.articles.len() >= MAX_LINES {
            return Err(CartError::TooManyLines);
        }
        self.articles.push(Line {
            article_id: article_id.into(),
            quantity,
            valid: false,
            validated: false,
        });
        Ok(())
    }

    pub fn increment(&mut self, article_id: &str) -> Result<(), CartError> {
        if !self.has(article_id) {
            return Err(CartError::NotInCart);
        }
        self.add(article_id, 1)
    }

    /// Takes one away; the line is removed when it reaches zero.
    pub fn decrement(&mut self, article_id: &str) -> Result<(), CartError> {
        let line = self.line_mut(article_id).ok_or(CartError::NotInCart)?;
        line.quantity -= 1;
        if line.quantity <= 0 {
            self.remove(article_id);
        }
        Ok(())
    }

    /// Removes the article's line; false when there was none.
    pub fn remove(&mut self, article_id: &str) -> bool {
        let before = self.articles.len();
        self.articles.retain(|line| line.article_id != article_id);
        self.articles.len() != before
    }

    /// Records catalog's `article-valid` answer on the article's line. False when nothing changes:
    /// the cart is closed (its lines are what was ordered), the line is gone, or the answer is the
    /// one already recorded.
    pub fn apply_validation(&mut self, article_id: &str, valid: bool) -> bool {
        if !self.enabled {
            return false;
        }
        match self.line_mut(article_id) {
            Some(line) if !line.validated || line.valid != valid => {
                line.validated = true;
                line.valid = valid;
                true
            }
            _ => false,
        }
    }

    /// Records several of catalog's answers (article id, valid) at once; false when none changes
    /// anything (see `apply_validation`).
    pub fn apply_answers<'a>(
        &mut self,
        answers: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> bool {
        answers
            .into_iter()
            .fold(false, |changed, (article_id, valid)| {
                self.apply_validation(article_id, valid) || changed
            })
    }

    /// What blocks a checkout: lines catalog said are invalid. Checkout records catalog's fresh
    /// answers first; only when catalog cannot answer in time do lines it has never answered
    /// about pass, since orders validates every line against catalog again (with stock) and a
    /// checkout must not depend on catalog or RabbitMQ being up.
    pub fn checkout_errors(&self) -> Vec<Issue> {
        self.articles
            .iter()
            .filter(|line| line.validated && !line.valid)
            .map(|line| Issue::new(&line.article_id, "The article is not available"))
            .collect()
    }

    /// Closes the cart for checkout and records its `place_order`, first re-sent at
    /// `first_resend` unless `order_placed` arrives before. Frees `active_for` for the next cart.
    pub fn close(&mut self, correlation_id: &str, first_resend: DateTime, now: DateTime) {
        self.enabled = false;
        self.active_for = self.id.clone();
        self.updated = now;
        self.place_order = Some(PendingOrder {
            correlation_id: correlation_id.into(),
            resends: 0,
            next_attempt: Some(first_resend),
        });
    }

    /// The `place_order` payload of this cart.
    pub fn place_order_message(&self) -> PlaceOrder {
        PlaceOrder {
            cart_id: self.id.clone(),
            user_id: self.user_id.clone(),
            articles: self
                .articles
                .iter()
                .map(|line| OrderLine {
                    article_id: line.article_id.clone(),
                    quantity: line.quantity,
                })
                .collect(),
        }
    }
}

/// `/cart/validate`'s verdict on the lines from catalog's `article-data` answers, asked without
/// a quantity so that `valid` means "exists and is enabled" and the stock is compared here: an
/// unavailable article is an error, too little stock only a warning (catalog may restock).
pub fn validation(lines: &[Line], answers: &[ArticleDataReply]) -> Validation {
    let mut result = Validation::default();
    for (line, answer) in lines.iter().zip(answers) {
        if !answer.valid {
            result.errors.push(Issue::new(
                &line.article_id,
                "The article does not exist or is no longer sold",
            ));
        } else if answer.stock < line.quantity {
            let message = format!("Only {} in stock", answer.stock.max(0));
            result.warnings.push(Issue::new(&line.article_id, message));
        }
    }
    result
}

/// How long to wait after the `resends`-th re-send: `first`, doubled each time, at most `max`.
pub fn resend_delay(first: Duration, max: Duration, resends: u32) -> Duration {
    first
        .checked_mul(2_u32.saturating_pow(resends))
        .unwrap_or(max)
        .min(max)
}

/// `time` plus `delay`, in MongoDB's millisecond dates.
pub fn later(time: DateTime, delay: Duration) -> DateTime {
    let millis = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(time.timestamp_millis().saturating_add(millis))
}

/// `time` minus `delay`, in MongoDB's millisecond dates.
pub fn earlier(time: DateTime, delay: Duration) -> DateTime {
    let millis = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(time.timestamp_millis().saturating_sub(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cart() -> Cart {
        Cart::new("c1".into(), "u1", DateTime::from_millis(0))
    }

    fn answer(valid: bool, stock: i64) -> ArticleDataReply {
        ArticleDataReply {
            reference_id: "c1".into(),
            article_id: "a".into(),
            valid,
            price: 1.0,
            stock,
            quantity: None,
        }
    }

    #[test]
    fn adding_a_new_article_makes_an_unvalidated_line() {
        let mut cart = cart();
        cart.add("a", 2).unwrap();
        assert_eq!(
            cart.articles,
            vec![Line {
                article_id: "a".into(),
                quantity: 2,
                valid: false,
                validated: false
            }]
        );
    }

    #[test]
    fn adding_an_article_already_there_adds_to_its_line() {
        let mut cart = cart();
        cart.add("a", 2).unwrap();
        cart.apply_validation("a", true);
        cart.add("a", 3).unwrap();
        assert_eq!(cart.articles.len(), 1);
        assert_eq!(cart.articles[0].quantity, 5);
        assert!(cart.articles[0].validated, "the article's validity is kept");
    }

    #[test]
    fn a_line_never_exceeds_the_maximum_quantity() {
        let mut cart = cart();
        assert_eq!(cart.add("a", MAX_QUANTITY + 1), Err(CartError::TooMany));
        cart.add("a", MAX_QUANTITY).unwrap();
        assert_eq!(cart.increment("a"), Err(CartError::TooMany));
        assert_eq!(cart.add("a", i64::MAX), Err(CartError::TooMany));
        assert_eq!(cart.articles[0].quantity, MAX_QUANTITY);
    }

    #[test]
    fn a_cart_holds_a_bounded_number_of_articles() {
        let mut cart = cart();
        for n in 0..MAX_LINES {
            cart.add(&n.to_string(), 1).unwrap();
        }
        assert_eq!(cart.add("one more", 1), Err(CartError::TooManyLines));
        cart.add("0", 1).unwrap();
    }

    #[test]
    fn increment_and_decrement_need_the_line() {
        let mut cart = cart();
        assert_eq!(cart.increment("a"), Err(CartError::NotInCart));
        assert_eq!(cart.decrement("a"), Err(CartError::NotInCart));
        assert!(cart.articles.is_empty());
    }

    #[test]
    fn decrementing_to_zero_removes_the_line() {
        let mut cart = cart();
        cart.add("a", 1).unwrap();
        cart.add("b", 1).unwrap();
        cart.increment("a").unwrap();
        cart.decrement("a").unwrap();
        assert_eq!(cart.articles[0].quantity, 1);
        cart.decrement("a").unwrap();
        assert_eq!(cart.articles.len(), 1);
        assert_eq!(cart.articles[0].article_id, "b");
    }

    #[test]
    fn removing_reports_whether_the_line_existed() {
        let mut cart = cart();
        cart.add("a", 4).unwrap();
        assert!(cart.remove("a"));
        assert!(!cart.remove("a"));
    }

    #[test]
    fn a_validation_answer_applies_to_its_line_of_an_active_cart_only() {
        let mut cart = cart();
        cart.add("a", 1).unwrap();
        assert!(!cart.apply_validation("gone", true));
        assert!(cart.apply_validation("a", true));
        assert!(
            !cart.apply_validation("a", true),
            "the same answer changes nothing"
        );
        assert!(cart.apply_validation("a", false));
        assert!(!cart.articles[0].valid);
        cart.close("cid", DateTime::from_millis(0), DateTime::from_millis(0));
        assert!(!cart.apply_validation("a", true));
    }

    #[test]
    fn only_lines_known_to_be_invalid_block_a_checkout() {
        let mut cart = cart();
        cart.add("unanswered", 1).unwrap();
        cart.add("valid", 1).unwrap();
        cart.add("invalid", 1).unwrap();
        cart.apply_validation("valid", true);
        cart.apply_validation("invalid", false);
        let errors = cart.checkout_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].article_id, "invalid");
    }

    #[test]
    fn fresh_answers_override_what_was_stored() {
        let mut cart = cart();
        cart.add("re-enabled", 1).unwrap();
        cart.add("made-up", 1).unwrap();
        cart.apply_validation("re-enabled", false);
        assert!(cart.apply_answers([("re-enabled", true), ("made-up", false)]));
        assert!(!cart.apply_answers([("re-enabled", true)]));
        let errors = cart.checkout_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].article_id, "made-up");
    }

    #[test]
    fn closing_frees_the_user_slot_and_keeps_the_order_to_send() {
        let mut cart = cart();
        cart.add("a", 3).unwrap();
        let due = DateTime::from_millis(5_000);
        cart.close("cid", due, DateTime::from_millis(1_000));
        assert!(!cart.enabled);
        assert_eq!(cart.active_for, "c1");
        let pending = cart.place_order.clone().unwrap();
        assert_eq!(pending.correlation_id, "cid");
        assert_eq!(pending.next_attempt, Some(due));
        let message = cart.place_order_message();
        assert_eq!(
            (message.cart_id.as_str(), message.user_id.as_str()),
            ("c1", "u1")
        );
        assert_eq!(
            message.articles,
            vec![OrderLine {
                article_id: "a".into(),
                quantity: 3
            }]
        );
    }

    #[test]
    fn unavailable_articles_are_errors_and_low_stock_a_warning() {
        let mut cart = cart();
        for (article, quantity) in [("unknown", 1), ("low", 5), ("fine", 2)] {
            cart.add(article, quantity).unwrap();
        }
        let answers = [answer(false, 0), answer(true, 3), answer(true, 2)];
        let result = validation(&cart.articles, &answers);
        assert_eq!(
            result.errors,
            vec![Issue::new(
                "unknown",
                "The article does not exist or is no longer sold"
            )]
        );
        assert_eq!(result.warnings, vec![Issue::new("low", "Only 3 in stock")]);
    }

    #[test]
    fn resends_back_off_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(10), Duration::from_secs(60));
        let delays: Vec<u64> = (0..5)
            .map(|n| resend_delay(first, max, n).as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 60, 60]);
        assert_eq!(resend_delay(first, max, u32::MAX), max);
    }

    #[test]
    fn later_adds_the_delay_in_milliseconds() {
        let time = DateTime::from_millis(1_000);
        assert_eq!(
            later(time, Duration::from_millis(1_500)).timestamp_millis(),
            2_500
        );
    }

    #[test]
    fn earlier_takes_the_delay_away_in_milliseconds() {
        let time = DateTime::from_millis(1_000);
        assert_eq!(
            earlier(time, Duration::from_millis(1_500)).timestamp_millis(),
            -500
        );
    }
}

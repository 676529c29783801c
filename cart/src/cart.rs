//! The cart as an event stream (the course's event sourcing): every change of a cart is an
//! `Event` recorded at the next position of that cart, and the cart is the fold of its events.
//! Here are the pure rules, no I/O: what a change decides (the event to record, or why it is
//! refused), how an event applies, how catalog's answers apply, what blocks a checkout, what
//! `/cart/validate` reports, and how long to wait before re-sending a `place_order`.
//! `store.rs` records the events and `service.rs` runs fold, decide, append.

use std::time::Duration;

use mongodb::bson::DateTime;
use rabbit::contract::{ArticleDataReply, OrderLine, PlaceOrder};
use serde::{Deserialize, Serialize};

/// The most a line may hold: a bound on what one click can order, well above any real basket.
pub const MAX_QUANTITY: i64 = 10_000;
/// The most distinct articles a cart holds, which bounds the cart and the validation fan-out.
pub const MAX_LINES: usize = 100;
/// `articleId` is opaque to cart; this bounds what a client can make it store and send.
pub const MAX_ARTICLE_ID_LEN: usize = 100;

/// The id of the user's `number`-th cart (counted from 0). Deterministic, so that opening a cart
/// is an insert at a key that only one instance can win.
pub fn cart_id(user_id: &str, number: i64) -> String {
    format!("{user_id}:{number}")
}

/// The user a cart id belongs to (the inverse of `cart_id`); `None` for an id cart never makes.
pub fn owner_of(cart_id: &str) -> Option<&str> {
    let (user_id, number) = cart_id.rsplit_once(':')?;
    number.parse::<i64>().is_ok().then_some(user_id)
}

/// What happened to a cart. The first event of every cart is `Opened`, at position 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    Opened {
        user_id: String,
        number: i64,
    },
    /// The article's line now holds `quantity`; 0 removes it.
    LineChanged {
        article_id: String,
        quantity: i64,
    },
    /// Catalog's answers recorded on the lines.
    Answered {
        answers: Vec<Answer>,
    },
    /// The cart is closed and its `place_order` is to be sent (and re-sent) until the order is
    /// recorded. The lines at this position are the order.
    CheckedOut {
        correlation_id: String,
    },
    OrderRecorded {
        order_id: String,
    },
}

/// Catalog's answer about an article, to a question about the line at version `stamp` (none
/// when the reply did not carry it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub article_id: String,
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<i64>,
}

/// Catalog's answers to questions about the lines of cart `cart_id`, each stamped with the
/// version of the line it was asked about: what a checkout keeps between its attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    pub cart_id: String,
    pub answers: Vec<Answer>,
}

/// An event at its position in its cart's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub position: i64,
    pub at: DateTime,
    pub event: Event,
}

/// A cart folded up to `position`. Also what the cache of current carts holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// Which of the user's carts this is (0 for the first).
    pub number: i64,
    pub order_id: String,
    pub articles: Vec<Line>,
    pub enabled: bool,
    pub created: DateTime,
    pub updated: DateTime,
    /// The position of the last event folded in: the next event goes to `position + 1`.
    pub position: i64,
    /// The checkout's correlation id, carried by every send of its `place_order`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// When the `CheckedOut` event was recorded, by the clock of the instance that recorded it.
    /// (A cart cached before this field existed has none, as if closed long ago.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<DateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub article_id: String,
    pub quantity: i64,
    /// What catalog said the last time an answer was recorded for this article.
    pub valid: bool,
    /// Whether an answer was recorded since the line was added.
    pub validated: bool,
    /// The position of the event that last changed the line: the stamp of questions about it.
    pub version: i64,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Validation {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

impl Cart {
    /// The cart of `events`, which start at its `Opened` event; `None` when they do not.
    pub fn replay(id: &str, events: &[Recorded]) -> Option<Self> {
        let (first, rest) = events.split_first()?;
        let Event::Opened { user_id, number } = &first.event else {
            return None;
        };
        let mut cart = Self {
            id: id.into(),
            user_id: user_id.clone(),
            number: *number,
            order_id: String::new(),
            articles: Vec::new(),
            enabled: true,
            created: first.at,
            updated: first.at,
            position: first.position,
            correlation_id: None,
            closed: None,
        };
        cart.catch_up(rest);
        Some(cart)
    }

    /// Folds in the events after `position` (any others are already in).
    pub fn catch_up(&mut self, events: &[Recorded]) {
        for recorded in events {
            if recorded.position > self.position {
                self.apply(recorded);
            }
        }
    }

    fn apply(&mut self, recorded: &Recorded) {
        self.position = recorded.position;
        self.updated = recorded.at;
        match &recorded.event {
            Event::Opened { .. } => {}
            Event::LineChanged {
                article_id,
                quantity,
            } => self.set_line(article_id, *quantity, recorded.position),
            Event::Answered { answers } => {
                for answer in answers {
                    if let Some(line) = self.line_mut(&answer.article_id) {
                        line.validated = true;
                        line.valid = answer.valid;
                    }
                }
            }
            Event::CheckedOut { correlation_id } => {
                self.enabled = false;
                self.correlation_id = Some(correlation_id.clone());
                self.closed = Some(recorded.at);
            }
            Event::OrderRecorded { order_id } => self.order_id = order_id.clone(),
        }
    }

    fn set_line(&mut self, article_id: &str, quantity: i64, version: i64) {
        if quantity <= 0 {
            self.articles.retain(|line| line.article_id != article_id);
        } else if let Some(line) = self.line_mut(article_id) {
            line.quantity = quantity;
            line.version = version;
        } else {
            self.articles.push(Line {
                article_id: article_id.into(),
                quantity,
                valid: false,
                validated: false,
                version,
            });
        }
    }

    fn line(&self, article_id: &str) -> Option<&Line> {
        self.articles
            .iter()
            .find(|line| line.article_id == article_id)
    }

    fn line_mut(&mut self, article_id: &str) -> Option<&mut Line> {
        self.articles
            .iter_mut()
            .find(|line| line.article_id == article_id)
    }

    pub fn has(&self, article_id: &str) -> bool {
        self.line(article_id).is_some()
    }

    /// The version of the article's line, the stamp of a question about it.
    pub fn version_of(&self, article_id: &str) -> Option<i64> {
        self.line(article_id).map(|line| line.version)
    }

    /// Adds `quantity` of the article, in a new line (not yet validated) or on top of its line.
    pub fn add(&self, article_id: &str, quantity: i64) -> Result<Event, CartError> {
        let total = match self.line(article_id) {
            Some(line) => line.quantity.saturating_add(quantity),
            None if self.articles.len() >= MAX_LINES => return Err(CartError::TooManyLines),
            None => quantity,
        };
        if total > MAX_QUANTITY {
            return Err(CartError::TooMany);
        }
        Ok(line_changed(article_id, total))
    }

    pub fn increment(&self, article_id: &str) -> Result<Event, CartError> {
        if !self.has(article_id) {
            return Err(CartError::NotInCart);
        }
        self.add(article_id, 1)
    }

    /// Takes one away; a line reaching zero is removed.
    pub fn decrement(&self, article_id: &str) -> Result<Event, CartError> {
        let line = self.line(article_id).ok_or(CartError::NotInCart)?;
        Ok(line_changed(article_id, line.quantity - 1))
    }

    /// Removes the article's line; `None` when there is none (nothing to record).
    pub fn remove(&self, article_id: &str) -> Option<Event> {
        self.has(article_id).then(|| line_changed(article_id, 0))
    }

    /// The event recording those of catalog's `answers` that change something; `None` when none
    /// does. An answer is dropped when the cart is closed (its lines are what was ordered), the
    /// line is gone, or the line changed since the question: every change asks again, so a late
    /// answer about an older version of the line never replaces the answer about the current one.
    pub fn answers(&self, answers: impl IntoIterator<Item = Answer>) -> Option<Event> {
        if !self.enabled {
            return None;
        }
        let mut recorded: Vec<Answer> = Vec::new();
        for answer in answers {
            let Some(line) = self.line(&answer.article_id) else {
                continue;
            };
            if answer.stamp.is_some_and(|stamp| stamp < line.version) {
                continue;
            }
            recorded.retain(|earlier| earlier.article_id != answer.article_id);
            if !line.validated || line.valid != answer.valid {
                recorded.push(answer);
            }
        }
        (!recorded.is_empty()).then_some(Event::Answered { answers: recorded })
    }

    /// Whether `answers` were asked about this cart and hold one about every line as it stands
    /// now (stamped with its version): then a checkout that lost its race to a change that left
    /// the lines alone (catalog's asynchronous answer to the last add, typically) decides again
    /// without asking again. Answers about another cart answer nothing here, even where its
    /// lines have the same articles at the same versions (the user's next cart, say).
    pub fn answered_by(&self, answers: &Answers) -> bool {
        answers.cart_id == self.id
            && self.articles.iter().all(|line| {
                answers.answers.iter().any(|answer| {
                    answer.article_id == line.article_id && answer.stamp == Some(line.version)
                })
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

    /// Whether a checkout closed the cart at `time` or later: a checkout that started at `time`
    /// and finds it closed lost the race to that one, and answers with this cart.
    pub fn closed_since(&self, time: DateTime) -> bool {
        self.closed.is_some_and(|closed| closed >= time)
    }

    /// Closed and no order recorded yet: its `place_order` is still to be delivered.
    pub fn waits_for_order(&self) -> bool {
        !self.enabled && self.order_id.is_empty()
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

fn line_changed(article_id: &str, quantity: i64) -> Event {
    Event::LineChanged {
        article_id: article_id.into(),
        quantity,
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

/// User `u1`'s cart `number` as folded up to `position` (only its opening event is real): for
/// the unit tests of the modules that order carts.
#[cfg(test)]
pub fn test_cart(number: i64, position: i64) -> Cart {
    let opened = Recorded {
        position: 0,
        at: DateTime::from_millis(0),
        event: Event::Opened {
            user_id: "u1".into(),
            number,
        },
    };
    let mut cart = Cart::replay(&cart_id("u1", number), &[opened]).expect("an opened cart");
    cart.position = position;
    cart
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cart that records what it decides, as `service.rs` does through the store.
    struct Stream {
        cart: Cart,
    }

    impl Stream {
        fn new() -> Self {
            let opened = Recorded {
                position: 0,
                at: DateTime::from_millis(0),
                event: Event::Opened {
                    user_id: "u1".into(),
                    number: 0,
                },
            };
            Self {
                cart: Cart::replay("u1:0", &[opened]).unwrap(),
            }
        }

        fn record(&mut self, event: Event) {
            let position = self.cart.position + 1;
            let at = DateTime::from_millis(position * 1_000);
            self.cart.catch_up(&[Recorded {
                position,
                at,
                event,
            }]);
        }

        fn decide(&mut self, decision: Result<Event, CartError>) -> Result<(), CartError> {
            self.record(decision?);
            Ok(())
        }

        fn answer(&mut self, article_id: &str, valid: bool, stamp: Option<i64>) -> bool {
            let answer = Answer {
                article_id: article_id.into(),
                valid,
                stamp,
            };
            match self.cart.answers([answer]) {
                Some(event) => {
                    self.record(event);
                    true
                }
                None => false,
            }
        }

        fn check_out(&mut self) {
            self.record(Event::CheckedOut {
                correlation_id: "cid".into(),
            });
        }
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
    fn answers_cover_a_cart_until_one_of_its_lines_changes() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 1)).unwrap();
        stream.decide(stream.cart.add("b", 1)).unwrap();
        let asked = stream.cart.clone();
        let answers = Answers {
            cart_id: asked.id.clone(),
            answers: asked
                .articles
                .iter()
                .map(|line| Answer {
                    article_id: line.article_id.clone(),
                    valid: true,
                    stamp: Some(line.version),
                })
                .collect(),
        };
        assert!(asked.answered_by(&answers));
        let first_line_only = Answers {
            answers: answers.answers[..1].to_vec(),
            ..answers.clone()
        };
        assert!(!asked.answered_by(&first_line_only));
        // The next cart of the user with the same lines at the same versions is another cart.
        let mut next = asked.clone();
        next.id = cart_id("u1", 1);
        assert!(!next.answered_by(&answers));
        // An answer recorded meanwhile leaves the lines as they were asked about.
        assert!(stream.answer("a", true, Some(asked.line("a").unwrap().version)));
        assert!(stream.cart.answered_by(&answers));
        // A line changed since (even back to the same quantity) needs a new question.
        stream.decide(stream.cart.add("b", 1)).unwrap();
        stream.decide(stream.cart.decrement("b")).unwrap();
        assert!(!stream.cart.answered_by(&answers));
    }

    #[test]
    fn cart_ids_are_derived_from_the_user_and_lead_back_to_it() {
        assert_eq!(cart_id("65a0", 3), "65a0:3");
        assert_eq!(owner_of("65a0:3"), Some("65a0"));
        assert_eq!(owner_of(&cart_id("odd:user", 0)), Some("odd:user"));
        assert_eq!(owner_of("no-such-cart"), None);
        assert_eq!(owner_of("a:b"), None);
    }

    #[test]
    fn a_cart_is_the_fold_of_its_events_and_catching_up_skips_what_is_in() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 2)).unwrap();
        stream.decide(stream.cart.add("b", 1)).unwrap();
        let events: Vec<Recorded> = vec![
            Recorded {
                position: 0,
                at: DateTime::from_millis(0),
                event: Event::Opened {
                    user_id: "u1".into(),
                    number: 0,
                },
            },
            Recorded {
                position: 1,
                at: DateTime::from_millis(1_000),
                event: line_changed("a", 2),
            },
            Recorded {
                position: 2,
                at: DateTime::from_millis(2_000),
                event: line_changed("b", 1),
            },
        ];
        let replayed = Cart::replay("u1:0", &events).unwrap();
        assert_eq!(replayed, stream.cart);
        let mut caught_up = Cart::replay("u1:0", &events[..1]).unwrap();
        caught_up.catch_up(&events);
        assert_eq!(caught_up, stream.cart);
        assert_eq!(Cart::replay("u1:0", &events[1..]), None);
    }

    #[test]
    fn adding_a_new_article_makes_an_unvalidated_line() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 2)).unwrap();
        let line = &stream.cart.articles[0];
        assert_eq!(
            (
                line.article_id.as_str(),
                line.quantity,
                line.valid,
                line.validated
            ),
            ("a", 2, false, false)
        );
        assert_eq!(line.version, 1);
    }

    #[test]
    fn adding_an_article_already_there_adds_to_its_line() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 2)).unwrap();
        stream.answer("a", true, Some(1));
        stream.decide(stream.cart.add("a", 3)).unwrap();
        assert_eq!(stream.cart.articles.len(), 1);
        assert_eq!(stream.cart.articles[0].quantity, 5);
        assert!(stream.cart.articles[0].validated, "the validity is kept");
    }

    #[test]
    fn a_line_never_exceeds_the_maximum_quantity() {
        let mut stream = Stream::new();
        assert_eq!(
            stream.cart.add("a", MAX_QUANTITY + 1),
            Err(CartError::TooMany)
        );
        stream.decide(stream.cart.add("a", MAX_QUANTITY)).unwrap();
        assert_eq!(stream.cart.increment("a"), Err(CartError::TooMany));
        assert_eq!(stream.cart.add("a", i64::MAX), Err(CartError::TooMany));
        assert_eq!(stream.cart.articles[0].quantity, MAX_QUANTITY);
    }

    #[test]
    fn a_cart_holds_a_bounded_number_of_articles() {
        let mut stream = Stream::new();
        for n in 0..MAX_LINES {
            stream.decide(stream.cart.add(&n.to_string(), 1)).unwrap();
        }
        assert_eq!(stream.cart.add("one more", 1), Err(CartError::TooManyLines));
        stream.decide(stream.cart.add("0", 1)).unwrap();
    }

    #[test]
    fn increment_and_decrement_need_the_line() {
        let stream = Stream::new();
        assert_eq!(stream.cart.increment("a"), Err(CartError::NotInCart));
        assert_eq!(stream.cart.decrement("a"), Err(CartError::NotInCart));
    }

    #[test]
    fn decrementing_to_zero_removes_the_line() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 1)).unwrap();
        stream.decide(stream.cart.add("b", 1)).unwrap();
        stream.decide(stream.cart.increment("a")).unwrap();
        stream.decide(stream.cart.decrement("a")).unwrap();
        assert_eq!(stream.cart.articles[0].quantity, 1);
        stream.decide(stream.cart.decrement("a")).unwrap();
        assert_eq!(stream.cart.articles.len(), 1);
        assert_eq!(stream.cart.articles[0].article_id, "b");
    }

    #[test]
    fn removing_a_line_that_is_not_there_records_nothing() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 4)).unwrap();
        stream.record(stream.cart.remove("a").unwrap());
        assert!(stream.cart.articles.is_empty());
        assert_eq!(stream.cart.remove("a"), None);
    }

    #[test]
    fn an_answer_applies_to_its_line_of_an_active_cart_only() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 1)).unwrap();
        assert!(!stream.answer("gone", true, Some(1)));
        assert!(stream.answer("a", true, Some(1)));
        assert!(
            !stream.answer("a", true, Some(1)),
            "the same answer changes nothing"
        );
        assert!(
            stream.answer("a", false, Some(1)),
            "catalog changed its mind"
        );
        assert!(!stream.cart.articles[0].valid);
        stream.check_out();
        assert!(!stream.answer("a", true, Some(9)));
    }

    #[test]
    fn a_late_answer_about_an_older_version_of_the_line_is_dropped() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 1)).unwrap();
        let first = stream.cart.version_of("a");
        stream.decide(stream.cart.increment("a")).unwrap();
        let current = stream.cart.version_of("a");
        assert!(stream.answer("a", true, current));
        assert!(!stream.answer("a", false, first));
        assert!(stream.cart.articles[0].valid);
        assert!(
            stream.answer("a", false, current),
            "catalog changed its mind"
        );
    }

    #[test]
    fn an_answer_without_a_stamp_applies_to_the_line_as_it_is() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 1)).unwrap();
        stream.decide(stream.cart.increment("a")).unwrap();
        assert!(stream.answer("a", true, None));
        assert!(!stream.answer("a", true, None));
        assert!(stream.answer("a", false, None));
    }

    #[test]
    fn only_lines_known_to_be_invalid_block_a_checkout() {
        let mut stream = Stream::new();
        for article in ["unanswered", "valid", "invalid"] {
            stream.decide(stream.cart.add(article, 1)).unwrap();
        }
        stream.answer("valid", true, Some(2));
        stream.answer("invalid", false, Some(3));
        let errors = stream.cart.checkout_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].article_id, "invalid");
    }

    #[test]
    fn several_answers_are_one_event_keeping_the_last_about_each_article() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("re-enabled", 1)).unwrap();
        stream.decide(stream.cart.add("made-up", 1)).unwrap();
        stream.answer("re-enabled", false, Some(1));
        let fresh = [("re-enabled", true), ("made-up", true), ("made-up", false)].map(
            |(article_id, valid)| Answer {
                article_id: article_id.into(),
                valid,
                stamp: Some(2),
            },
        );
        let Some(Event::Answered { answers }) = stream.cart.answers(fresh.clone()) else {
            panic!("the answers change the cart");
        };
        assert_eq!(answers.len(), 2);
        stream.record(Event::Answered { answers });
        assert_eq!(stream.cart.answers(fresh), None);
        let errors = stream.cart.checkout_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].article_id, "made-up");
    }

    #[test]
    fn a_checked_out_cart_waits_for_its_order_with_its_lines_as_the_order() {
        let mut stream = Stream::new();
        stream.decide(stream.cart.add("a", 3)).unwrap();
        assert!(!stream.cart.waits_for_order());
        assert!(!stream.cart.closed_since(DateTime::from_millis(0)));
        stream.check_out();
        assert!(!stream.cart.enabled);
        assert!(stream.cart.waits_for_order());
        let closed = stream.cart.updated;
        assert!(stream.cart.closed_since(closed));
        assert!(
            !stream
                .cart
                .closed_since(later(closed, Duration::from_millis(1)))
        );
        assert_eq!(stream.cart.correlation_id.as_deref(), Some("cid"));
        let message = stream.cart.place_order_message();
        assert_eq!(
            (message.cart_id.as_str(), message.user_id.as_str()),
            ("u1:0", "u1")
        );
        assert_eq!(
            message.articles,
            vec![OrderLine {
                article_id: "a".into(),
                quantity: 3
            }]
        );
        stream.record(Event::OrderRecorded {
            order_id: "o1".into(),
        });
        assert!(!stream.cart.waits_for_order());
        assert_eq!(stream.cart.order_id, "o1");
        assert!(
            stream.cart.closed_since(closed),
            "the close, not the last event"
        );
    }

    #[test]
    fn events_are_stored_with_their_type() {
        let event = Event::LineChanged {
            article_id: "a".into(),
            quantity: 2,
        };
        let stored = mongodb::bson::to_document(&event).unwrap();
        assert_eq!(
            stored,
            mongodb::bson::doc! {"type": "lineChanged", "articleId": "a", "quantity": 2_i64}
        );
        assert_eq!(
            mongodb::bson::from_document::<Event>(stored).unwrap(),
            event
        );
    }

    #[test]
    fn unavailable_articles_are_errors_and_low_stock_a_warning() {
        let mut stream = Stream::new();
        for (article, quantity) in [("unknown", 1), ("low", 5), ("fine", 2)] {
            stream.decide(stream.cart.add(article, quantity)).unwrap();
        }
        let answers = [answer(false, 0), answer(true, 3), answer(true, 2)];
        let result = validation(&stream.cart.articles, &answers);
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

//! The order as an event stream: the events, the state they fold into, and the decisions that
//! turn a command into the next event. Pure logic, no I/O.
//!
//! Money is a JSON number (f64) on the wire; every comparison and sum is done in whole cents, so
//! `0.1 + 0.2` pays a `0.30` order exactly.

use mongodb::bson::DateTime;
use rabbit::contract::OrderLine;
use serde::{Deserialize, Serialize};

/// What happened to an order. Stored as `type` + `data`, never changed once appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// A closed cart became an order.
    #[serde(rename_all = "camelCase")]
    Placed {
        cart_id: String,
        user_id: String,
        articles: Vec<OrderLine>,
        /// The correlation id of the `place_order` that made the order, which every
        /// `order_placed` of the order carries: catalog's replies must echo it. (Orders placed
        /// before it was recorded have none, and take any reply from catalog.)
        #[serde(default, skip_serializing_if = "String::is_empty")]
        correlation_id: String,
    },
    /// Catalog's answer for one line: valid or not, with the price and stock it saw.
    #[serde(rename_all = "camelCase")]
    ArticleValidated {
        article_id: String,
        valid: bool,
        unitary_price: f64,
        stock: i64,
    },
    /// The owner paid part or all of the balance.
    #[serde(rename_all = "camelCase")]
    PaymentAdded {
        payment_id: String,
        method: Method,
        amount: f64,
    },
}

impl Event {
    /// The event's deterministic `_id`: the same fact always gets the same id, so a repeated
    /// message stores it once. A placed event is keyed by its cart: one order per cart.
    pub fn id(&self, order_id: &str) -> String {
        match self {
            Self::Placed { cart_id, .. } => format!("placed:{cart_id}"),
            Self::ArticleValidated { article_id, .. } => {
                format!("{order_id}:article:{article_id}")
            }
            Self::PaymentAdded { payment_id, .. } => format!("{order_id}:payment:{payment_id}"),
        }
    }
}

/// An event with its place in the order's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub position: i64,
    pub created: DateTime,
    pub event: Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Placed,
    Validated,
    Invalid,
    PaymentDefined,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "PLACED",
            Self::Validated => "VALIDATED",
            Self::Invalid => "INVALID",
            Self::PaymentDefined => "PAYMENT_DEFINED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Method {
    Cash,
    Credit,
    Debit,
}

impl Method {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "CASH" => Some(Self::Cash),
            "CREDIT" => Some(Self::Credit),
            "DEBIT" => Some(Self::Debit),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub article_id: String,
    pub quantity: i64,
    pub unitary_price: f64,
    pub valid: bool,
    pub validated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: String,
    pub method: Method,
    pub amount: f64,
}

/// An order's state: the fold of its events, as the Order projection stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    #[serde(rename = "orderId")]
    pub id: String,
    pub user_id: String,
    pub cart_id: String,
    pub status: Status,
    pub articles: Vec<Line>,
    pub payments: Vec<Payment>,
    /// Position of the last event folded in.
    pub position: i64,
    pub created: DateTime,
    pub updated: DateTime,
    /// What catalog's replies for the order must carry as their correlation id (see
    /// [`Event::Placed`]); not part of the projection.
    #[serde(skip)]
    pub correlation_id: String,
}

/// Whole cents of an amount; amounts finer than a cent round to the nearest, and a payment is
/// stored in whole cents. In i128, where the cast saturates and sums saturate too, so no price,
/// quantity or count of lines can overflow (i64 wrapped a big total negative).
pub fn cents(amount: f64) -> i128 {
    (amount * 100.0).round() as i128
}

/// A line's `unitaryPrice × quantity`, rounded to the cent once: rounding each unit first would
/// make 8 × 0.125 cost 1.04.
fn line_cents(line: &Line) -> i128 {
    cents(line.unitary_price * line.quantity as f64)
}

fn sum_cents(amounts: impl Iterator<Item = i128>) -> i128 {
    amounts.fold(0, i128::saturating_add)
}

impl Order {
    pub fn total_price_cents(&self) -> i128 {
        sum_cents(self.articles.iter().map(line_cents))
    }

    pub fn total_payment_cents(&self) -> i128 {
        sum_cents(self.payments.iter().map(|payment| cents(payment.amount)))
    }

    pub fn lines(&self) -> Vec<OrderLine> {
        self.articles
            .iter()
            .map(|line| OrderLine {
                article_id: line.article_id.clone(),
                quantity: line.quantity,
            })
            .collect()
    }

    /// The lines catalog reserved stock for: the valid ones.
    pub fn reserved_lines(&self) -> Vec<OrderLine> {
        self.articles
            .iter()
            .filter(|line| line.valid)
            .map(|line| OrderLine {
                article_id: line.article_id.clone(),
                quantity: line.quantity,
            })
            .collect()
    }

    /// An order stays PLACED until every line has catalog's answer, then is INVALID if any line
    /// is, else VALIDATED, and PAYMENT_DEFINED once the payments cover the total.
    fn status_now(&self) -> Status {
        if self.articles.iter().any(|line| !line.validated) {
            Status::Placed
        } else if self.articles.iter().any(|line| !line.valid) {
            Status::Invalid
        } else if self.total_payment_cents() >= self.total_price_cents() {
            Status::PaymentDefined
        } else {
            Status::Validated
        }
    }

    fn apply(&mut self, recorded: &Recorded) {
        match &recorded.event {
            Event::Placed { .. } => {}
            Event::ArticleValidated {
                article_id,
                valid,
                unitary_price,
                ..
            } => {
                if let Some(line) = self.line_mut(article_id) {
                    line.valid = *valid;
                    line.validated = true;
                    line.unitary_price = *unitary_price;
                }
            }
            Event::PaymentAdded {
                payment_id,
                method,
                amount,
            } => self.payments.push(Payment {
                id: payment_id.clone(),
                method: *method,
                amount: *amount,
            }),
        }
        self.status = self.status_now();
        self.position = recorded.position;
        self.updated = recorded.created;
    }

    fn line_mut(&mut self, article_id: &str) -> Option<&mut Line> {
        self.articles
            .iter_mut()
            .find(|line| line.article_id == article_id)
    }

    fn line(&self, article_id: &str) -> Option<&Line> {
        self.articles
            .iter()
            .find(|line| line.article_id == article_id)
    }
}

/// Folds an order's events, in position order, into its state; `None` without a placed event
/// first.
pub fn fold(order_id: &str, events: &[Recorded]) -> Option<Order> {
    let (first, rest) = events.split_first()?;
    let Event::Placed {
        cart_id,
        user_id,
        articles,
        correlation_id,
    } = &first.event
    else {
        return None;
    };
    let mut order = Order {
        id: order_id.to_owned(),
        user_id: user_id.clone(),
        cart_id: cart_id.clone(),
        status: Status::Placed,
        articles: articles
            .iter()
            .map(|line| Line {
                article_id: line.article_id.clone(),
                quantity: line.quantity,
                unitary_price: 0.0,
                valid: false,
                validated: false,
            })
            .collect(),
        payments: Vec::new(),
        position: first.position,
        created: first.created,
        updated: first.created,
        correlation_id: correlation_id.clone(),
    };
    for recorded in rest {
        order.apply(recorded);
    }
    Some(order)
}

/// The order as it stood right after the payment `payment_id` was added: what that payment's
/// request answered, and what a retry of it answers again. `None` when there is no such payment.
pub fn fold_through_payment(
    order_id: &str,
    events: &[Recorded],
    payment_id: &str,
) -> Option<Order> {
    let paid_at = events.iter().position(|recorded| {
        matches!(&recorded.event, Event::PaymentAdded { payment_id: id, .. } if id == payment_id)
    })?;
    fold(order_id, &events[..=paid_at])
}

/// A cart's lines with one line per article: repeated articles are added up, so that catalog's
/// one reply per article answers exactly one line.
pub fn merge_lines(lines: &[OrderLine]) -> Vec<OrderLine> {
    let mut merged: Vec<OrderLine> = Vec::with_capacity(lines.len());
    for line in lines {
        match merged
            .iter_mut()
            .find(|known| known.article_id == line.article_id)
        {
            Some(known) => known.quantity += line.quantity,
            None => merged.push(line.clone()),
        }
    }
    merged
}

/// What a client or catalog asks of an existing order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Catalog's `article-data` reply for one line, with the correlation id it carried.
    ValidateArticle {
        article_id: String,
        valid: bool,
        price: f64,
        stock: i64,
        correlation_id: String,
    },
    AddPayment {
        payment_id: String,
        method: Method,
        amount: f64,
    },
}

/// Why a command cannot apply to the order as it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("the order has no line for article {0}")]
    UnknownArticle(String),
    #[error("Only VALIDATED orders take payments; this one is {0}")]
    NotValidated(&'static str),
    #[error("The amount exceeds the unpaid balance of {0:.2}")]
    ExceedsBalance(f64),
    #[error("The amount must be at least 0.01")]
    NotPositive,
    /// An idempotency key names a payment already made with another method or amount.
    #[error("Idempotency-Key reused with a different payment")]
    KeyReused,
    /// An `article-data` that does not answer the order's `order_placed`: a plain validation
    /// request's answer, or a forgery. It must not decide the order (nothing was reserved).
    #[error("the reply's correlation id {0:?} is not the one of the order's order_placed")]
    NotAnAnswer(String),
}

/// The event a command adds to the order, `None` when it already happened (a duplicate reply).
pub fn decide(order: &Order, command: &Command) -> Result<Option<Event>, Rejection> {
    match command {
        Command::ValidateArticle {
            article_id,
            valid,
            price,
            stock,
            correlation_id,
        } => {
            if !order.correlation_id.is_empty() && *correlation_id != order.correlation_id {
                return Err(Rejection::NotAnAnswer(correlation_id.clone()));
            }
            let line = order
                .line(article_id)
                .ok_or_else(|| Rejection::UnknownArticle(article_id.clone()))?;
            if line.validated {
                return Ok(None);
            }
            Ok(Some(Event::ArticleValidated {
                article_id: article_id.clone(),
                valid: *valid,
                unitary_price: *price,
                stock: *stock,
            }))
        }
        Command::AddPayment {
            payment_id,
            method,
            amount,
        } => {
            if let Some(made) = order
                .payments
                .iter()
                .find(|payment| &payment.id == payment_id)
            {
                // A retry of a payment made before, or the same key reused for another one.
                return if made.method == *method && cents(made.amount) == cents(*amount) {
                    Ok(None)
                } else {
                    Err(Rejection::KeyReused)
                };
            }
            if order.status != Status::Validated {
                return Err(Rejection::NotValidated(order.status.as_str()));
            }
            let amount_cents = cents(*amount);
            if amount_cents <= 0 {
                return Err(Rejection::NotPositive);
            }
            let balance = order
                .total_price_cents()
                .saturating_sub(order.total_payment_cents());
            if amount_cents > balance {
                return Err(Rejection::ExceedsBalance(balance as f64 / 100.0));
            }
            Ok(Some(Event::PaymentAdded {
                payment_id: payment_id.clone(),
                method: *method,
                amount: amount_cents as f64 / 100.0,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64, event: Event) -> Recorded {
        Recorded {
            position,
            created: DateTime::from_millis(1_000 + position),
            event,
        }
    }

    /// The correlation id of the `place_order` of the orders of these tests.
    const CHECKOUT: &str = "checkout-1";

    fn placed(lines: &[(&str, i64)]) -> Recorded {
        at(
            0,
            Event::Placed {
                cart_id: "cart-1".into(),
                user_id: "user-1".into(),
                correlation_id: CHECKOUT.into(),
                articles: lines
                    .iter()
                    .map(|(article_id, quantity)| OrderLine {
                        article_id: (*article_id).into(),
                        quantity: *quantity,
                    })
                    .collect(),
            },
        )
    }

    fn validated(position: i64, article_id: &str, valid: bool, price: f64) -> Recorded {
        at(
            position,
            Event::ArticleValidated {
                article_id: article_id.into(),
                valid,
                unitary_price: price,
                stock: 10,
            },
        )
    }

    fn paid(position: i64, amount: f64) -> Recorded {
        at(
            position,
            Event::PaymentAdded {
                payment_id: format!("p{position}"),
                method: Method::Cash,
                amount,
            },
        )
    }

    fn payment(amount: f64) -> Command {
        Command::AddPayment {
            payment_id: "new".into(),
            method: Method::Credit,
            amount,
        }
    }

    fn order(events: &[Recorded]) -> Order {
        fold("order-1", events).expect("a placed order")
    }

    #[test]
    fn repeated_articles_merge_into_one_line() {
        let line = |article_id: &str, quantity| OrderLine {
            article_id: article_id.into(),
            quantity,
        };

        let merged = merge_lines(&[line("a", 1), line("b", 2), line("a", 3)]);

        assert_eq!(merged, vec![line("a", 4), line("b", 2)]);
    }

    #[test]
    fn event_ids_are_the_same_for_the_same_fact() {
        let placed = placed(&[("a", 1)]).event;
        assert_eq!(placed.id("o1"), "placed:cart-1");
        assert_eq!(placed.id("o2"), "placed:cart-1");
        assert_eq!(validated(1, "a", true, 1.0).event.id("o1"), "o1:article:a");
        assert_eq!(paid(2, 1.0).event.id("o1"), "o1:payment:p2");
    }

    #[test]
    fn a_placed_order_has_unvalidated_lines_and_no_total() {
        let order = order(&[placed(&[("a", 2), ("b", 1)])]);

        assert_eq!(order.status, Status::Placed);
        assert_eq!(order.articles.len(), 2);
        assert!(order.articles.iter().all(|line| !line.validated));
        assert_eq!(order.total_price_cents(), 0);
        assert_eq!((order.position, order.created), (0, order.updated));
    }

    #[test]
    fn an_order_stays_placed_until_every_line_has_an_answer() {
        let order = order(&[placed(&[("a", 2), ("b", 1)]), validated(1, "a", true, 3.5)]);

        assert_eq!(order.status, Status::Placed);
        assert_eq!(order.position, 1);
    }

    #[test]
    fn every_line_valid_makes_the_order_validated_with_its_total() {
        let order = order(&[
            placed(&[("a", 2), ("b", 1)]),
            validated(1, "b", true, 0.1),
            validated(2, "a", true, 3.35),
        ]);

        assert_eq!(order.status, Status::Validated);
        assert_eq!(order.total_price_cents(), 680);
        assert_eq!(order.updated, DateTime::from_millis(1_002));
    }

    #[test]
    fn one_invalid_line_makes_the_order_invalid_once_every_line_answered() {
        let waiting = order(&[placed(&[("a", 1), ("b", 1)]), validated(1, "a", false, 0.0)]);
        assert_eq!(waiting.status, Status::Placed);

        let answered = order(&[
            placed(&[("a", 1), ("b", 1)]),
            validated(1, "a", false, 0.0),
            validated(2, "b", true, 2.0),
        ]);
        assert_eq!(answered.status, Status::Invalid);
        assert_eq!(
            answered.reserved_lines(),
            vec![OrderLine {
                article_id: "b".into(),
                quantity: 1
            }]
        );
    }

    #[test]
    fn payments_covering_the_total_define_the_payment() {
        let events = [placed(&[("a", 3)]), validated(1, "a", true, 0.1)];
        let partly = order(&[events.to_vec(), vec![paid(2, 0.2)]].concat());
        assert_eq!(partly.status, Status::Validated);

        let fully = order(&[events.to_vec(), vec![paid(2, 0.2), paid(3, 0.1)]].concat());
        assert_eq!(fully.status, Status::PaymentDefined);
        assert_eq!(fully.total_payment_cents(), 30);
    }

    #[test]
    fn events_without_a_placed_event_first_fold_into_nothing() {
        assert_eq!(fold("o", &[]), None);
        assert_eq!(fold("o", &[validated(0, "a", true, 1.0)]), None);
    }

    #[test]
    fn a_repeated_answer_for_a_line_decides_nothing() {
        let order = order(&[placed(&[("a", 1), ("b", 1)]), validated(1, "a", true, 1.0)]);
        let again = Command::ValidateArticle {
            article_id: "a".into(),
            valid: false,
            price: 9.0,
            stock: 0,
            correlation_id: CHECKOUT.into(),
        };

        assert_eq!(decide(&order, &again), Ok(None));
    }

    #[test]
    fn an_answer_for_an_article_not_in_the_order_is_rejected() {
        let order = order(&[placed(&[("a", 1)])]);
        let stranger = Command::ValidateArticle {
            article_id: "z".into(),
            valid: true,
            price: 1.0,
            stock: 1,
            correlation_id: CHECKOUT.into(),
        };

        assert_eq!(
            decide(&order, &stranger),
            Err(Rejection::UnknownArticle("z".into()))
        );
    }

    #[test]
    fn only_an_answer_to_the_orders_order_placed_decides_a_line() {
        let answer = |correlation_id: &str| Command::ValidateArticle {
            article_id: "a".into(),
            valid: true,
            price: 0.0,
            stock: 0,
            correlation_id: correlation_id.into(),
        };
        let order = order(&[placed(&[("a", 1)])]);
        assert_eq!(
            decide(&order, &answer("a plain request")),
            Err(Rejection::NotAnAnswer("a plain request".into()))
        );
        assert!(matches!(decide(&order, &answer(CHECKOUT)), Ok(Some(_))));

        // Placed before the correlation id was recorded: any reply from catalog answers it.
        let mut legacy = placed(&[("a", 1)]);
        if let Event::Placed { correlation_id, .. } = &mut legacy.event {
            correlation_id.clear();
        }
        let legacy = self::order(&[legacy]);
        assert!(matches!(decide(&legacy, &answer("any")), Ok(Some(_))));
    }

    #[test]
    fn only_validated_orders_take_payments() {
        let placed_only = order(&[placed(&[("a", 1)])]);
        assert_eq!(
            decide(&placed_only, &payment(1.0)),
            Err(Rejection::NotValidated("PLACED"))
        );

        let invalid = order(&[placed(&[("a", 1)]), validated(1, "a", false, 0.0)]);
        assert_eq!(
            decide(&invalid, &payment(1.0)),
            Err(Rejection::NotValidated("INVALID"))
        );
    }

    #[test]
    fn a_payment_up_to_the_balance_is_added_and_beyond_it_refused() {
        let order = order(&[
            placed(&[("a", 2)]),
            validated(1, "a", true, 5.0),
            paid(2, 4.0),
        ]);

        assert!(matches!(
            decide(&order, &payment(6.0)),
            Ok(Some(Event::PaymentAdded { amount: 6.0, .. }))
        ));
        assert_eq!(
            decide(&order, &payment(6.01)),
            Err(Rejection::ExceedsBalance(6.0))
        );
    }

    #[test]
    fn a_line_with_a_sub_cent_price_is_rounded_once_not_per_unit() {
        let order = order(&[
            placed(&[("a", 8), ("b", 3)]),
            validated(1, "a", true, 0.125),
            validated(2, "b", true, 0.333),
        ]);

        assert_eq!(order.total_price_cents(), 100 + 100);
    }

    #[test]
    fn a_total_beyond_i64_cents_is_exact_and_takes_a_partial_payment() {
        let order = order(&[placed(&[("a", 2)]), validated(1, "a", true, 1e17)]);

        assert_eq!(order.total_price_cents(), 20_000_000_000_000_000_000);
        assert_eq!(order.status, Status::Validated);
        assert!(matches!(
            decide(&order, &payment(1.0)),
            Ok(Some(Event::PaymentAdded { .. }))
        ));
    }

    #[test]
    fn absurd_prices_and_quantities_saturate_instead_of_overflowing() {
        let order = order(&[
            placed(&[("a", i64::MAX), ("b", i64::MAX)]),
            validated(1, "a", true, 1e300),
            validated(2, "b", true, 1e300),
        ]);

        assert_eq!(order.total_price_cents(), i128::MAX);
        assert_eq!(order.status, Status::Validated);
    }

    #[test]
    fn a_payment_below_one_cent_is_refused() {
        let order = order(&[placed(&[("a", 1)]), validated(1, "a", true, 5.0)]);

        assert_eq!(decide(&order, &payment(0.0)), Err(Rejection::NotPositive));
        assert_eq!(decide(&order, &payment(0.004)), Err(Rejection::NotPositive));
    }

    #[test]
    fn a_payment_is_recorded_in_whole_cents() {
        let order = order(&[placed(&[("a", 1)]), validated(1, "a", true, 5.0)]);

        assert!(matches!(
            decide(&order, &payment(1.006)),
            Ok(Some(Event::PaymentAdded { amount: 1.01, .. }))
        ));
    }

    #[test]
    fn a_payment_id_reused_with_another_method_or_amount_is_refused() {
        let events = [
            placed(&[("a", 1)]),
            validated(1, "a", true, 5.0),
            paid(2, 1.0),
        ];
        let order = order(&events);
        let reuse = |method, amount| Command::AddPayment {
            payment_id: "p2".into(),
            method,
            amount,
        };

        assert_eq!(decide(&order, &reuse(Method::Cash, 1.001)), Ok(None));
        assert_eq!(
            decide(&order, &reuse(Method::Debit, 1.0)),
            Err(Rejection::KeyReused)
        );
        assert_eq!(
            decide(&order, &reuse(Method::Cash, 2.0)),
            Err(Rejection::KeyReused)
        );
    }

    #[test]
    fn a_retried_payment_answers_the_order_as_it_stood_after_that_payment() {
        let events = [
            placed(&[("a", 1)]),
            validated(1, "a", true, 5.0),
            paid(2, 1.0),
            paid(3, 4.0),
        ];

        let first = fold_through_payment("order-1", &events, "p2").unwrap();

        assert_eq!(first, order(&events[..3]));
        assert_eq!(first.status, Status::Validated);
        assert_eq!(
            fold_through_payment("order-1", &events, "p3")
                .unwrap()
                .status,
            Status::PaymentDefined
        );
        assert_eq!(fold_through_payment("order-1", &events, "p9"), None);
    }

    #[test]
    fn a_payment_already_added_decides_nothing() {
        let order = order(&[placed(&[("a", 1)]), validated(1, "a", true, 5.0)]);
        let Some(added) = decide(&order, &payment(5.0)).unwrap() else {
            panic!("a payment event");
        };
        let paid = fold(
            "order-1",
            &[
                placed(&[("a", 1)]),
                validated(1, "a", true, 5.0),
                at(2, added),
            ],
        )
        .unwrap();

        assert_eq!(decide(&paid, &payment(5.0)), Ok(None));
    }
}

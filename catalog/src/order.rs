//! The pure part of catalog's role in an order: which stock an order asks for. No I/O.

use rabbit::contract::OrderLine;

use crate::article::MAX_STOCK;

/// What one order asks of one article: the lines naming it, summed. The decision is taken per
/// order and article, so two lines of one article must be reserved as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub article_id: String,
    /// `None` when a line's quantity is not 1..=MAX_STOCK: nothing is reserved, the line is
    /// answered invalid.
    pub quantity: Option<i64>,
}

/// The demands of `lines`, one per article, in the order the articles first appear.
pub fn demands(lines: &[OrderLine]) -> Vec<Demand> {
    let mut demands: Vec<Demand> = Vec::new();
    for line in lines {
        let quantity = (1..=MAX_STOCK)
            .contains(&line.quantity)
            .then_some(line.quantity);
        match demands
            .iter_mut()
            .find(|demand| demand.article_id == line.article_id)
        {
            Some(demand) => {
                demand.quantity = demand
                    .quantity
                    .zip(quantity)
                    .map(|(sum, more)| sum + more)
                    .filter(|sum| *sum <= MAX_STOCK);
            }
            None => demands.push(Demand {
                article_id: line.article_id.clone(),
                quantity,
            }),
        }
    }
    demands
}

/// Whether `order_id` can key the ledger's once-only movements (`<order>:<article>:reserve`): no
/// `:` that could make two keys alike, nothing a store could read as an operator (orders uses
/// UUIDs).
pub fn is_usable_order_id(order_id: &str) -> bool {
    (1..=100).contains(&order_id.len())
        && order_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(article_id: &str, quantity: i64) -> OrderLine {
        OrderLine {
            article_id: article_id.into(),
            quantity,
        }
    }

    #[test]
    fn lines_of_one_article_are_summed() {
        let demands = demands(&[line("a", 2), line("b", 1), line("a", 3)]);
        assert_eq!(
            demands,
            [
                Demand {
                    article_id: "a".into(),
                    quantity: Some(5)
                },
                Demand {
                    article_id: "b".into(),
                    quantity: Some(1)
                }
            ]
        );
    }

    #[test]
    fn a_quantity_below_one_or_past_the_bound_reserves_nothing() {
        for quantity in [0, -3, MAX_STOCK + 1] {
            assert_eq!(demands(&[line("a", quantity)])[0].quantity, None);
        }
        assert_eq!(
            demands(&[line("a", 1), line("a", 0)])[0].quantity,
            None,
            "one bad line spoils its article's demand"
        );
    }

    #[test]
    fn order_ids_that_could_not_be_field_names_are_unusable() {
        assert!(is_usable_order_id("0b6f3c1e-8a4d-4f7e-9c2a-5d1e7f9b3a60"));
        for id in ["", "a.b", "$where", "a b", &"x".repeat(101)] {
            assert!(!is_usable_order_id(id), "{id}");
        }
    }
}

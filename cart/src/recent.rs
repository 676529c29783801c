//! Each user's newest cart as this instance last stored or read it, in memory: the first guess
//! of a change, which spares the store reads before it. A guess is never what makes a change
//! right: the append at the position after it is refused when another writer (another instance)
//! got there first, and the change is decided again on a fresh read of the store; and a decision
//! that records nothing is taken again on a fresh read before it is answered.

use std::time::Duration;

use moka::future::Cache;
use moka::ops::compute::Op;

use crate::cart::{self, Cart, Line};

/// What the kept carts may weigh together, in approximate bytes (see `weight`); the least
/// recently used go first. 64 MiB: some 100,000 carts of a few lines, or about 4,000 of the
/// largest (`cart::MAX_LINES` lines with the longest article ids).
const CAPACITY: u64 = 64 * 1024 * 1024;
/// A user idle this long is forgotten: the guess would be stale more often than not.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct RecentCarts(Cache<String, Cart>);

impl Default for RecentCarts {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

/// A user's cart's weight in approximate bytes: the cart, its key and its strings, and each line
/// with its article id. A cart of many lines counts for what it holds, not as one entry.
fn weight(user_id: &String, cart: &Cart) -> u32 {
    let strings = [user_id, &cart.id, &cart.user_id, &cart.order_id]
        .iter()
        .map(|text| text.len())
        .sum::<usize>()
        + cart.correlation_id.as_ref().map_or(0, String::len);
    let lines = cart
        .articles
        .iter()
        .map(|line| size_of::<Line>() + line.article_id.len())
        .sum::<usize>();
    u32::try_from(size_of::<Cart>() + strings + lines).unwrap_or(u32::MAX)
}

impl RecentCarts {
    /// Keeps carts weighing at most `capacity` bytes together (see `weight`).
    fn with_capacity(capacity: u64) -> Self {
        Self(
            Cache::builder()
                .max_capacity(capacity)
                .weigher(weight)
                .time_to_idle(IDLE)
                .build(),
        )
    }

    /// The user's newest cart as last seen here; maybe behind the store.
    pub async fn of_user(&self, user_id: &str) -> Option<Cart> {
        self.0.get(user_id).await
    }

    /// Cart `cart_id` as last seen here, while it is its user's newest one here.
    pub async fn get(&self, cart_id: &str) -> Option<Cart> {
        let user_id = cart::owner_of(cart_id)?;
        self.of_user(user_id)
            .await
            .filter(|cart| cart.id == cart_id)
    }

    /// Keeps `cart` unless a newer one of its user is kept: a later cart, or the same cart at a
    /// later position. Writers finishing out of order never take the guess back.
    pub async fn keep(&self, cart: &Cart) {
        self.0
            .entry_by_ref(&cart.user_id)
            .and_compute_with(|kept| async move {
                match kept {
                    Some(kept) if is_newer(kept.value(), cart) => Op::Nop,
                    _ => Op::Put(cart.clone()),
                }
            })
            .await;
    }
}

fn is_newer(kept: &Cart, cart: &Cart) -> bool {
    (kept.number, kept.position) >= (cart.number, cart.position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::test_cart as cart;

    /// User `user`'s first cart with `lines` lines.
    fn cart_with_lines(user: usize, lines: usize) -> Cart {
        let mut cart = cart(0, lines as i64);
        cart.user_id = format!("user-{user}");
        cart.id = cart::cart_id(&cart.user_id, 0);
        cart.articles = (0..lines)
            .map(|n| Line {
                article_id: format!("article-{n}"),
                quantity: 1,
                valid: true,
                validated: true,
                version: n as i64 + 1,
            })
            .collect();
        cart
    }

    #[tokio::test]
    async fn carts_are_bounded_by_what_they_weigh_not_by_their_count() {
        let full = cart_with_lines(0, 100);
        let capacity = 3 * u64::from(weight(&full.user_id, &full));
        let recent = RecentCarts::with_capacity(capacity);
        for user in 0..10 {
            recent.keep(&cart_with_lines(user, 100)).await;
        }
        recent.0.run_pending_tasks().await;
        assert!(recent.0.weighted_size() <= capacity);
        assert!(recent.0.entry_count() <= 3, "{}", recent.0.entry_count());

        let recent = RecentCarts::with_capacity(capacity);
        for user in 0..50 {
            recent.keep(&cart_with_lines(user, 1)).await;
        }
        recent.0.run_pending_tasks().await;
        assert_eq!(recent.0.entry_count(), 50, "small carts take little room");
    }

    #[tokio::test]
    async fn keeps_the_newest_cart_of_a_user() {
        let recent = RecentCarts::default();
        recent.keep(&cart(0, 3)).await;
        recent.keep(&cart(0, 2)).await;
        assert_eq!(recent.of_user("u1").await.unwrap().position, 3);
        recent.keep(&cart(1, 0)).await;
        recent.keep(&cart(0, 4)).await;
        let newest = recent.of_user("u1").await.unwrap();
        assert_eq!((newest.number, newest.position), (1, 0));
        assert!(recent.get("u1:0").await.is_none());
        assert_eq!(recent.get("u1:1").await.unwrap().position, 0);
        assert!(recent.get("u2:0").await.is_none());
    }
}

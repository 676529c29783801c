//! Each user's newest cart as this instance last stored or read it, in memory: the first guess
//! of a change, which spares the store reads before it. A guess is never what makes a change
//! right: the append at the position after it is refused when another writer (another instance)
//! got there first, and the change is decided again on a fresh read of the store; and a decision
//! that records nothing is taken again on a fresh read before it is answered.

use std::time::Duration;

use moka::future::Cache;
use moka::ops::compute::Op;

use crate::cart::{self, Cart};

/// Carts kept; the least recently used go first.
const CAPACITY: u64 = 100_000;
/// A user idle this long is forgotten: the guess would be stale more often than not.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct RecentCarts(Cache<String, Cart>);

impl Default for RecentCarts {
    fn default() -> Self {
        Self(
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE)
                .build(),
        )
    }
}

impl RecentCarts {
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

//! When a batch publishes again the message an order waits on catalog's answer to (a re-drive):
//! the `placed` batch an order's `order_placed` while it is PLACED, the `validated` batch an
//! INVALID order's `order_invalid` until catalog's `order_released` is recorded. A schedule per
//! order that backs off. Each re-drive costs catalog what the order's first message did (every
//! line looked up, reserved or refused, answered; or given back), so re-driving every waiting
//! order on every run buries a slow or stopped catalog under work it cannot finish, and it never
//! catches up.
//!
//! Attempt 1 comes once the order has had no new event for `first` (`ORDERS_STUCK_PLACED_SECS`;
//! for an INVALID order that is the event that made it INVALID, right before its first
//! `order_invalid`).
//! After attempt n the next one waits `first × 2^n`, capped at `max` (`ORDERS_REDRIVE_MAX_SECS`),
//! drawn between 3/4 of that and all of it, so that orders stuck at the same moment (a catalog
//! outage) spread over the following runs instead of coming back together. A new event of the
//! order (a line answered) also puts the next attempt at least `first` after it: catalog is
//! answering. Each attempt is stored as it is claimed, with the time the next one is due
//! (`Store::claim_redrive`), so a restarted instance and every other instance follow the same
//! schedule.

use std::time::Duration;

use mongodb::bson::DateTime;

/// An order's latest re-drive in one status, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Redrive {
    /// 1 for the first re-drive of the order, then 2, 3, ...
    pub attempt: i64,
    /// When the next attempt is due.
    pub next_due: DateTime,
}

/// The re-drive schedule of every order.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    first: Duration,
    max: Duration,
}

impl Schedule {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The number of the attempt due at `now` for an order waiting in PLACED or INVALID whose
    /// last event was stored at `last_event` and whose latest re-drive in that status is
    /// `latest`; `None` while none is due.
    pub fn due(
        &self,
        last_event: DateTime,
        latest: Option<&Redrive>,
        now: DateTime,
    ) -> Option<i64> {
        let quiet_until = after(last_event, self.first);
        let (attempt, due) = match latest {
            None => (1, quiet_until),
            Some(latest) => (latest.attempt + 1, latest.next_due.max(quiet_until)),
        };
        (now >= due).then_some(attempt)
    }

    /// When the attempt after `attempt`, made at `at`, is due. `draw`, in [0, 1), says where
    /// between 3/4 of the delay and the whole delay.
    pub fn next_due(&self, attempt: i64, at: DateTime, draw: f64) -> DateTime {
        let delay = self.delay_after(attempt);
        after(at, delay.mul_f64(0.75 + 0.25 * draw.clamp(0.0, 1.0)))
    }

    /// `first × 2^attempt`, capped at `max`.
    fn delay_after(&self, attempt: i64) -> Duration {
        let doublings = attempt.clamp(0, 31) as u32;
        self.first
            .checked_mul(1 << doublings)
            .map_or(self.max, |delay| delay.min(self.max))
    }
}

fn after(instant: DateTime, wait: Duration) -> DateTime {
    let wait = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(instant.timestamp_millis().saturating_add(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000;

    fn schedule() -> Schedule {
        Schedule::new(Duration::from_secs(120), Duration::from_secs(600))
    }

    fn at(seconds: i64) -> DateTime {
        DateTime::from_millis(seconds * SECOND)
    }

    fn redrive(attempt: i64, next_due: i64) -> Redrive {
        Redrive {
            attempt,
            next_due: at(next_due),
        }
    }

    #[test]
    fn the_first_re_drive_is_due_once_the_order_waited_the_stuck_threshold() {
        assert_eq!(schedule().due(at(1_000), None, at(1_119)), None);
        assert_eq!(schedule().due(at(1_000), None, at(1_120)), Some(1));
    }

    #[test]
    fn each_next_re_drive_waits_twice_as_long_as_the_one_before_give_or_take_a_quarter() {
        let schedule = schedule();
        assert_eq!(schedule.next_due(1, at(0), 0.0), at(180));
        assert_eq!(schedule.next_due(1, at(0), 0.5), at(210));
        assert!(schedule.next_due(1, at(0), 0.999_999) < at(240));
        assert_eq!(schedule.next_due(2, at(0), 0.0), at(360));
        assert_eq!(schedule.next_due(2, at(0), 0.5), at(420));
    }

    #[test]
    fn the_wait_between_re_drives_is_capped() {
        let schedule = schedule();
        assert_eq!(schedule.next_due(3, at(0), 0.0), at(450));
        assert!(schedule.next_due(3, at(0), 0.999_999) < at(600));
        assert_eq!(schedule.next_due(40, at(0), 0.0), at(450));
        assert_eq!(schedule.next_due(i64::MAX, at(0), 0.0), at(450));
    }

    #[test]
    fn the_next_re_drive_is_due_when_its_latest_said_and_numbered_after_it() {
        let latest = redrive(3, 5_000);
        assert_eq!(schedule().due(at(0), Some(&latest), at(4_999)), None);
        assert_eq!(schedule().due(at(0), Some(&latest), at(5_000)), Some(4));
    }

    #[test]
    fn a_new_event_puts_the_next_re_drive_at_least_the_stuck_threshold_after_it() {
        let latest = redrive(3, 5_000);
        assert_eq!(schedule().due(at(4_990), Some(&latest), at(5_000)), None);
        assert_eq!(schedule().due(at(4_990), Some(&latest), at(5_110)), Some(4));
    }
}

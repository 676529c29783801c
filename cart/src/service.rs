//! The cart operations, each a fold, a decision and an append: read the cart's events, decide
//! the next event with the pure rules of `cart.rs`, and insert it at the next position. When
//! another writer (this instance or another one) took that position first, the insert is refused
//! by the unique `_id` and the operation decides again on a fresh read. That insert is the only
//! thing correctness rests on. The per-user lock below only spares writers of one instance lost
//! races and retries (a checkout takes it for its close, not while it asks catalog), and the
//! caches only spare reads: a change first decides on this instance's copy of the cart
//! (`recent.rs`), and reads the store only when that copy is missing or proves behind; a
//! checkout reads the events after the copy while it asks catalog, so a copy that is behind
//! costs it no lost append. The background jobs are in `jobs.rs`.
//!
//! Every append is followed by `remember` (for catalog's answers, `remember_answers`; for a
//! closed cart's order, the read model and the copy alone): GET /cart is served from the read
//! model in Redis (`view.rs`), so a change any writer has stored shows in it once that writer is
//! done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::ApiError;
use common::jitter::race_pause;
use common::locks::KeyedLocks;
use mongodb::bson::DateTime;
use rabbit::contract::{ArticleDataReply, OrderPlaced};
use rabbit::{Rabbit, RabbitError};
use tokio::sync::OwnedMutexGuard;
use tracing::{info, warn};

use crate::cart::{self, Answer, Answers, Cart, CartError, Event, Issue, Recorded, Validation};
use crate::messaging::{self, Unanswered};
use crate::recent::RecentCarts;
use crate::slots::CatalogSlots;
use crate::store::Store;
use crate::view::{self, CartViews};

/// An operation that keeps losing the race for its cart's next position gives up (503).
const MAX_ATTEMPTS: usize = 50;
/// The longest a request waits for its turn on its user's lock before it goes on without it.
/// A turn spans store reads and writes only (a checkout takes it once catalog has answered), but
/// a holder can wait out MongoDB's 3 s server selection while it is down, and requests queued
/// behind each other would wait that long each; and a burst of one user's changes on a slow
/// store need not queue forever, since their appends decide anyway.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Timings of the background work (from the configuration).
#[derive(Debug, Clone)]
pub struct Timings {
    pub revalidate_every: Duration,
    pub revalidate_max_age: Duration,
    pub validate_timeout: Duration,
    pub order_resend_first: Duration,
    pub order_resend_max: Duration,
}

/// Why a checkout did not close the cart.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("the cart is empty")]
    Empty,
    #[error("the cart has invalid articles")]
    Invalid(Vec<Issue>),
    #[error(transparent)]
    Api(#[from] ApiError),
}

pub struct Carts {
    pub(crate) store: Store,
    /// GET /cart's read model in Redis, written after every change of a user's newest cart.
    views: CartViews,
    /// Each user's newest cart as this instance last stored or read it: the first guess of a
    /// change.
    recent: RecentCarts,
    pub(crate) rabbit: Rabbit,
    pub(crate) timings: Timings,
    /// Set once the indexes exist, which `/health` reports: without them every read scans.
    pub(crate) indexes_ready: AtomicBool,
    /// Writes to one user's carts from this instance take turns: a throughput aid that spares
    /// them lost races and retries. Other instances are not held by it and need not be.
    writers: KeyedLocks,
    /// Slots for `article-data` requests in flight: the process's, and each user's share.
    catalog_slots: CatalogSlots,
}

impl From<CartError> for ApiError {
    fn from(error: CartError) -> Self {
        match error {
            CartError::NotInCart => ApiError::NotFound,
            CartError::TooMany => ApiError::field("quantity", error.to_string()),
            CartError::TooManyLines => ApiError::field("articleId", error.to_string()),
        }
    }
}

impl Carts {
    pub fn new(store: Store, views: CartViews, rabbit: Rabbit, timings: Timings) -> Self {
        Self {
            store,
            views,
            recent: RecentCarts::default(),
            rabbit,
            timings,
            indexes_ready: AtomicBool::new(false),
            writers: KeyedLocks::default(),
            catalog_slots: CatalogSlots::default(),
        }
    }

    pub async fn health(&self) -> Vec<(&'static str, bool)> {
        let mongodb = self.indexes_ready.load(Ordering::Acquire)
            && common::mongo::ping(self.store.db()).await;
        vec![
            ("mongodb", mongodb),
            ("rabbitmq", self.rabbit.is_connected()),
        ]
    }

    /// GET /cart's body: the read model's copy of the user's active cart when it has one, else
    /// the active cart from the store, which is then stored as the read model's copy. A change
    /// stored meanwhile (here or on another instance) has a later version and keeps its copy.
    /// Readers that miss take turns: one store read per instance when the copy expires.
    pub async fn view(&self, user_id: &str) -> Result<Bytes, ApiError> {
        if let Some(body) = self.views.active(user_id).await {
            return Ok(body);
        }
        let _turn = self.views.read_turn(user_id).await;
        if let Some(body) = self.views.active(user_id).await {
            return Ok(body);
        }
        let cart = self.active(user_id).await?;
        let body = view::body(&cart);
        self.views.put(&cart, &body).await;
        Ok(body)
    }

    /// The user's active cart, folded up to its last event: the user's newest cart, opened on
    /// first use and after a checkout. Usually two reads: the cached cart and the events after
    /// its position (none when the cache is current).
    pub async fn active(&self, user_id: &str) -> Result<Cart, ApiError> {
        let (newest, changed) = self.newest(user_id).await?;
        self.active_from(newest, changed).await
    }

    /// The user's newest cart from the store, folded up to its last event, maybe closed (opened
    /// when the user has none); true when it is ahead of the store's cache.
    async fn newest(&self, user_id: &str) -> Result<(Cart, bool), ApiError> {
        match self.store.current(user_id).await? {
            Some(mut cart) => {
                let caught_up = self.catch_up(&mut cart).await?;
                Ok((cart, caught_up))
            }
            None => {
                let number = self.store.newest_number(user_id).await?.unwrap_or(0);
                Ok((self.open(user_id, number).await?, true))
            }
        }
    }

    /// The user's active cart, given the user's `newest` cart (`changed`: ahead of the store's
    /// cache): that one while it is open, else the cart opened after it.
    async fn active_from(&self, newest: Cart, mut changed: bool) -> Result<Cart, ApiError> {
        let mut cart = newest;
        // Only the newest cart can be active: cart n + 1 is opened once cart n is closed.
        while !cart.enabled {
            cart = self.open(&cart.user_id, cart.number + 1).await?;
            changed = true;
        }
        if changed {
            self.remember(&cart).await;
        } else {
            self.recent.keep(&cart).await;
        }
        Ok(cart)
    }

    /// The user's `number`-th cart, opened unless it exists. Concurrent openers race for its
    /// `Opened` event at position 0 of a deterministic cart id: one insert wins and the others
    /// read the winner's cart, so a user never gets two carts with one number.
    async fn open(&self, user_id: &str, number: i64) -> Result<Cart, ApiError> {
        let id = cart::cart_id(user_id, number);
        // Never the cached cart (that is an older one, or none): read its events directly.
        if let Some(cart) = self.replay(&id).await? {
            return Ok(cart);
        }
        self.create(user_id, number).await
    }

    /// [`Carts::open`] for a cart that most likely does not exist yet (the one after a cart
    /// this instance saw closed): its `Opened` event is inserted first, and its events are read
    /// only when the insert finds it opened already.
    async fn create(&self, user_id: &str, number: i64) -> Result<Cart, ApiError> {
        let id = cart::cart_id(user_id, number);
        let opened = Recorded {
            position: 0,
            at: DateTime::now(),
            event: Event::Opened {
                user_id: user_id.into(),
                number,
            },
        };
        if !self
            .store
            .append(&id, opened.position, opened.at, &opened.event)
            .await?
        {
            return self
                .replay(&id)
                .await?
                .ok_or_else(|| ApiError::internal("a cart lost its opening race to nothing"));
        }
        Cart::replay(&id, &[opened]).ok_or_else(|| ApiError::internal("cannot fold a new cart"))
    }

    /// Cart `cart_id` folded up to its last event; `None` when it was never opened. Starts from
    /// its user's cached cart when that is this cart (two small reads, however long the cart's
    /// story), else folds all its events.
    pub(crate) async fn load(&self, cart_id: &str) -> mongodb::error::Result<Option<Cart>> {
        if let Some(user_id) = cart::owner_of(cart_id)
            && let Some(mut cart) = self.store.current(user_id).await?
            && cart.id == cart_id
        {
            self.catch_up(&mut cart).await?;
            return Ok(Some(cart));
        }
        self.replay(cart_id).await
    }

    /// Cart `cart_id` folded from all its events; `None` when it was never opened.
    async fn replay(&self, cart_id: &str) -> mongodb::error::Result<Option<Cart>> {
        let events = self.store.events_after(cart_id, -1).await?;
        Ok(Cart::replay(cart_id, &events))
    }

    /// Folds in the events recorded after the cart's position; true when there were some.
    async fn catch_up(&self, cart: &mut Cart) -> mongodb::error::Result<bool> {
        let newer = self.store.events_after(&cart.id, cart.position).await?;
        cart.catch_up(&newer);
        Ok(!newer.is_empty())
    }

    /// Records `event` at the position after `cart`'s and returns the cart with it; `None`
    /// when another writer took that position first (decide again on a fresh read).
    async fn append(&self, cart: &Cart, event: Event) -> mongodb::error::Result<Option<Cart>> {
        let recorded = Recorded {
            position: cart.position + 1,
            at: DateTime::now(),
            event,
        };
        let appended = self
            .store
            .append(&cart.id, recorded.position, recorded.at, &recorded.event)
            .await?;
        Ok(appended.then(|| {
            let mut changed = cart.clone();
            changed.catch_up(&[recorded]);
            changed
        }))
    }

    /// Caches the cart as its user's newest: in this instance's memory (where its next change
    /// starts), in the store's `current_carts` (where reads of the store start, on every
    /// instance) and in GET /cart's read model. Called after every append to a user's newest
    /// cart but an answer's (`remember_answers`). Only aids: a failure is logged, readers of the
    /// store catch up from the events anyway, and a lost read model write leaves GET /cart behind
    /// for at most the read model's time to live.
    async fn remember(&self, cart: &Cart) {
        self.recent.keep(cart).await;
        let cached = async {
            if let Err(error) = self.store.remember(cart).await {
                warn!(%error, cart_id = cart.id, "cannot cache the cart");
            }
        };
        let body = view::body(cart);
        tokio::join!(cached, self.views.put(cart, &body));
    }

    /// Caches a cart whose last event only recorded catalog's answers, as `remember` does but
    /// without the store's `current_carts`: no line changed, so that entry may lag this event (a
    /// reader of the store catches up from the events), and an answer costs one store write.
    async fn remember_answers(&self, cart: &Cart) {
        self.recent.keep(cart).await;
        self.views.put(cart, &view::body(cart)).await;
    }

    /// Decides a change of the user's active cart with `decide` and records it, deciding again
    /// on a fresh read whenever another writer took the position. `decide` answers `None` when
    /// there is nothing to record.
    ///
    /// The first decision is made on the cached cart alone (this instance's copy, else the store's
    /// cache): if events came after it, the append at the position after it is refused and the
    /// change is decided again on the caught-up cart. A decision to record nothing (or a
    /// refusal) proves nothing about a cached cart, so it is taken again on the caught-up cart
    /// before it is answered.
    async fn change<F>(&self, user_id: &str, decide: F) -> Result<Cart, ApiError>
    where
        F: Fn(&Cart) -> Result<Option<Event>, CartError>,
    {
        let _turn = self.turn_to_write(user_id).await;
        let mut cached = match self.recent.of_user(user_id).await {
            // Closing is final, and the next cart is opened only once this one is closed: the
            // next is the likely active one (a newer cart is found by the change's append).
            Some(closed) if !closed.enabled => Some(self.create(user_id, closed.number + 1).await?),
            Some(cart) => Some(cart),
            None => self.store.current(user_id).await?,
        }
        .filter(|cart| cart.enabled);
        for _ in 0..MAX_ATTEMPTS {
            let (read, caught_up) = match cached.take() {
                Some(cart) => (cart, false),
                None => (self.active(user_id).await?, true),
            };
            let event = match decide(&read) {
                Ok(Some(event)) => event,
                Ok(None) if caught_up => return Ok(read),
                Err(refused) if caught_up => return Err(refused.into()),
                Ok(None) | Err(_) => continue,
            };
            if let Some(changed) = self.append(&read, event).await? {
                self.remember(&changed).await;
                return Ok(changed);
            }
            if caught_up {
                tokio::time::sleep(race_pause()).await;
            }
        }
        Err(too_busy(user_id))
    }

    /// The user's write lock in this instance, waited for at most `LOCK_WAIT`; `None` past it,
    /// and the request goes on without it: the lock only spares this instance's writers lost
    /// races, it is not what makes a change right.
    async fn turn_to_write(&self, user_id: &str) -> Option<OwnedMutexGuard<()>> {
        let turn = self.writers.lock_within(user_id, LOCK_WAIT).await;
        if turn.is_none() {
            info!(
                user_id,
                "writing without waiting longer for the user's other writes"
            );
        }
        turn
    }

    /// Adds `quantity` of the article and asks catalog about it.
    pub async fn add(
        &self,
        user_id: &str,
        article_id: &str,
        quantity: i64,
        correlation_id: &str,
    ) -> Result<Cart, ApiError> {
        let cart = self
            .change(user_id, |cart| cart.add(article_id, quantity).map(Some))
            .await?;
        self.revalidate_line(&cart, article_id, correlation_id);
        Ok(cart)
    }

    pub async fn increment(
        &self,
        user_id: &str,
        article_id: &str,
        correlation_id: &str,
    ) -> Result<Cart, ApiError> {
        let cart = self
            .change(user_id, |cart| cart.increment(article_id).map(Some))
            .await?;
        self.revalidate_line(&cart, article_id, correlation_id);
        Ok(cart)
    }

    pub async fn decrement(
        &self,
        user_id: &str,
        article_id: &str,
        correlation_id: &str,
    ) -> Result<Cart, ApiError> {
        let cart = self
            .change(user_id, |cart| cart.decrement(article_id).map(Some))
            .await?;
        self.revalidate_line(&cart, article_id, correlation_id);
        Ok(cart)
    }

    /// Removes the article's line; removing one that is not there changes nothing.
    pub async fn remove(&self, user_id: &str, article_id: &str) -> Result<Cart, ApiError> {
        self.change(user_id, |cart| Ok(cart.remove(article_id)))
            .await
    }

    /// Sends `article-valid` for a line that was just added or changed, in the background: the
    /// request answers at once, and a request lost while RabbitMQ is down is made up for by the
    /// periodic revalidation.
    fn revalidate_line(&self, cart: &Cart, article_id: &str, correlation_id: &str) {
        let Some(version) = cart.version_of(article_id) else {
            return;
        };
        if !self.rabbit.is_connected() {
            return;
        }
        let rabbit = self.rabbit.clone();
        let revalidate_every = self.timings.revalidate_every;
        let (cart_id, article_id, correlation_id) = (
            cart.id.clone(),
            article_id.to_owned(),
            correlation_id.to_owned(),
        );
        tokio::spawn(async move {
            let asked = messaging::request_validation(
                &rabbit,
                &cart_id,
                &article_id,
                version,
                &correlation_id,
                revalidate_every,
            );
            if let Err(error) = asked.await {
                warn!(%error, cart_id, article_id, "cannot ask catalog about a line");
            }
        });
    }

    /// Asks catalog about every line now, in parallel, and records the answers on the lines:
    /// 503 unless every answer arrives in time, 429 when the user has as many validations in
    /// flight as one user may.
    pub async fn validate(
        &self,
        user_id: &str,
        correlation_id: &str,
    ) -> Result<Validation, ApiError> {
        let _ticket = self.catalog_slots.admit_validation(user_id)?;
        let cart = self.active(user_id).await?;
        let replies = self
            .ask_catalog(&cart, correlation_id)
            .await
            .map_err(|error| {
                warn!(%error, "catalog did not answer article-data");
                ApiError::Unavailable("catalog")
            })?;
        let answers = answers_of(&cart, &replies);
        self.record_answers(&answers.cart_id, answers.answers)
            .await?;
        Ok(cart::validation(&cart.articles, &replies))
    }

    /// Catalog's `article-data` answers about every line of `cart`, in line order, each asked
    /// now (as soon as one of the user's slots and one of the process's are free) and waited for
    /// at most the validate timeout.
    async fn ask_catalog(
        &self,
        cart: &Cart,
        correlation_id: &str,
    ) -> Result<Vec<ArticleDataReply>, Unanswered> {
        let timeout = self.timings.validate_timeout;
        let questions = cart.articles.iter().map(|line| {
            self.catalog_slots.ask(
                &cart.user_id,
                timeout,
                messaging::article_data(
                    &self.rabbit,
                    &cart.id,
                    &line.article_id,
                    correlation_id,
                    timeout,
                ),
            )
        });
        futures_util::future::try_join_all(questions).await
    }

    /// Closes the user's active cart and sends its `place_order`. Catalog is asked about the
    /// lines first (again after a lost race only if a line changed); only when it cannot answer
    /// in time do the lines' stored answers decide.
    ///
    /// The first guess is this instance's copy of the cart, as for `change`: the events after it
    /// are read while catalog is asked, so a copy that is behind is caught up before the close
    /// is tried (and catalog asked again only if a line changed). The user's turn to write is
    /// taken only for the close, after catalog answered (see the loop).
    ///
    /// The close is a `CheckedOut` event at the position after the cart that was asked about,
    /// so a line added meanwhile (here or on another instance) either took that position first,
    /// and the checkout starts over with it, or comes after the close and goes to the user's
    /// next cart. Of checkouts racing for one cart one event wins and sends the `place_order`;
    /// the others answer with the cart it closed: a checkout that finds a cart closed since it
    /// started (by the `CheckedOut` event's time) lost the race to that close and answers with
    /// that cart, and only a cart closed before it started leads it on to the user's next cart.
    /// Those times come from the clocks of the instances: with clocks that disagree by d, a
    /// checkout that starts within d of another's close may answer either way.
    pub async fn checkout(
        &self,
        user_id: &str,
        correlation_id: &str,
    ) -> Result<Cart, CheckoutError> {
        let started = DateTime::now();
        let guess = self.recent.of_user(user_id).await;
        // Whether `cart` is this instance's copy, not yet caught up with the store.
        let mut copy = guess
            .as_ref()
            .is_some_and(|cart| cart.enabled && !cart.articles.is_empty());
        let mut cart = match guess {
            Some(cart) if copy || cart.closed_since(started) => cart,
            _ => self.checkout_target(user_id, started).await?,
        };
        let mut answers = Answers::default();
        for _ in 0..MAX_ATTEMPTS {
            if !cart.enabled {
                if cart.closed_since(started) {
                    return Ok(cart);
                }
                cart = self.checkout_target(user_id, started).await?;
                continue;
            }
            if cart.articles.is_empty() {
                return Err(CheckoutError::Empty);
            }
            if !cart.answered_by(&answers) {
                // A copy is caught up with the store while catalog is asked: one behind (another
                // instance's line, or its close) is found before the slow steps of the close,
                // and catalog is asked again only when a line changed.
                let catching_up = async {
                    if copy {
                        self.store.events_after(&cart.id, cart.position).await
                    } else {
                        Ok(Vec::new())
                    }
                };
                let (replies, newer) =
                    tokio::join!(self.checkout_answers(&cart, correlation_id), catching_up);
                answers = answers_of(&cart, replies.as_deref().unwrap_or_default());
                let newer = newer.map_err(ApiError::from)?;
                copy = false;
                if !newer.is_empty() {
                    cart.catch_up(&newer);
                    continue;
                }
            }
            // The user's turn is taken only for the close, not across the catalog round trip
            // (other writes of the user on this instance go on meanwhile). What this instance
            // recorded on the cart meanwhile is in its copy: catalog's answer to the last add,
            // typically, which would otherwise take the position the close wants, or a racing
            // checkout's close. Decide again on it; the close's insert decides in any case.
            let turn = self.turn_to_write(user_id).await;
            if let Some(newer) = self
                .recent
                .get(&cart.id)
                .await
                .filter(|copy| copy.position > cart.position)
            {
                cart = newer;
                continue;
            }
            let closed = self.close(&cart, answers.clone(), correlation_id).await;
            drop(turn);
            match closed {
                Ok(Some(closed)) => {
                    info!(cart_id = closed.id, "cart checked out");
                    self.send_place_order(&closed).await;
                    return Ok(closed);
                }
                // Another writer took the position: the cart as it is now, maybe closed by a
                // racing checkout (then the answer), maybe with other lines.
                Ok(None) => {
                    tokio::time::sleep(race_pause()).await;
                    cart = self.load_to_check_out(&cart.id).await?;
                }
                Err(error) => return Err(error),
            }
        }
        Err(too_busy(user_id).into())
    }

    /// Where a checkout that started at `started` goes on from the store: the cart a racing
    /// checkout closed since (the cart to answer with), else the active cart.
    async fn checkout_target(&self, user_id: &str, started: DateTime) -> Result<Cart, ApiError> {
        let (newest, changed) = self.newest(user_id).await?;
        if let Some(closed) = self.cart_closed_since(&newest, started).await? {
            self.recent.keep(&closed).await;
            return Ok(closed);
        }
        self.active_from(newest, changed).await
    }

    /// The user's cart that a checkout closed at `started` or later, given the user's `newest`:
    /// that one, or the one before it when a line added since the close opened `newest`.
    async fn cart_closed_since(
        &self,
        newest: &Cart,
        started: DateTime,
    ) -> Result<Option<Cart>, ApiError> {
        if newest.closed_since(started) {
            return Ok(Some(newest.clone()));
        }
        // A cart opened before `started` follows a close from before it too: no read needed.
        if newest.number == 0 || newest.created < started {
            return Ok(None);
        }
        let previous = cart::cart_id(&newest.user_id, newest.number - 1);
        Ok(self
            .replay(&previous)
            .await?
            .filter(|cart| cart.closed_since(started)))
    }

    /// Cart `cart_id`, which a checkout was closing, as it is now.
    async fn load_to_check_out(&self, cart_id: &str) -> Result<Cart, ApiError> {
        self.load(cart_id)
            .await?
            .ok_or_else(|| ApiError::internal("a cart being checked out vanished"))
    }

    /// Catalog's answers for a checkout, or none when RabbitMQ or catalog cannot give them in
    /// time: a checkout must not depend on them being up.
    async fn checkout_answers(
        &self,
        cart: &Cart,
        correlation_id: &str,
    ) -> Option<Vec<ArticleDataReply>> {
        if !self.rabbit.is_connected() {
            return None;
        }
        self.ask_catalog(cart, correlation_id)
            .await
            .inspect_err(|error| {
                warn!(%error, cart_id = cart.id, "checkout judged by the stored answers");
            })
            .ok()
    }

    /// Closes `asked` with catalog's `answers` (about `asked`) recorded on it, unless they show
    /// an invalid line (then the answers are recorded on `asked`, for the cart screen). `None`
    /// when another writer took one of the positions: the checkout starts over on a fresh read.
    /// Called in the user's turn to write.
    ///
    /// The waiting order is noted before the close, so that a crash right after the close
    /// still gets the `place_order` sent by the re-sender.
    async fn close(
        &self,
        asked: &Cart,
        answers: Answers,
        correlation_id: &str,
    ) -> Result<Option<Cart>, CheckoutError> {
        let answered = asked.answers(answers.answers.clone());
        let judged = match &answered {
            Some(event) => {
                let mut judged = asked.clone();
                judged.catch_up(&[Recorded {
                    position: asked.position + 1,
                    at: DateTime::now(),
                    event: event.clone(),
                }]);
                judged
            }
            None => asked.clone(),
        };
        let errors = judged.checkout_errors();
        if !errors.is_empty() {
            self.record_answers_in_turn(&asked.id, answers.answers)
                .await
                .map_err(ApiError::from)?;
            return Err(CheckoutError::Invalid(errors));
        }
        let first_resend = cart::later(DateTime::now(), self.timings.order_resend_first);
        let mut cart = asked.clone();
        let closing = async {
            self.store.wait_for_order(&asked.id, first_resend).await?;
            if let Some(event) = answered {
                match self.append(&cart, event).await? {
                    Some(answered) => cart = answered,
                    None => return Ok(None),
                }
            }
            let checked_out = Event::CheckedOut {
                correlation_id: correlation_id.into(),
            };
            self.append(&cart, checked_out).await
        };
        let closed = closing.await;
        // The answers are a change of the cart even when the close then lost its race (or the
        // store failed): the cart screen shows them.
        let recorded = match &closed {
            Ok(Some(closed)) => closed,
            _ => &cart,
        };
        if recorded.position > asked.position {
            self.remember(recorded).await;
        }
        Ok(closed.map_err(ApiError::from)?)
    }

    /// Sends a just closed cart's `place_order`, not waiting for a broker that is down. Once
    /// the broker confirmed it, it sits in a durable queue and the re-sender only looks again
    /// late (a safety net); one that was not sent is due at once, and the re-sender delivers it
    /// as soon as the broker is back.
    async fn send_place_order(&self, closed: &Cart) {
        let sent = if self.rabbit.is_connected() {
            messaging::send_place_order(&self.rabbit, closed).await
        } else {
            Err(RabbitError::Unavailable)
        };
        if let Err(error) = sent {
            warn!(%error, cart_id = closed.id, "place_order not sent; the re-sender will");
            if let Err(error) = self.store.send_soon(&closed.id).await {
                warn!(%error, cart_id = closed.id, "place_order left to its first re-send");
            }
        }
    }

    /// Records catalog's answers on the lines of cart `cart_id`. Answers about a cart that does
    /// not exist (or no longer takes answers) are dropped: there is nothing to apply them to.
    /// Recording an answer again changes nothing. Tried first on this instance's copy of the
    /// cart, as `change` does, in its user's turn to write.
    pub async fn record_answers(
        &self,
        cart_id: &str,
        answers: Vec<Answer>,
    ) -> mongodb::error::Result<()> {
        let _turn = match cart::owner_of(cart_id) {
            Some(user_id) => self.turn_to_write(user_id).await,
            None => None,
        };
        self.record_answers_in_turn(cart_id, answers).await
    }

    /// [`Carts::record_answers`] for a caller that holds the user's turn already.
    async fn record_answers_in_turn(
        &self,
        cart_id: &str,
        answers: Vec<Answer>,
    ) -> mongodb::error::Result<()> {
        let mut guess = self.recent.get(cart_id).await;
        for _ in 0..MAX_ATTEMPTS {
            let guessed = guess.is_some();
            let cart = match guess.take() {
                Some(cart) => cart,
                None => match self.load(cart_id).await? {
                    Some(cart) => cart,
                    None => {
                        info!(cart_id, "validation for an unknown cart ignored");
                        return Ok(());
                    }
                },
            };
            // Nothing to record on this instance's copy proves nothing, unless the copy shows
            // the cart closed (closing is final): the store decides.
            let Some(event) = cart.answers(answers.clone()) else {
                if guessed && cart.enabled {
                    continue;
                }
                return Ok(());
            };
            if let Some(answered) = self.append(&cart, event).await? {
                self.remember_answers(&answered).await;
                return Ok(());
            }
            if !guessed {
                tokio::time::sleep(race_pause()).await;
            }
        }
        warn!(cart_id, "validation not recorded: the cart kept changing");
        Ok(())
    }

    /// Records the order of a closed cart, which ends the re-sending of its `place_order`. Only
    /// on a closed cart of that user with no order yet: a redelivered `order_placed`, or one
    /// handled by two instances at once, records one order.
    pub async fn record_order(&self, placed: &OrderPlaced) -> mongodb::error::Result<()> {
        // This instance's copy of the cart, when it waits for the order: anything else it shows
        // proves nothing and the store decides.
        let mut guess = self
            .recent
            .get(&placed.cart_id)
            .await
            .filter(|cart| cart.user_id == placed.user_id && cart.waits_for_order());
        for _ in 0..MAX_ATTEMPTS {
            let guessed = guess.is_some();
            let cart = match guess.take() {
                Some(cart) => Some(cart),
                None => self.load(&placed.cart_id).await?,
            };
            let Some(cart) = cart.filter(|cart| cart.user_id == placed.user_id) else {
                info!(
                    cart_id = placed.cart_id,
                    "order_placed for no cart of its user ignored"
                );
                return Ok(());
            };
            if !cart.waits_for_order() {
                if !cart.order_id.is_empty() {
                    self.store.done_waiting(&cart.id).await?;
                }
                info!(
                    cart_id = cart.id,
                    "order_placed for no waiting cart ignored"
                );
                return Ok(());
            }
            let recorded = Event::OrderRecorded {
                order_id: placed.order_id.clone(),
            };
            if let Some(ordered) = self.append(&cart, recorded).await? {
                // Only the read model: a closed cart is shown by no GET, but its entry must not
                // fall behind. The store's cache may already hold the user's next cart, which
                // this older cart must not replace; Redis and this instance's copy keep the
                // newer version by themselves.
                self.views.put(&ordered, &[]).await;
                self.recent.keep(&ordered).await;
                self.store.done_waiting(&cart.id).await?;
                info!(
                    cart_id = cart.id,
                    order_id = placed.order_id,
                    "order recorded"
                );
                return Ok(());
            }
            if !guessed {
                tokio::time::sleep(race_pause()).await;
            }
        }
        // The re-sender sends the `place_order` again, and orders answers it with the order.
        warn!(
            cart_id = placed.cart_id,
            "order not recorded: the cart kept changing"
        );
        Ok(())
    }
}

/// The answers of catalog's `replies` about `cart`, each stamped with the version of the line it
/// was asked about (the replies come in the order of `cart`'s lines).
fn answers_of(cart: &Cart, replies: &[ArticleDataReply]) -> Answers {
    let answers = cart
        .articles
        .iter()
        .zip(replies)
        .map(|(line, reply)| Answer {
            article_id: reply.article_id.clone(),
            valid: reply.valid,
            stamp: Some(line.version),
        })
        .collect();
    Answers {
        cart_id: cart.id.clone(),
        answers,
    }
}

/// 503 for an operation that kept losing the race for its cart's next position.
fn too_busy(user_id: &str) -> ApiError {
    warn!(user_id, "too many concurrent changes to one cart");
    ApiError::Unavailable("mongodb")
}

//! Placing an order, start to end: the order is claimed `pending` (taking the
//! `Idempotency-Key`), its stock is reserved at products, then it is confirmed; a failed
//! step undoes the earlier ones, so an order never exists without its stock, nor stock
//! stays taken without its order. A request that dies mid-way (its host killed) leaves
//! its order pending; once that claim is stale, a retry with the same key takes the
//! order over and finishes it, or the next order placed by anyone releases its stock and
//! removes it ([`OrderFlow::reconcile_one`]).
//!
//! The steps reach the outside world only through three small traits: [`Ledger`] (the
//! `orders` database, [`crate::store::SqlLedger`]), [`Products`] (outbound calls to products
//! and login, implemented by the component) and [`TokenCache`] (where the service token
//! is kept, [`crate::service_token::KvTokenCache`]). Every path is unit-tested below with
//! in-memory fakes.

use spinmesh_catalog::{ProductId, Quantity};

use crate::products::{Outcome, Reserved, reference, reservation_outcome};
use crate::service_token::CachedToken;
use crate::store::{Claim, Lease, Order, Stale};
use crate::{Error, IdempotencyKey, NewOrder};

/// A peer's answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

#[allow(
    async_fn_in_trait,
    reason = "components run single-threaded in wasm: the futures need no `Send` bound"
)]
/// The calls an order makes to other services. An implementation only sends and receives:
/// what an answer means is decided here. Not getting an answer is
/// [`Error::ProductsUnavailable`].
pub trait Products {
    /// `POST /api/token` at login with the service's client credentials.
    async fn request_token(&self) -> Result<Reply, Error>;
    /// `POST /api/products/:id/reservations` for `order` under `reference`.
    async fn reserve(&self, token: &str, order: &NewOrder, reference: &str)
    -> Result<Reply, Error>;
    /// `DELETE /api/products/:id/reservations/:reference`.
    async fn release(
        &self,
        token: &str,
        product: ProductId,
        reference: &str,
    ) -> Result<Reply, Error>;
}

/// Where the service token is kept between requests. Best effort: a cache that fails only
/// costs a token request.
pub trait TokenCache {
    fn load(&self) -> Option<CachedToken>;
    fn save(&self, token: &CachedToken);
}

/// The order records, for one caller at one moment (see [`crate::store`]). Every step
/// after the claim holds only while its [`Lease`] does; a lost lease changes nothing.
pub trait Ledger {
    /// A pending order leased to this request (new, or taken over from a stale claim),
    /// or the confirmed one `key` already stands for.
    fn claim(&self, key: Option<&IdempotencyKey>, order: &NewOrder) -> Result<Claim, Error>;
    /// Records what the leased order bought, making it visible; `None` when the lease was
    /// lost.
    fn confirm(
        &self,
        lease: Lease,
        reserved: &Reserved,
        quantity: Quantity,
    ) -> Result<Option<Order>, Error>;
    /// Removes the leased pending order, freeing its key.
    fn abandon(&self, lease: Lease) -> Result<(), Error>;
    /// Makes the lease stale at once, so a retry or the reconciler takes the order over.
    fn expire(&self, lease: Lease) -> Result<(), Error>;
    /// Leases the oldest pending order, anyone's, whose claim went stale.
    fn take_stale(&self) -> Result<Option<Stale>, Error>;
}

/// A placed order, and whether it is the replay of an earlier request with the same key.
#[derive(Debug)]
pub struct Placed {
    pub order: Order,
    pub replayed: bool,
}

/// The service's side of the order flow: its peers and its token cache, at time `now`
/// (Unix seconds).
pub struct OrderFlow<'a, P, C> {
    pub products: &'a P,
    pub tokens: &'a C,
    pub now: u64,
}

impl<P: Products, C: TokenCache> OrderFlow<'_, P, C> {
    /// Places `order`. A retry with the same `key` gets the first order back and changes
    /// nothing.
    pub async fn place(
        &self,
        ledger: &impl Ledger,
        key: Option<&IdempotencyKey>,
        order: &NewOrder,
    ) -> Result<Placed, Error> {
        let lease = match ledger.claim(key, order)? {
            Claim::Replay(existing) => {
                return Ok(Placed {
                    order: *existing,
                    replayed: true,
                });
            }
            Claim::New(lease) => lease,
        };
        self.reconcile_one(ledger).await;
        // A takeover reserves under the same reference: products answers with the
        // stock the dead request may already have taken, never takes it twice.
        let reserved = match self.reserve(order, &reference(lease.order_id)).await {
            Ok(reserved) => reserved,
            // Without an answer, products may still have taken the stock.
            Err(error @ Error::ProductsUnavailable(_)) => {
                self.undo(ledger, lease, order.product_id).await;
                return Err(error);
            }
            Err(refusal) => {
                ledger.abandon(lease)?;
                return Err(refusal);
            }
        };
        match ledger.confirm(lease, &reserved, order.quantity) {
            Ok(Some(order)) => Ok(Placed {
                order,
                replayed: false,
            }),
            // This request outlived its claim and a retry took the order over: that retry
            // confirms it, and the stock is its now.
            Ok(None) => Err(Error::IdempotencyInProgress),
            Err(error) => {
                self.undo(ledger, lease, order.product_id).await;
                Err(error)
            }
        }
    }

    /// Gives back the leased order's stock and removes the order. When products cannot
    /// confirm the release, the order stays pending with its lease expired, so a retry
    /// or [`Self::reconcile_one`] settles it later: stock is never left without an order.
    async fn undo(&self, ledger: &impl Ledger, lease: Lease, product: ProductId) {
        let cleanup = if self.release(product, &reference(lease.order_id)).await {
            ledger.abandon(lease)
        } else {
            ledger.expire(lease)
        };
        if let Err(error) = cleanup {
            eprintln!("undoing order {}: {error}", lease.order_id);
        }
    }

    /// Settles one order that a dead request left pending (the oldest stale one, anyone's):
    /// releases its stock and removes it. Best effort, bounded to one order and a release
    /// call per placed order; an order it cannot release stays leased and is tried again
    /// once that lease is stale.
    async fn reconcile_one(&self, ledger: &impl Ledger) {
        let settled = match ledger.take_stale() {
            Ok(None) => return,
            Ok(Some(Stale { lease, product_id })) => {
                if self.release(product_id, &reference(lease.order_id)).await {
                    eprintln!("order {}: released, its request had died", lease.order_id);
                    ledger.abandon(lease)
                } else {
                    Ok(())
                }
            }
            Err(error) => Err(error),
        };
        if let Err(error) = settled {
            eprintln!("reconciling a stale order: {error}");
        }
    }

    /// Reserves `order`'s stock under `reference`. A refused token (revoked, keys rotated)
    /// is replaced once.
    async fn reserve(&self, order: &NewOrder, reference: &str) -> Result<Reserved, Error> {
        let mut renew = false;
        loop {
            let token = self.token(renew).await?;
            let reply = self.products.reserve(&token, order, reference).await?;
            match reservation_outcome(order, reply.status, &reply.body) {
                Outcome::Reserved(reserved) => return Ok(reserved),
                Outcome::TokenRefused if !renew => renew = true,
                Outcome::TokenRefused => {
                    return Err(Error::ProductsUnavailable(
                        "products refused a fresh service token".into(),
                    ));
                }
                Outcome::Refused(error) => return Err(error),
            }
        }
    }

    /// Gives back the stock of `reference`, if it was taken; whether products confirmed
    /// that nothing stays reserved under it. What fails is logged.
    async fn release(&self, product: ProductId, reference: &str) -> bool {
        let outcome = match self.token(false).await {
            Ok(token) => self
                .products
                .release(&token, product, reference)
                .await
                .map(|reply| reply.status),
            Err(error) => Err(error),
        };
        match outcome {
            // 404: nothing was reserved.
            Ok(200 | 404) => true,
            Ok(status) => {
                eprintln!("releasing {reference}: products answered {status}");
                false
            }
            Err(error) => {
                eprintln!("releasing {reference}: {error}");
                false
            }
        }
    }

    /// The cached service token, or a new one from login when there is none, it is about
    /// to expire or `renew` is set.
    async fn token(&self, renew: bool) -> Result<String, Error> {
        if !renew && let Some(cached) = self.tokens.load().filter(|cached| cached.usable(self.now))
        {
            return Ok(cached.token);
        }
        let reply = self.products.request_token().await?;
        let token = match reply.status {
            200 => CachedToken::from_reply(&reply.body, self.now),
            _ => None,
        }
        .ok_or_else(|| {
            Error::ProductsUnavailable(format!("no service token: login answered {}", reply.status))
        })?;
        self.tokens.save(&token);
        Ok(token.token)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use serde_json::json;
    use spinmesh_api::ApiError;

    use super::*;

    const NOW: u64 = 10_000;

    /// The fakes never wait, so one poll finishes any flow.
    fn run<T>(future: impl Future<Output = T>) -> T {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("a fake made the flow wait"),
        }
    }

    /// Answers each call with the next scripted reply (`None`: no answer at all) and
    /// records what was asked.
    #[derive(Default)]
    struct FakeProducts {
        token_replies: RefCell<VecDeque<Option<Reply>>>,
        reserve_replies: RefCell<VecDeque<Option<Reply>>>,
        release_replies: RefCell<VecDeque<Option<Reply>>>,
        calls: RefCell<Vec<String>>,
    }

    fn reply(status: u16, body: serde_json::Value) -> Option<Reply> {
        Some(Reply {
            status,
            body: body.to_string().into_bytes(),
        })
    }

    fn token_reply(token: &str) -> Option<Reply> {
        reply(200, json!({"access_token": token, "expires_in": 900}))
    }

    fn reservation() -> Option<Reply> {
        reply(
            201,
            json!({"reference": "order-1", "product_id": 7, "product_name": "Pen",
                   "quantity": 3, "unit_price_cents": 150}),
        )
    }

    impl FakeProducts {
        fn answer(
            &self,
            queue: &RefCell<VecDeque<Option<Reply>>>,
            call: String,
        ) -> Result<Reply, Error> {
            self.calls.borrow_mut().push(call);
            queue
                .borrow_mut()
                .pop_front()
                .expect("an unscripted call")
                .ok_or_else(|| Error::ProductsUnavailable("connection refused".into()))
        }

        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl Products for FakeProducts {
        async fn request_token(&self) -> Result<Reply, Error> {
            self.answer(&self.token_replies, "token".into())
        }

        async fn reserve(
            &self,
            token: &str,
            order: &NewOrder,
            reference: &str,
        ) -> Result<Reply, Error> {
            let call = format!("reserve {} {reference} {token}", order.product_id.get());
            self.answer(&self.reserve_replies, call)
        }

        async fn release(
            &self,
            token: &str,
            product: ProductId,
            reference: &str,
        ) -> Result<Reply, Error> {
            let call = format!("release {} {reference} {token}", product.get());
            self.answer(&self.release_replies, call)
        }
    }

    #[derive(Default)]
    struct FakeTokens(RefCell<Option<CachedToken>>);

    impl TokenCache for FakeTokens {
        fn load(&self) -> Option<CachedToken> {
            self.0.borrow().clone()
        }

        fn save(&self, token: &CachedToken) {
            *self.0.borrow_mut() = Some(token.clone());
        }
    }

    /// A pending order in memory, with the lease that holds it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Pending {
        lease: Lease,
        key: Option<String>,
        product: i64,
        stale: bool,
    }

    /// Orders in memory: pending and confirmed (key, order) ones, and switches to make
    /// confirming fail or find the lease lost.
    #[derive(Default)]
    struct FakeLedger {
        next_id: RefCell<i64>,
        pending: RefCell<Vec<Pending>>,
        confirmed: RefCell<Vec<(Option<String>, Order)>>,
        fail_confirm: bool,
        lose_lease: bool,
    }

    impl FakeLedger {
        /// A ledger holding one order a dead request left pending, its claim stale.
        fn with_stale(id: i64, key: Option<&str>, product: i64) -> Self {
            let ledger = FakeLedger {
                next_id: RefCell::new(id),
                ..FakeLedger::default()
            };
            ledger.pending.borrow_mut().push(Pending {
                lease: Lease {
                    order_id: id,
                    attempt: 0,
                },
                key: key.map(str::to_owned),
                product,
                stale: true,
            });
            ledger
        }

        fn pending(&self) -> Vec<Pending> {
            self.pending.borrow().clone()
        }

        /// Moves the lease of the pending order at `at` to the next attempt.
        fn take_over(&self, at: usize) -> Lease {
            let mut pending = self.pending.borrow_mut();
            pending[at].lease.attempt += 1;
            pending[at].stale = false;
            pending[at].lease
        }

        fn held(&self, lease: Lease) -> Option<usize> {
            self.pending.borrow().iter().position(|p| p.lease == lease)
        }
    }

    impl Ledger for FakeLedger {
        fn claim(&self, key: Option<&IdempotencyKey>, order: &NewOrder) -> Result<Claim, Error> {
            let key = key.map(|key| key.as_str().to_owned());
            if key.is_some() {
                if let Some((_, order)) = self.confirmed.borrow().iter().find(|(k, _)| *k == key) {
                    return Ok(Claim::Replay(Box::new(order.clone())));
                }
                let found = self.pending.borrow().iter().position(|p| p.key == key);
                if let Some(at) = found {
                    if !self.pending.borrow()[at].stale {
                        return Err(Error::IdempotencyInProgress);
                    }
                    return Ok(Claim::New(self.take_over(at)));
                }
            }
            let mut next = self.next_id.borrow_mut();
            *next += 1;
            let lease = Lease {
                order_id: *next,
                attempt: 0,
            };
            self.pending.borrow_mut().push(Pending {
                lease,
                key,
                product: order.product_id.get(),
                stale: false,
            });
            Ok(Claim::New(lease))
        }

        fn confirm(
            &self,
            lease: Lease,
            reserved: &Reserved,
            quantity: Quantity,
        ) -> Result<Option<Order>, Error> {
            if self.fail_confirm {
                return Err(Error::Corrupt("disk full"));
            }
            if self.lose_lease {
                return Ok(None);
            }
            let at = self.held(lease).expect("a pending order");
            let key = self.pending.borrow_mut().remove(at).key;
            let order = Order {
                id: lease.order_id,
                user_id: "alice-id".into(),
                username: "alice".into(),
                product_id: 7,
                product_name: reserved.product_name.clone(),
                quantity: quantity.get(),
                unit_price: String::new(),
                unit_price_cents: reserved.unit_price.cents(),
                total_price: String::new(),
                total_price_cents: reserved.total_cents(quantity),
                customer_name: "alice".into(),
                status: "confirmed".into(),
                created_at: String::new(),
            };
            self.confirmed.borrow_mut().push((key, order.clone()));
            Ok(Some(order))
        }

        fn abandon(&self, lease: Lease) -> Result<(), Error> {
            self.pending.borrow_mut().retain(|p| p.lease != lease);
            Ok(())
        }

        fn expire(&self, lease: Lease) -> Result<(), Error> {
            if let Some(at) = self.held(lease) {
                self.pending.borrow_mut()[at].stale = true;
            }
            Ok(())
        }

        fn take_stale(&self) -> Result<Option<Stale>, Error> {
            let found = self.pending.borrow().iter().position(|p| p.stale);
            Ok(found.map(|at| Stale {
                lease: self.take_over(at),
                product_id: ProductId::new(self.pending.borrow()[at].product).unwrap(),
            }))
        }
    }

    fn order() -> NewOrder {
        NewOrder::new(7, 3, None, "alice").unwrap()
    }

    fn key() -> IdempotencyKey {
        IdempotencyKey::new("key-1").unwrap()
    }

    fn place(
        products: &FakeProducts,
        tokens: &FakeTokens,
        ledger: &FakeLedger,
        key: Option<&IdempotencyKey>,
    ) -> Result<Placed, Error> {
        let flow = OrderFlow {
            products,
            tokens,
            now: NOW,
        };
        run(flow.place(ledger, key, &order()))
    }

    fn scripted(
        tokens: impl IntoIterator<Item = Option<Reply>>,
        reserve: impl IntoIterator<Item = Option<Reply>>,
        release: impl IntoIterator<Item = Option<Reply>>,
    ) -> FakeProducts {
        FakeProducts {
            token_replies: RefCell::new(tokens.into_iter().collect()),
            reserve_replies: RefCell::new(reserve.into_iter().collect()),
            release_replies: RefCell::new(release.into_iter().collect()),
            calls: RefCell::default(),
        }
    }

    fn status(error: Error) -> u16 {
        ApiError::from(error).status
    }

    #[test]
    fn a_placed_order_is_confirmed_at_the_reserved_price_and_the_token_cached() {
        let products = scripted([token_reply("t1")], [reservation()], []);
        let (tokens, ledger) = (FakeTokens::default(), FakeLedger::default());
        let placed = place(&products, &tokens, &ledger, Some(&key())).unwrap();
        assert!(!placed.replayed);
        assert_eq!((placed.order.id, placed.order.total_price_cents), (1, 450));
        assert_eq!(products.calls(), ["token", "reserve 7 order-1 t1"]);
        assert_eq!(tokens.load().unwrap().expires_at, NOW + 900);
        assert!(ledger.pending.borrow().is_empty());
    }

    #[test]
    fn a_usable_cached_token_is_used_and_an_expiring_one_replaced() {
        let tokens = FakeTokens::default();
        tokens.save(&CachedToken {
            token: "cached".into(),
            expires_at: NOW + 600,
        });
        let products = scripted([], [reservation()], []);
        place(&products, &tokens, &FakeLedger::default(), None).unwrap();
        assert_eq!(products.calls(), ["reserve 7 order-1 cached"]);

        tokens.save(&CachedToken {
            token: "old".into(),
            expires_at: NOW + 10,
        });
        let products = scripted([token_reply("new")], [reservation()], []);
        place(&products, &tokens, &FakeLedger::default(), None).unwrap();
        assert_eq!(products.calls(), ["token", "reserve 7 order-1 new"]);
    }

    #[test]
    fn a_replay_answers_the_first_order_and_calls_nobody() {
        let (tokens, ledger) = (FakeTokens::default(), FakeLedger::default());
        let first = place(
            &scripted([token_reply("t1")], [reservation()], []),
            &tokens,
            &ledger,
            Some(&key()),
        )
        .unwrap();
        let products = scripted([], [], []);
        let again = place(&products, &tokens, &ledger, Some(&key())).unwrap();
        assert!(again.replayed);
        assert_eq!(again.order, first.order);
        assert!(products.calls().is_empty());
    }

    #[test]
    fn a_refused_reservation_drops_the_pending_order_without_a_release() {
        let refusals = [
            (
                reply(
                    409,
                    json!({"code": "insufficient_stock", "message": "Insufficient stock: 2 available"}),
                ),
                409,
            ),
            (
                reply(404, json!({"code": "product_not_found", "message": "x"})),
                404,
            ),
        ];
        for (refusal, expected) in refusals {
            let products = scripted([token_reply("t1")], [refusal], []);
            let ledger = FakeLedger::default();
            let error = place(&products, &FakeTokens::default(), &ledger, None).unwrap_err();
            assert_eq!(status(error), expected);
            assert_eq!(products.calls(), ["token", "reserve 7 order-1 t1"]);
            assert!(ledger.pending.borrow().is_empty());
            assert!(ledger.confirmed.borrow().is_empty());
        }
    }

    #[test]
    fn products_down_is_503_and_the_order_stays_pending_until_its_release_is_confirmed() {
        // No answer: products may have taken the stock. The release gets no answer
        // either, so the order is kept, its lease expired, for a retry or the reconciler.
        let products = scripted([token_reply("t1")], [None], [None]);
        let ledger = FakeLedger::default();
        let error = place(&products, &FakeTokens::default(), &ledger, None).unwrap_err();
        assert!(matches!(error, Error::ProductsUnavailable(_)));
        assert_eq!(status(error), 503);
        assert_eq!(
            products.calls(),
            ["token", "reserve 7 order-1 t1", "release 7 order-1 t1"]
        );
        let pending = ledger.pending();
        assert_eq!((pending.len(), pending[0].stale), (1, true), "{pending:?}");

        // A broken answer counts the same; a release that products confirms drops it.
        let products = scripted(
            [token_reply("t1")],
            [reply(500, json!({}))],
            [reply(404, json!({}))],
        );
        let ledger = FakeLedger::default();
        let error = place(&products, &FakeTokens::default(), &ledger, None).unwrap_err();
        assert_eq!(status(error), 503);
        assert_eq!(products.calls().last().unwrap(), "release 7 order-1 t1");
        assert!(ledger.pending().is_empty());
    }

    #[test]
    fn login_down_is_503_and_nothing_is_reserved() {
        for login in [
            None,
            reply(500, json!({})),
            reply(200, json!({"token": "no access_token"})),
        ] {
            let products = scripted([login.clone(), login], [], []);
            let (tokens, ledger) = (FakeTokens::default(), FakeLedger::default());
            let error = place(&products, &tokens, &ledger, None).unwrap_err();
            assert_eq!(status(error), 503);
            // The release finds no token either, so it sends nothing and the order is
            // kept for later.
            assert_eq!(products.calls(), ["token", "token"]);
            assert!(ledger.pending()[0].stale);
            assert!(tokens.load().is_none());
        }
    }

    #[test]
    fn a_refused_token_is_renewed_once() {
        let products = scripted(
            [token_reply("t1"), token_reply("t2")],
            [reply(401, json!({})), reservation()],
            [],
        );
        let tokens = FakeTokens::default();
        place(&products, &tokens, &FakeLedger::default(), None).unwrap();
        assert_eq!(
            products.calls(),
            [
                "token",
                "reserve 7 order-1 t1",
                "token",
                "reserve 7 order-1 t2"
            ]
        );
        assert_eq!(tokens.load().unwrap().token, "t2");

        let products = scripted(
            [token_reply("t1"), token_reply("t2")],
            [reply(401, json!({})), reply(401, json!({}))],
            [reply(404, json!({}))],
        );
        let ledger = FakeLedger::default();
        let error = place(&products, &FakeTokens::default(), &ledger, None).unwrap_err();
        assert_eq!(status(error), 503);
        assert_eq!(products.calls().len(), 5, "{:?}", products.calls());
        assert_eq!(products.calls()[4], "release 7 order-1 t2");
        assert!(ledger.pending.borrow().is_empty());
    }

    #[test]
    fn a_failed_confirmation_releases_the_stock_and_drops_the_pending_order() {
        let products = scripted(
            [token_reply("t1")],
            [reservation()],
            [reply(200, json!({}))],
        );
        let ledger = FakeLedger {
            fail_confirm: true,
            ..FakeLedger::default()
        };
        let error = place(&products, &FakeTokens::default(), &ledger, Some(&key())).unwrap_err();
        assert_eq!(status(error), 500);
        assert_eq!(
            products.calls(),
            ["token", "reserve 7 order-1 t1", "release 7 order-1 t1"]
        );
        assert!(ledger.pending.borrow().is_empty());
        assert!(ledger.confirmed.borrow().is_empty());
    }

    #[test]
    fn a_retry_takes_over_a_stale_order_and_reserves_under_its_reference() {
        let ledger = FakeLedger::with_stale(4, Some("key-1"), 7);
        let products = scripted([token_reply("t1")], [reservation()], []);
        let placed = place(&products, &FakeTokens::default(), &ledger, Some(&key())).unwrap();
        // The same reference: products answers with whatever the dead request took.
        assert_eq!(products.calls(), ["token", "reserve 7 order-4 t1"]);
        assert_eq!(placed.order.id, 4);
        assert!(!placed.replayed);
        assert!(ledger.pending().is_empty());
    }

    #[test]
    fn a_retry_while_the_first_request_still_holds_its_claim_is_409() {
        let ledger = FakeLedger::with_stale(4, Some("key-1"), 7);
        ledger.take_over(0);
        let products = scripted([], [], []);
        let error = place(&products, &FakeTokens::default(), &ledger, Some(&key())).unwrap_err();
        assert_eq!(status(error), 409);
        assert!(products.calls().is_empty());
    }

    #[test]
    fn a_request_that_lost_its_claim_leaves_the_stock_to_the_retry_that_took_it() {
        let products = scripted([token_reply("t1")], [reservation()], []);
        let ledger = FakeLedger {
            lose_lease: true,
            ..FakeLedger::default()
        };
        let error = place(&products, &FakeTokens::default(), &ledger, Some(&key())).unwrap_err();
        assert_eq!(status(error), 409);
        // No release: the stock under order-1 belongs to the order the retry confirms.
        assert_eq!(products.calls(), ["token", "reserve 7 order-1 t1"]);
    }

    #[test]
    fn the_next_order_releases_and_removes_an_order_left_by_a_dead_request() {
        let ledger = FakeLedger::with_stale(4, Some("bob's key"), 9);
        let products = scripted(
            [token_reply("t1")],
            [reservation()],
            [reply(200, json!({}))],
        );
        let placed = place(&products, &FakeTokens::default(), &ledger, None).unwrap();
        assert_eq!(
            products.calls(),
            ["token", "release 9 order-4 t1", "reserve 7 order-5 t1"]
        );
        assert_eq!(placed.order.id, 5);
        assert!(ledger.pending().is_empty());

        // A release products does not confirm keeps the order, leased, for a later try.
        let ledger = FakeLedger::with_stale(4, None, 9);
        let products = scripted([token_reply("t1")], [reservation()], [None]);
        place(&products, &FakeTokens::default(), &ledger, None).unwrap();
        let pending = ledger.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].lease.attempt, pending[0].stale), (1, false));
    }
}

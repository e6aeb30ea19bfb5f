//! Placing an order, start to end: the order is claimed `pending` (taking the
//! `Idempotency-Key`), its stock is reserved at products, then it is confirmed; a failed
//! step undoes the earlier ones, so an order never exists without its stock, nor stock
//! stays taken without its order.
//!
//! The steps reach the outside world only through three small traits: [`Ledger`] (the
//! `orders` database, [`crate::store::SqlLedger`]), [`Products`] (outbound calls to products
//! and login, implemented by the component) and [`TokenCache`] (where the service token
//! is kept, [`crate::service_token::KvTokenCache`]). Every path is unit-tested below with
//! in-memory fakes.

use spinmesh_catalog::Quantity;

use crate::products::{Outcome, Reserved, reference, reservation_outcome};
use crate::service_token::CachedToken;
use crate::store::{Claim, Order};
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
    async fn release(&self, token: &str, order: &NewOrder, reference: &str)
    -> Result<Reply, Error>;
}

/// Where the service token is kept between requests. Best effort: a cache that fails only
/// costs a token request.
pub trait TokenCache {
    fn load(&self) -> Option<CachedToken>;
    fn save(&self, token: &CachedToken);
}

/// The order records, for one caller at one moment (see [`crate::store`]).
pub trait Ledger {
    /// A new pending order, or the one `key` already stands for.
    fn claim(&self, key: Option<&IdempotencyKey>, order: &NewOrder) -> Result<Claim, Error>;
    /// Records what the pending order `id` bought, making it visible.
    fn confirm(&self, id: i64, reserved: &Reserved, quantity: Quantity) -> Result<Order, Error>;
    /// Removes the pending order `id`, freeing its key.
    fn abandon(&self, id: i64) -> Result<(), Error>;
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
        let id = match ledger.claim(key, order)? {
            Claim::Replay(existing) => {
                return Ok(Placed {
                    order: *existing,
                    replayed: true,
                });
            }
            Claim::New(id) => id,
        };
        let reference = reference(id);
        let reserved = match self.reserve(order, &reference).await {
            Ok(reserved) => reserved,
            Err(error) => {
                // Without an answer, products may still have taken the stock.
                if matches!(error, Error::ProductsUnavailable(_)) {
                    self.release(order, &reference).await;
                }
                ledger.abandon(id)?;
                return Err(error);
            }
        };
        match ledger.confirm(id, &reserved, order.quantity) {
            Ok(order) => Ok(Placed {
                order,
                replayed: false,
            }),
            Err(error) => {
                self.release(order, &reference).await;
                if let Err(cleanup) = ledger.abandon(id) {
                    eprintln!("abandoning order {id}: {cleanup}");
                }
                Err(error)
            }
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

    /// Gives back the stock of `reference`, if it was taken. Best effort; what fails is
    /// logged.
    async fn release(&self, order: &NewOrder, reference: &str) {
        let outcome = match self.token(false).await {
            Ok(token) => self
                .products
                .release(&token, order, reference)
                .await
                .map(|reply| reply.status),
            Err(error) => Err(error),
        };
        match outcome {
            // 404: nothing was reserved.
            Ok(200 | 404) => {}
            Ok(status) => eprintln!("releasing {reference}: products answered {status}"),
            Err(error) => eprintln!("releasing {reference}: {error}"),
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
            order: &NewOrder,
            reference: &str,
        ) -> Result<Reply, Error> {
            let call = format!("release {} {reference} {token}", order.product_id.get());
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

    /// Orders in memory: pending ones (id, key), confirmed ones (key, order), and a switch
    /// to make confirming fail.
    #[derive(Default)]
    struct FakeLedger {
        next_id: RefCell<i64>,
        pending: RefCell<Vec<(i64, Option<String>)>>,
        confirmed: RefCell<Vec<(Option<String>, Order)>>,
        fail_confirm: bool,
    }

    impl Ledger for FakeLedger {
        fn claim(&self, key: Option<&IdempotencyKey>, _order: &NewOrder) -> Result<Claim, Error> {
            let key = key.map(|key| key.as_str().to_owned());
            if key.is_some()
                && let Some((_, order)) = self.confirmed.borrow().iter().find(|(k, _)| *k == key)
            {
                return Ok(Claim::Replay(Box::new(order.clone())));
            }
            let mut next = self.next_id.borrow_mut();
            *next += 1;
            self.pending.borrow_mut().push((*next, key));
            Ok(Claim::New(*next))
        }

        fn confirm(
            &self,
            id: i64,
            reserved: &Reserved,
            quantity: Quantity,
        ) -> Result<Order, Error> {
            if self.fail_confirm {
                return Err(Error::Corrupt("disk full"));
            }
            let mut pending = self.pending.borrow_mut();
            let at = pending
                .iter()
                .position(|(pending, _)| *pending == id)
                .expect("a pending order");
            let (_, key) = pending.remove(at);
            let order = Order {
                id,
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
            Ok(order)
        }

        fn abandon(&self, id: i64) -> Result<(), Error> {
            self.pending
                .borrow_mut()
                .retain(|(pending, _)| *pending != id);
            Ok(())
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
    fn products_down_is_503_after_a_release_and_drops_the_pending_order() {
        // No answer: products may have taken the stock, so it is given back.
        let products = scripted([token_reply("t1")], [None], [None]);
        let ledger = FakeLedger::default();
        let error = place(&products, &FakeTokens::default(), &ledger, None).unwrap_err();
        assert!(matches!(error, Error::ProductsUnavailable(_)));
        assert_eq!(status(error), 503);
        assert_eq!(
            products.calls(),
            ["token", "reserve 7 order-1 t1", "release 7 order-1 t1"]
        );
        assert!(ledger.pending.borrow().is_empty());

        // A broken answer counts the same.
        let products = scripted(
            [token_reply("t1")],
            [reply(500, json!({}))],
            [reply(404, json!({}))],
        );
        let error = place(
            &products,
            &FakeTokens::default(),
            &FakeLedger::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(status(error), 503);
        assert_eq!(products.calls().last().unwrap(), "release 7 order-1 t1");
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
            // The release finds no token either, so it sends nothing.
            assert_eq!(products.calls(), ["token", "token"]);
            assert!(ledger.pending.borrow().is_empty());
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
}

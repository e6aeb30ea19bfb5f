//! The `products` and `orders` components over real HTTP, served from the repository's
//! spin.toml (or an edited copy of it) with freshly generated secrets. Accounts and
//! tokens come from the real register and login components; orders reaches products by
//! service chaining with its own client credentials.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};
use spinmesh_e2e::{
    Api, App, DevSecrets, ORDERS_CLIENT_ID, Reply, concurrently, is_rfc3339_utc, repo_root, send,
    status_counts,
};

/// The catalogue and order routes, on top of the shared client.
trait Catalog {
    /// Creates a product as `token`; the product.
    fn product(&self, token: &str, body: Value) -> Value;
    fn stock(&self, id: &Value, token: &str) -> Value;
    fn order(&self, token: &str, body: Value, key: Option<&str>) -> Reply;
    /// How many orders `token` sees, from `X-Total-Count`.
    fn order_count(&self, token: &str) -> u64;
}

impl Catalog for Api {
    fn product(&self, token: &str, body: Value) -> Value {
        created(self.send_json(Method::POST, "/api/products", token, body))
    }

    fn stock(&self, id: &Value, token: &str) -> Value {
        self.get(&format!("/api/products/{id}"), token).ok()["stock"].clone()
    }

    fn order(&self, token: &str, body: Value, key: Option<&str>) -> Reply {
        let mut request = self
            .request(Method::POST, "/api/orders", Some(token))
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        send(request)
    }

    fn order_count(&self, token: &str) -> u64 {
        let reply = self.get("/api/orders", token);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.header("x-total-count").unwrap().parse().unwrap()
    }
}

/// 201 and the body.
fn created(reply: Reply) -> Value {
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body
}

fn start() -> (App, Api) {
    let app = App::builder().start();
    let api = Api::new(&app);
    (app, api)
}

/// The app from a copy of spin.toml changed by `edit` (each edit must apply), with the
/// generated secrets passed as the repository's manifest gets them.
fn start_edited(edits: &[(&str, &str)]) -> (tempfile::TempDir, App, Api) {
    let root = repo_root();
    let mut manifest = std::fs::read_to_string(root.join("spin.toml"))
        .unwrap()
        .replace(
            "source = \"target/",
            &format!("source = \"{}/target/", root.display()),
        );
    for (from, to) in edits {
        assert!(manifest.contains(from), "spin.toml no longer has {from:?}");
        manifest = manifest.replacen(from, to, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let secrets = DevSecrets::generate();
    let mut builder = App::with_manifest(path).secrets(secrets.clone());
    for (name, value) in secrets.variables() {
        builder = builder.variable(&name, &value);
    }
    let app = builder.start();
    let api = Api::new(&app);
    (dir, app, api)
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn seed_flow_works_with_a_service_token() {
    let (_app, api) = start();
    let token = api.service();

    // curl -X POST /create-product -d '{"name":"iPhone", "price":"50000", "category":"Electronics"}'
    let product = created(api.send_json(
        Method::POST,
        "/create-product",
        &token,
        json!({ "name": "iPhone", "price": "50000", "category": "Electronics" }),
    ));
    let id = product["id"].as_i64().unwrap();
    assert_eq!(product["name"], "iPhone");
    assert_eq!(product["price"], "50000.00");
    assert_eq!(product["price_cents"], 5_000_000);
    assert_eq!(product["category"], "Electronics");
    // Like the seed's products, it has no stock count: it never runs out.
    assert_eq!(product["stock"], Value::Null);
    assert_eq!(product["description"], "");
    assert!(is_rfc3339_utc(&product["created_at"]), "{product}");

    // curl -X GET /products -H "Authorization: Bearer …"
    let list = api.get("/products", &token);
    assert_eq!(list.header("x-total-count"), Some("1"));
    assert_eq!(list.ok(), json!([product.clone()]));
    for category in ["Electronics", "electronics"] {
        assert_eq!(
            api.get(&format!("/products/category/{category}"), &token)
                .ok(),
            json!([product.clone()])
        );
    }
    assert_eq!(api.get("/products/category/Books", &token).ok(), json!([]));

    // PUT /update-product/<id>: a price change, for administrators.
    let admin = api.admin();
    let updated = api
        .send_json(
            Method::PUT,
            &format!("/update-product/{id}"),
            &admin,
            json!({ "price": "45000" }),
        )
        .ok();
    assert_eq!(
        (&updated["price"], &updated["price_cents"]),
        (&json!("45000.00"), &json!(4_500_000))
    );

    // curl -X POST /create-order -d '{"product_id": 1, "quantity": 2, "customer_name": "John Doe"}'
    let order = created(api.send_json(
        Method::POST,
        "/create-order",
        &token,
        json!({ "product_id": id, "quantity": 2, "customer_name": "John Doe" }),
    ));
    assert_eq!(order["product_id"], id);
    assert_eq!(order["product_name"], "iPhone");
    assert_eq!(order["quantity"], 2);
    assert_eq!(order["unit_price"], "45000.00");
    assert_eq!(order["unit_price_cents"], 4_500_000);
    assert_eq!(order["total_price"], "90000.00");
    assert_eq!(order["total_price_cents"], 9_000_000);
    assert_eq!(order["customer_name"], "John Doe");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["username"], ORDERS_CLIENT_ID);
    assert!(is_rfc3339_utc(&order["created_at"]), "{order}");
    assert_eq!(api.get("/orders", &token).ok(), json!([order.clone()]));
    assert_eq!(
        api.get(&format!("/api/orders/{}", order["id"]), &token)
            .ok(),
        order
    );

    // Every route wants a token.
    send(api.request(Method::GET, "/products", None)).assert_error(401, "token_missing");
    send(
        api.request(Method::POST, "/create-order", None)
            .json(&json!({ "product_id": id, "quantity": 1 })),
    )
    .assert_error(401, "token_missing");
    send(api.request(Method::GET, "/orders", None)).assert_error(401, "token_missing");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn products_are_listed_filtered_paged_changed_and_deleted() {
    let (_app, api) = start();
    let admin = api.admin();
    let user = api.user("carol").token;
    let mut ids = Vec::new();
    for (name, category, description) in [
        ("iPhone 15", "Electronics", "A phone"),
        ("Phone case", "Accessories", "Fits most phones"),
        ("Garden hose", "Home Garden", "25 m"),
        ("Sale sign", "Home Garden", "Says 50% off"),
        ("Laptop", "Electronics", "Lightweight"),
    ] {
        let product = api.product(
            &admin,
            json!({ "name": name, "price": 10, "category": category, "stock": 3, "description": description }),
        );
        ids.push(product["id"].as_i64().unwrap());
    }
    let names = |reply: Reply| -> Vec<String> {
        reply
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };

    // Pages in id order, with the total and links.
    let page = api.get("/api/products?limit=2&offset=2", &user);
    assert_eq!(page.header("x-total-count"), Some("5"));
    assert_eq!(
        page.header("link"),
        Some(
            r#"</api/products?limit=2&offset=4>; rel="next", </api/products?limit=2&offset=0>; rel="prev""#
        )
    );
    assert_eq!(names(page), ["Garden hose", "Sale sign"]);
    api.get("/api/products?limit=0", &user)
        .assert_error(400, "invalid_request");

    // Filters: category (any case) and q (name or description, any case, literally).
    assert_eq!(
        names(api.get("/api/products?category=electronics", &user)),
        ["iPhone 15", "Laptop"]
    );
    assert_eq!(
        names(api.get("/api/products?q=PHONE", &user)),
        ["iPhone 15", "Phone case"]
    );
    assert_eq!(
        names(api.get("/api/products?q=50%25", &user)),
        ["Sale sign"]
    );
    assert_eq!(names(api.get("/api/products?q=%25", &user)), ["Sale sign"]);
    assert_eq!(
        names(api.get("/api/products?q=_", &user)),
        Vec::<String>::new()
    );
    let filtered = api.get("/api/products?category=Home+Garden&q=hose", &user);
    assert_eq!(filtered.header("x-total-count"), Some("1"));
    assert_eq!(names(filtered), ["Garden hose"]);
    assert_eq!(
        names(api.get("/api/products/category/Home%20Garden", &user)),
        ["Garden hose", "Sale sign"]
    );
    assert_eq!(
        names(api.get("/api/products/category/home%20garden?q=sign", &user)),
        ["Sale sign"]
    );
    api.get(&format!("/api/products?q={}", "x".repeat(101)), &user)
        .assert_error(400, "invalid_request");
    api.get("/api/products/category/%FF", &user)
        .assert_error(400, "invalid_category");

    // One product; unknown and malformed ids.
    let item = format!("/api/products/{}", ids[0]);
    let iphone = api.get(&item, &user).ok();
    assert_eq!(
        (&iphone["name"], &iphone["stock"], &iphone["price"]),
        (&json!("iPhone 15"), &json!(3), &json!("10.00"))
    );
    api.get("/api/products/999999", &user)
        .assert_error(404, "product_not_found");
    api.get("/api/products/abc", &user)
        .assert_error(400, "invalid_product_id");

    // PUT and PATCH are partial updates.
    let changed = api
        .send_json(
            Method::PATCH,
            &item,
            &admin,
            json!({ "name": "iPhone 16", "stock": 7, "description": null }),
        )
        .ok();
    assert_eq!(
        (&changed["name"], &changed["stock"], &changed["description"]),
        (&json!("iPhone 16"), &json!(7), &json!("A phone"))
    );
    api.send_json(Method::PUT, &item, &admin, json!({}))
        .assert_error(400, "invalid_request");
    api.send_json(Method::PUT, &item, &admin, json!({ "id": 9 }))
        .assert_error(400, "invalid_request");
    api.send_json(Method::PUT, &item, &admin, json!({ "stock": -1 }))
        .assert_error(400, "invalid_request");
    api.send_json(
        Method::PUT,
        "/api/products/999999",
        &admin,
        json!({ "stock": 1 }),
    )
    .assert_error(404, "product_not_found");

    // Delete, then it is gone.
    let deleted = send(api.request(Method::DELETE, &item, Some(&admin))).ok();
    assert_eq!(deleted["id"], ids[0]);
    api.get(&item, &user).assert_error(404, "product_not_found");
    send(api.request(Method::DELETE, &item, Some(&admin))).assert_error(404, "product_not_found");
    assert_eq!(
        api.get("/api/products", &user).header("x-total-count"),
        Some("4")
    );

    // Unknown methods and paths keep the JSON error shape.
    let wrong = send(api.request(Method::DELETE, "/api/products", Some(&admin)));
    wrong.assert_error(405, "method_not_allowed");
    assert_eq!(wrong.header("allow"), Some("GET, POST"));
    send(api.request(Method::GET, "/create-product", Some(&admin)))
        .assert_error(405, "method_not_allowed");

    // Bad bodies.
    send(
        api.request(Method::POST, "/api/products", Some(&admin))
            .header("content-type", "application/json")
            .body("{"),
    )
    .assert_error(400, "invalid_json");
    send(
        api.request(Method::POST, "/api/products", Some(&admin))
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .assert_error(415, "unsupported_media_type");
    for (body, code) in [
        (json!({ "price": 1, "category": "c" }), "invalid_request"),
        (json!({ "name": "n", "category": "c" }), "invalid_request"),
        (
            json!({ "name": " ", "price": 1, "category": "c" }),
            "invalid_name",
        ),
        (
            json!({ "name": "n", "price": 1, "category": "a/b" }),
            "invalid_category",
        ),
        (
            json!({ "name": "n", "price": 1, "category": "c", "stock": 1_000_000_001u64 }),
            "invalid_stock",
        ),
        (
            json!({ "name": "n", "price": 1, "category": "c", "stock": "5" }),
            "invalid_request",
        ),
    ] {
        api.send_json(Method::POST, "/api/products", &admin, body)
            .assert_error(400, code);
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn prices_are_exact_cents_from_numbers_or_decimal_strings() {
    let (_app, api) = start();
    let admin = api.admin();
    let accepted = [
        (json!("50000"), "50000.00", 5_000_000u64),
        (json!(50000), "50000.00", 5_000_000),
        (json!("19.99"), "19.99", 1999),
        (json!(19.99), "19.99", 1999),
        (json!(0.1), "0.10", 10),
        (json!("0.5"), "0.50", 50),
        (json!(0), "0.00", 0),
        (json!(1e3), "1000.00", 100_000),
        (json!("1000000000.00"), "1000000000.00", 100_000_000_000),
    ];
    for (price, shown, cents) in accepted {
        let product = api.product(
            &admin,
            json!({ "name": "Thing", "price": price, "category": "Prices" }),
        );
        assert_eq!(
            (&product["price"], &product["price_cents"]),
            (&json!(shown), &json!(cents)),
            "{price}"
        );
        // Shown the same way when read back.
        let read = api
            .get(&format!("/api/products/{}", product["id"]), &admin)
            .ok();
        assert_eq!(read, product, "{price}");
    }
    let refused = [
        json!(-1),
        json!("-19.99"),
        json!(-0.01),
        json!("NaN"),
        json!("Infinity"),
        json!("inf"),
        json!("19.999"),
        json!(19.999),
        json!(0.001),
        json!("1e5"),
        json!(" 5"),
        json!("5,00"),
        json!(""),
        json!("1000000000.01"),
        json!(1e300),
        json!(18446744073709551615u64),
        json!(null),
        json!(true),
        json!({ "amount": 5 }),
    ];
    for price in refused {
        api.send_json(
            Method::POST,
            "/api/products",
            &admin,
            json!({ "name": "Thing", "price": price, "category": "Prices" }),
        )
        .assert_error(400, "invalid_price");
    }
    // Raw JSON the serializer would never write: huge and over-precise numbers.
    for raw in ["1e400", "0.0000000000000000000000001"] {
        let reply = send(
            api.request(Method::POST, "/api/products", Some(&admin))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"name":"Thing","price":{raw},"category":"Prices"}}"#
                )),
        );
        assert_eq!(reply.status, 400, "{raw}: {}", reply.body);
    }
    let listed = api.get("/api/products?category=Prices", &admin);
    assert_eq!(listed.header("x-total-count"), Some("9"));
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn authorization_rules() {
    let (_app, api) = start();
    let admin = api.admin();
    let service = api.service();
    let alice = api.user("alice").token;
    let bob = api.user("bob").token;
    let body = json!({ "name": "Pen", "price": "1.50", "category": "Office", "stock": 100 });

    // Users read the catalogue but cannot change it; services add products only.
    api.send_json(Method::POST, "/api/products", &alice, body.clone())
        .assert_error(403, "forbidden");
    api.send_json(Method::POST, "/create-product", &alice, body.clone())
        .assert_error(403, "forbidden");
    let pen = api.product(&service, body.clone());
    let item = format!("/api/products/{}", pen["id"]);
    assert_eq!(api.get(&item, &alice).ok()["name"], "Pen");
    for token in [&alice, &service] {
        api.send_json(Method::PUT, &item, token, json!({ "price": 1 }))
            .assert_error(403, "forbidden");
        api.send_json(
            Method::PUT,
            &format!("/update-product/{}", pen["id"]),
            token,
            json!({ "price": 1 }),
        )
        .assert_error(403, "forbidden");
        send(api.request(Method::DELETE, &item, Some(token))).assert_error(403, "forbidden");
    }

    // Stock is reserved and released by services only.
    let reservations = format!("{item}/reservations");
    for token in [&alice, &admin] {
        api.send_json(
            Method::POST,
            &reservations,
            token,
            json!({ "quantity": 1, "reference": "x-1" }),
        )
        .assert_error(403, "forbidden");
        send(api.request(Method::DELETE, &format!("{reservations}/x-1"), Some(token)))
            .assert_error(403, "forbidden");
    }
    // A service's reservation: taken once per reference, given back once.
    let taken = created(api.send_json(
        Method::POST,
        &reservations,
        &service,
        json!({ "quantity": 4, "reference": "x-1" }),
    ));
    assert_eq!(
        (
            &taken["quantity"],
            &taken["unit_price"],
            &taken["product_name"]
        ),
        (&json!(4), &json!("1.50"), &json!("Pen"))
    );
    let again = api.send_json(
        Method::POST,
        &reservations,
        &service,
        json!({ "quantity": 4, "reference": "x-1" }),
    );
    assert_eq!(again.ok(), taken);
    api.send_json(
        Method::POST,
        &reservations,
        &service,
        json!({ "quantity": 5, "reference": "x-1" }),
    )
    .assert_error(409, "reservation_conflict");
    assert_eq!(api.stock(&pen["id"], &alice), 96);
    send(api.request(
        Method::DELETE,
        &format!("{reservations}/x-1"),
        Some(&service),
    ))
    .ok();
    send(api.request(
        Method::DELETE,
        &format!("{reservations}/x-1"),
        Some(&service),
    ))
    .assert_error(404, "reservation_not_found");
    assert_eq!(api.stock(&pen["id"], &alice), 100);

    // Orders: everyone sees their own; admins see all; nobody reads another's.
    let order = |token: &str| {
        created(api.order(
            token,
            json!({ "product_id": pen["id"], "quantity": 1 }),
            None,
        ))
    };
    let alices = order(&alice);
    let bobs = order(&bob);
    assert_eq!(alices["customer_name"], "alice");
    let alices_path = format!("/api/orders/{}", alices["id"]);
    assert_eq!(api.get(&alices_path, &alice).ok(), alices);
    api.get(&alices_path, &bob).assert_error(403, "forbidden");
    api.get(&alices_path, &service)
        .assert_error(403, "forbidden");
    assert_eq!(api.get(&alices_path, &admin).ok(), alices);
    assert_eq!(api.get("/api/orders", &alice).ok(), json!([alices.clone()]));
    assert_eq!(api.get("/orders", &bob).ok(), json!([bobs.clone()]));
    assert_eq!(
        api.get("/api/orders", &admin).ok(),
        json!([alices.clone(), bobs.clone()])
    );
    api.get("/api/orders/999999", &alice)
        .assert_error(404, "order_not_found");
    api.get("/api/orders/x", &alice)
        .assert_error(400, "invalid_order_id");
    api.get(&alices_path, "not-a-token")
        .assert_error(401, "token_invalid");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn orders_take_stock_at_the_price_of_the_moment() {
    let (_app, api) = start();
    let admin = api.admin();
    let alice = api.user("alice").token;
    let pen = api.product(
        &admin,
        json!({ "name": "Pen", "price": "19.99", "category": "Office", "stock": 5 }),
    );
    let id = pen["id"].clone();

    let first = created(api.order(
        &alice,
        json!({ "product_id": id, "quantity": 2, "customer_name": "Alice A." }),
        None,
    ));
    assert_eq!(
        (
            &first["unit_price"],
            &first["total_price"],
            &first["total_price_cents"]
        ),
        (&json!("19.99"), &json!("39.98"), &json!(3998))
    );
    assert_eq!(api.stock(&id, &alice), 3);

    // A later price change does not touch an order already placed.
    api.send_json(
        Method::PATCH,
        &format!("/api/products/{id}"),
        &admin,
        json!({ "price": 25 }),
    )
    .ok();
    let second = created(api.order(&alice, json!({ "product_id": id, "quantity": 3 }), None));
    assert_eq!(second["total_price"], "75.00");
    assert_eq!(
        api.get(&format!("/api/orders/{}", first["id"]), &alice)
            .ok(),
        first
    );
    assert_eq!(api.stock(&id, &alice), 0);

    // Refusals place nothing.
    let short = api.order(&alice, json!({ "product_id": id, "quantity": 1 }), None);
    short.assert_error(409, "insufficient_stock");
    assert!(
        short.str("message").contains("0 available"),
        "{}",
        short.body
    );
    let unknown = api.order(&alice, json!({ "product_id": 999999, "quantity": 1 }), None);
    unknown.assert_error(404, "product_not_found");
    assert_eq!(unknown.str("message"), "Product 999999 does not exist");
    for (body, code) in [
        (
            json!({ "product_id": id, "quantity": 0 }),
            "invalid_quantity",
        ),
        (
            json!({ "product_id": id, "quantity": 10_001 }),
            "invalid_quantity",
        ),
        (
            json!({ "product_id": id, "quantity": -1 }),
            "invalid_request",
        ),
        (
            json!({ "product_id": 0, "quantity": 1 }),
            "invalid_product_id",
        ),
        (
            json!({ "product_id": "1", "quantity": 1 }),
            "invalid_request",
        ),
        (json!({ "quantity": 1 }), "invalid_request"),
        (
            json!({ "product_id": id, "quantity": 1, "customer_name": "a\nb" }),
            "invalid_customer_name",
        ),
    ] {
        api.order(&alice, body, None).assert_error(400, code);
    }
    assert_eq!(api.order_count(&alice), 2);
    assert_eq!(api.order_count(&admin), 2);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn concurrent_orders_never_oversell() {
    let (_app, api) = start();
    let admin = api.admin();
    let buyers: Vec<String> = (0..3)
        .map(|i| api.user(&format!("buyer{i}")).token)
        .collect();
    let product = api.product(
        &admin,
        json!({ "name": "Limited", "price": "5.00", "category": "Drops", "stock": 10 }),
    );
    let body = json!({ "product_id": product["id"], "quantity": 1 });

    let statuses = concurrently(30, |i| {
        let reply = api.order(&buyers[i % buyers.len()], body.clone(), None);
        if reply.status != 201 {
            reply.assert_error(409, "insufficient_stock");
        }
        reply.status
    });
    assert_eq!(status_counts(&statuses), [(201, 10), (409, 20)].into());
    assert_eq!(api.stock(&product["id"], &admin), 0);
    assert_eq!(api.order_count(&admin), 10);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_retried_create_returns_the_first_order() {
    let (_app, api) = start();
    let admin = api.admin();
    let alice = api.user("alice").token;
    let bob = api.user("bob").token;
    let product = api.product(
        &admin,
        json!({ "name": "Mug", "price": 12, "category": "Kitchen", "stock": 20 }),
    );
    let body = json!({ "product_id": product["id"], "quantity": 2 });

    let first = api.order(&alice, body.clone(), Some("retry-1"));
    assert_eq!(first.header("idempotent-replayed"), None);
    let first = created(first);
    let retry = api.order(&alice, body.clone(), Some("retry-1"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(created(retry), first);
    assert_eq!(api.stock(&product["id"], &alice), 18);
    assert_eq!(api.order_count(&alice), 1);

    // The same key for another order is a client error; keys are per caller.
    api.order(
        &alice,
        json!({ "product_id": product["id"], "quantity": 3 }),
        Some("retry-1"),
    )
    .assert_error(422, "idempotency_key_reused");
    let bobs = created(api.order(&bob, body.clone(), Some("retry-1")));
    assert_ne!(bobs["id"], first["id"]);
    assert_eq!(api.stock(&product["id"], &alice), 16);

    // A failed attempt is not remembered: the key stays usable.
    api.order(
        &alice,
        json!({ "product_id": product["id"], "quantity": 17 }),
        Some("retry-2"),
    )
    .assert_error(409, "insufficient_stock");
    created(api.order(
        &alice,
        json!({ "product_id": product["id"], "quantity": 1 }),
        Some("retry-2"),
    ));
    assert_eq!(api.stock(&product["id"], &alice), 15);

    // Concurrent retries of one request create one order.
    let replies = concurrently(8, |_| {
        let reply = api.order(&alice, body.clone(), Some("retry-3"));
        if reply.status != 201 {
            reply.assert_error(409, "idempotency_in_progress");
            assert_eq!(reply.header("retry-after"), Some("1"));
        }
        (reply.status, reply.body)
    });
    let ids: Vec<&Value> = replies
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, order)| &order["id"])
        .collect();
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| *id == ids[0]), "{replies:?}");
    assert_eq!(api.stock(&product["id"], &alice), 13);
    assert_eq!(api.order_count(&alice), 3);

    for key in ["", "has space", &"k".repeat(256)] {
        api.order(&alice, body.clone(), Some(key))
            .assert_error(400, "invalid_idempotency_key");
    }
}

/// The grant line of `orders` in spin.toml.
const ORDERS_HOSTS: &str =
    r#"allowed_outbound_hosts = ["http://login.spin.internal", "http://products.spin.internal"]"#;

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn unreachable_products_is_503_and_places_nothing() {
    // The host refuses orders' calls to products.
    let (_dir, _app, api) = start_edited(&[(
        ORDERS_HOSTS,
        r#"allowed_outbound_hosts = ["http://login.spin.internal"]"#,
    )]);
    let admin = api.admin();
    let alice = api.user("alice").token;
    let product = api.product(
        &admin,
        json!({ "name": "Lamp", "price": 30, "category": "Home", "stock": 5 }),
    );
    let body = json!({ "product_id": product["id"], "quantity": 1 });
    api.order(&alice, body.clone(), None)
        .assert_error(503, "service_unavailable");
    // With a key too, and the key is not used up by the failure.
    api.order(&alice, body, Some("k"))
        .assert_error(503, "service_unavailable");
    assert_eq!(api.order_count(&alice), 0);
    assert_eq!(api.order_count(&admin), 0);
    assert_eq!(api.stock(&product["id"], &admin), 5);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn failing_products_is_503_and_places_nothing() {
    // products without its database answers every reservation with a 500.
    let (_dir, _app, api) = start_edited(&[("sqlite_databases = [\"catalog\"]\n", "")]);
    let admin = api.admin();
    let alice = api.user("alice").token;
    api.get("/api/products", &alice)
        .assert_error(500, "internal_error");
    let reply = api.order(&alice, json!({ "product_id": 1, "quantity": 1 }), None);
    reply.assert_error(503, "service_unavailable");
    assert!(!reply.str("message").contains("sqlite"), "{}", reply.body);
    assert_eq!(api.order_count(&alice), 0);
    assert_eq!(api.order_count(&admin), 0);
}

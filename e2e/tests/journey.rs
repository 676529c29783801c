//! The whole journey of CONTRACT sections 4 to 9 across the five services, over HTTP only (and
//! MongoDB where an operator would use mongosh): two shoppers, an admin made with Mongo tooling,
//! an image, an article, a cart, a checkout, an order validated by catalog and paid, an order
//! refused for lack of stock that gives its reservation back, and a signout that every service
//! honours at once.

use std::io::Cursor;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use e2e::System;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use testkit::eventually;

/// How long the asynchronous steps (validation replies, order flow) may take before a test gives
/// up: a bound on hanging, not a speed.
const FLOW: Duration = Duration::from_secs(30);
/// A logout broadcast is one message delivery; the token TTL (10 minutes) is far longer.
const EVICTION: Duration = Duration::from_secs(5);

fn jpeg_data_url() -> String {
    let photo = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(photo)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .expect("JPEG encoding");
    format!("data:image/jpeg;base64,{}", STANDARD.encode(bytes))
}

/// The system, and what the journey has made so far.
struct Journey {
    system: System,
    /// The first user, made admin through MongoDB.
    alice: String,
    bob: String,
    image_id: String,
}

impl Journey {
    async fn create_article(&self, name: &str, price: f64, stock: i64) -> String {
        let body = json!({"name": name, "description": "Hand made in the test suite",
                          "image": self.image_id, "price": price, "stock": stock});
        let reply = self
            .system
            .post(self.catalog("/articles"), Some(&self.alice), &body)
            .await;
        reply.json()["_id"]
            .as_str()
            .unwrap_or_else(|| panic!("an article: {reply}"))
            .to_owned()
    }

    async fn stock(&self, article: &str) -> i64 {
        let reply = self
            .system
            .get(self.catalog(&format!("/articles/{article}")), None)
            .await;
        reply.json()["stock"].as_i64().expect("a stock")
    }

    async fn add_to_cart(&self, token: &str, article: &str, quantity: i64) -> Value {
        let body = json!({"articleId": article, "quantity": quantity});
        let reply = self
            .system
            .post(self.cart("/cart/article"), Some(token), &body)
            .await;
        assert_eq!(reply.status, 200, "{reply}");
        reply.json()
    }

    /// Checks out `token`'s cart and waits until its order leaves `PLACED`; returns the order.
    async fn checkout_until_decided(&self, token: &str) -> Value {
        let reply = self
            .system
            .post(self.cart("/cart/checkout"), Some(token), &json!({}))
            .await;
        assert_eq!(reply.status, 200, "{reply}");
        let closed = reply.json();
        assert_eq!(closed["enabled"], false, "{reply}");
        let cart_id = closed["_id"].as_str().expect("a cart id").to_owned();

        let decided = eventually(FLOW, || async {
            self.order_summary(token, &cart_id)
                .await
                .is_some_and(|summary| summary["status"] != "PLACED")
        })
        .await;
        assert!(decided, "the order of cart {cart_id} never left PLACED");
        let summary = self.order_summary(token, &cart_id).await.expect("an order");
        let order_id = summary["id"].as_str().expect("an order id");
        let order = self
            .system
            .get(self.orders(&format!("/orders/{order_id}")), Some(token))
            .await;
        assert_eq!(order.status, 200, "{order}");
        order.json()
    }

    /// The entry of `GET /orders` for the order of cart `cart_id`, once there is one.
    async fn order_summary(&self, token: &str, cart_id: &str) -> Option<Value> {
        let orders = self.system.get(self.orders("/orders"), Some(token)).await;
        let orders = orders.json();
        orders
            .as_array()
            .unwrap_or_else(|| panic!("an array of orders: {orders}"))
            .iter()
            .find(|order| order["cartId"] == cart_id)
            .cloned()
    }

    /// The order id cart recorded for the closed cart, from its events: no endpoint returns a
    /// closed cart.
    async fn recorded_order(&self, cart_id: &str) -> Option<String> {
        let recorded = self
            .system
            .cart_db
            .collection::<Document>("cart_events")
            .find_one(doc! {"cart": cart_id, "event.type": "orderRecorded"})
            .await
            .expect("MongoDB answers")?;
        let event = recorded.get_document("event").expect("an event");
        Some(event.get_str("orderId").expect("an order id").to_owned())
    }

    fn catalog(&self, path: &str) -> String {
        format!("{}{path}", self.system.catalog.url)
    }

    fn cart(&self, path: &str) -> String {
        format!("{}{path}", self.system.cart.url)
    }

    fn orders(&self, path: &str) -> String {
        format!("{}{path}", self.system.orders.url)
    }
}

#[tokio::test]
async fn a_shopper_buys_pays_and_signs_out_across_the_five_services() {
    let system = System::start().await;

    // Two users sign up; the first is made admin the way an operator does, in MongoDB.
    let alice = system.auth.signup("alice_e2e").await;
    system.auth.make_admin("alice_e2e").await;
    let bob = system.auth.signup("bob_e2e").await;

    // Alice uploads a picture and puts an article with it on sale.
    let upload = system
        .post(
            format!("{}/images/create", system.image.url),
            Some(&alice),
            &json!({ "image": jpeg_data_url() }),
        )
        .await;
    let image_id = upload.id();
    let journey = Journey {
        system,
        alice,
        bob,
        image_id,
    };
    let (alice, bob, system) = (&journey.alice, &journey.bob, &journey.system);
    let lamp = journey.create_article("Brass Lamp", 12.5, 5).await;

    // Anyone finds it, without a token.
    let found = system
        .get(journey.catalog("/articles/search/brass"), None)
        .await;
    assert_eq!(found.status, 200, "{found}");
    let names: Vec<Value> = found
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|article| article["name"].clone())
        .collect();
    assert_eq!(names, [json!("Brass Lamp")], "{found}");
    let image = system
        .get(
            format!(
                "{}/images/{}/jpeg?Size=160",
                system.image.url, journey.image_id
            ),
            None,
        )
        .await;
    assert_eq!(image.header("content-type"), Some("image/jpeg"), "{image}");

    // Alice adds two lamps; catalog validates the line asynchronously.
    journey.add_to_cart(alice, &lamp, 2).await;
    let validated = eventually(FLOW, || async {
        let cart = system.get(journey.cart("/cart"), Some(alice)).await.json();
        cart["articles"][0]["validated"] == true && cart["articles"][0]["valid"] == true
    })
    .await;
    assert!(validated, "the cart line was never validated by catalog");
    let check = system
        .get(journey.cart("/cart/validate"), Some(alice))
        .await;
    check.assert_is(200, json!({"errors": [], "warnings": []}));

    // Checkout: the order is validated by catalog with the right total, and the stock is taken.
    let order = journey.checkout_until_decided(alice).await;
    assert_eq!(order["status"], "VALIDATED", "{order}");
    assert_eq!(order["totalPrice"], 25.0, "{order}");
    assert_eq!(order["articles"][0]["unitaryPrice"], 12.5, "{order}");
    let order_id = order["id"].as_str().expect("an order id").to_owned();
    let cart_id = order["cartId"].as_str().expect("a cart id").to_owned();
    assert_eq!(journey.stock(&lamp).await, 3);
    let recorded = eventually(FLOW, || async {
        journey.recorded_order(&cart_id).await.as_deref() == Some(order_id.as_str())
    })
    .await;
    assert!(recorded, "the cart never recorded its order id");
    let fresh = system.get(journey.cart("/cart"), Some(alice)).await.json();
    assert_ne!(fresh["_id"], cart_id.as_str(), "a new cart after checkout");
    assert_eq!(fresh["articles"], json!([]));

    // She pays the whole total: the order is PAYMENT_DEFINED.
    let payment_url = journey.orders(&format!("/orders/{order_id}/payment"));
    let paid = system
        .post(
            payment_url.clone(),
            Some(alice),
            &json!({"method": "CREDIT", "amount": 25.0}),
        )
        .await;
    assert_eq!(paid.status, 200, "{paid}");
    assert_eq!(paid.json()["status"], "PAYMENT_DEFINED", "{paid}");
    assert_eq!(paid.json()["totalPayment"], 25.0, "{paid}");

    // Bob sees neither her order nor her cart, and cannot pay for her.
    let peek = system
        .get(journey.orders(&format!("/orders/{order_id}")), Some(bob))
        .await;
    peek.assert_is(404, json!({"error": "Not found"}));
    let pay = system
        .post(
            payment_url,
            Some(bob),
            &json!({"method": "CASH", "amount": 1.0}),
        )
        .await;
    pay.assert_is(404, json!({"error": "Not found"}));
    let own = system.get(journey.orders("/orders"), Some(bob)).await;
    own.assert_is(200, json!([]));
    let bobs_cart = system.get(journey.cart("/cart"), Some(bob)).await.json();
    assert_ne!(bobs_cart["_id"], fresh["_id"]);
    assert_eq!(bobs_cart["articles"], json!([]));

    // Bob orders one lamp (in stock) and more mugs than there are: catalog reserves the lamp,
    // refuses the mugs, the order ends INVALID, and the lamp goes back on the shelf.
    let mug = journey.create_article("Blue Mug", 4.0, 1).await;
    journey.add_to_cart(bob, &lamp, 1).await;
    journey.add_to_cart(bob, &mug, 3).await;
    let warned = system.get(journey.cart("/cart/validate"), Some(bob)).await;
    assert_eq!(warned.status, 200, "{warned}");
    assert_eq!(warned.json()["errors"], json!([]), "{warned}");
    assert_eq!(
        warned.json()["warnings"][0]["articleId"],
        mug.as_str(),
        "{warned}"
    );
    let refused = journey.checkout_until_decided(bob).await;
    assert_eq!(refused["status"], "INVALID", "{refused}");
    let restored = eventually(FLOW, || async { journey.stock(&lamp).await == 3 }).await;
    assert!(
        restored,
        "the lamp reserved for the invalid order never came back"
    );
    assert_eq!(journey.stock(&mug).await, 1);

    // Every service has Alice's token cached; her signout makes all five refuse it at once.
    let warm = [
        system.get(format!("{}/users/current", system.auth.url), Some(alice)).await,
        system
            .post(format!("{}/images/create", system.image.url), Some(alice), &json!({"image": jpeg_data_url()}))
            .await,
        system
            .post(journey.catalog("/articles"), Some(alice), &json!({"name": "Tea Pot", "description": "", "image": "", "price": 9.0, "stock": 1}))
            .await,
        system.get(journey.cart("/cart"), Some(alice)).await,
        system.get(journey.orders("/orders"), Some(alice)).await,
    ];
    for reply in &warm {
        assert_eq!(reply.status, 200, "{reply}");
    }
    system.auth.signout(alice).await;
    let refused_everywhere = eventually(EVICTION, || async {
        let answers = [
            system
                .get(format!("{}/users/current", system.auth.url), Some(alice))
                .await,
            system
                .post(
                    format!("{}/images/create", system.image.url),
                    Some(alice),
                    &json!({"image": jpeg_data_url()}),
                )
                .await,
            system
                .post(journey.catalog("/articles"), Some(alice), &json!({}))
                .await,
            system.get(journey.cart("/cart"), Some(alice)).await,
            system.get(journey.orders("/orders"), Some(alice)).await,
        ];
        answers.iter().all(|reply| reply.status == 401)
    })
    .await;
    assert!(
        refused_everywhere,
        "a service still accepts the signed-out token"
    );
}

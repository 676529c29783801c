//! Two instances of every service on one store and one broker, raced on the same articles, carts
//! and orders: the stock is exact, each cart makes one order, and duplicates change nothing,
//! whichever instance takes a request or a message.

use std::time::Duration;

use e2e::cluster::{Cluster, INSTANCES};
use futures_util::future::join_all;
use serde_json::{Value, json};
use testkit::{Reply, eventually};
use testkit_auth::PASSWORD;

/// A bound on hanging for the asynchronous flow of a few dozen orders, not a speed.
const FLOW: Duration = Duration::from_secs(120);
/// How soon another catalog instance shows a write (the change fanout); the safety-net reload is
/// minutes away.
const PROPAGATION: Duration = Duration::from_secs(5);

/// A shopper: a token, and the instance of cart and orders it talks to.
struct Shopper {
    token: String,
    instance: usize,
}

/// The `_id` of an article or a cart a successful answer returns.
fn underscore_id(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{reply}");
    let id = reply.json()["_id"].as_str().map(str::to_owned);
    id.unwrap_or_else(|| panic!("an _id: {reply}"))
}

async fn signup(cluster: &Cluster, login: &str) -> String {
    let body = json!({"name": "Shopper", "login": login, "password": PASSWORD});
    let reply = cluster
        .post(format!("{}/users/signup", cluster.front.auth), None, &body)
        .await;
    assert_eq!(reply.status, 200, "{reply}");
    reply.json()["token"].as_str().expect("a token").to_owned()
}

async fn admin(cluster: &Cluster, login: &str) -> String {
    signup(cluster, login).await;
    cluster.auth[0].make_admin(login).await;
    let body = json!({"login": login, "password": PASSWORD});
    let reply = cluster
        .post(format!("{}/users/signin", cluster.front.auth), None, &body)
        .await;
    reply.json()["token"].as_str().expect("a token").to_owned()
}

async fn create_article(cluster: &Cluster, admin: &str, stock: i64) -> String {
    let body = json!({"name": "Copper kettle", "description": "", "image": "",
                      "price": 20.0, "stock": stock});
    let reply = cluster
        .post(
            format!("{}/articles", cluster.front.catalog),
            Some(admin),
            &body,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply}");
    underscore_id(&reply)
}

async fn shoppers(cluster: &Cluster, prefix: &str, count: usize) -> Vec<Shopper> {
    let logins: Vec<String> = (0..count).map(|i| format!("{prefix}_{i:02}")).collect();
    let tokens = join_all(logins.iter().map(|login| signup(cluster, login))).await;
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| Shopper {
            token,
            instance: i % INSTANCES,
        })
        .collect()
}

/// Puts `quantity` of `article` in the shopper's cart on one cart instance and checks out on the
/// other; returns the closed cart's id.
async fn buy(cluster: &Cluster, shopper: &Shopper, article: &str, quantity: i64) -> String {
    let line = json!({"articleId": article, "quantity": quantity});
    let cart = &cluster.cart[shopper.instance].url;
    let added = cluster
        .post(format!("{cart}/cart/article"), Some(&shopper.token), &line)
        .await;
    assert_eq!(added.status, 200, "{added}");
    let other = &cluster.cart[(shopper.instance + 1) % INSTANCES].url;
    let closed = cluster
        .post(
            format!("{other}/cart/checkout"),
            Some(&shopper.token),
            &json!({}),
        )
        .await;
    assert_eq!(closed.status, 200, "{closed}");
    underscore_id(&closed)
}

/// The shopper's orders as `GET /orders` on their orders instance lists them.
async fn orders_of(cluster: &Cluster, shopper: &Shopper) -> Vec<Value> {
    let orders = &cluster.orders[shopper.instance].url;
    let reply = cluster
        .get(format!("{orders}/orders"), Some(&shopper.token))
        .await;
    assert_eq!(reply.status, 200, "{reply}");
    reply.json().as_array().expect("an array").clone()
}

/// Waits until the shopper's order of cart `cart_id` has left PLACED; returns its status.
async fn decided(cluster: &Cluster, shopper: &Shopper, cart_id: &str) -> String {
    let status = || async {
        orders_of(cluster, shopper)
            .await
            .iter()
            .find(|order| order["cartId"] == cart_id)
            .map(|order| order["status"].as_str().unwrap_or_default().to_owned())
    };
    let left_placed = eventually(FLOW, || async {
        status().await.is_some_and(|status| status != "PLACED")
    })
    .await;
    assert!(left_placed, "the order of cart {cart_id} never left PLACED");
    status().await.expect("an order")
}

/// Waits until the order of each shopper's cart has left PLACED; their statuses, in order.
async fn all_decided(cluster: &Cluster, shoppers: &[Shopper], carts: &[String]) -> Vec<String> {
    let orders = shoppers.iter().zip(carts);
    join_all(orders.map(|(shopper, cart)| decided(cluster, shopper, cart))).await
}

/// Waits until every catalog instance shows `stock` for the article.
async fn assert_stock_everywhere(cluster: &Cluster, article: &str, stock: i64) {
    for catalog in &cluster.catalog {
        let url = format!("{}/articles/{article}", catalog.url);
        let shown = eventually(PROPAGATION, || async {
            cluster.get(url.clone(), None).await.json()["stock"] == stock
        })
        .await;
        let reply = cluster.get(url, None).await;
        assert!(shown, "{} shows {reply}, not stock {stock}", catalog.url);
    }
}

#[tokio::test]
async fn sixteen_orders_of_five_against_forty_in_stock_sell_forty_across_two_instances() {
    let cluster = Cluster::start().await;
    let admin = admin(&cluster, "admin_sixteen").await;
    let kettle = create_article(&cluster, &admin, 40).await;
    let shoppers = shoppers(&cluster, "sixteen", 16).await;

    let carts = join_all(
        shoppers
            .iter()
            .map(|shopper| buy(&cluster, shopper, &kettle, 5)),
    )
    .await;
    let statuses = all_decided(&cluster, &shoppers, &carts).await;

    let validated = statuses.iter().filter(|s| *s == "VALIDATED").count();
    let invalid = statuses.iter().filter(|s| *s == "INVALID").count();
    assert_eq!((validated, invalid), (8, 8), "{statuses:?}");
    assert_stock_everywhere(&cluster, &kettle, 0).await;
    for shopper in &shoppers {
        assert_eq!(orders_of(&cluster, shopper).await.len(), 1);
    }
}

#[tokio::test]
async fn a_purchase_through_the_balancer_reaches_validated_and_shows_everywhere() {
    let cluster = Cluster::start().await;
    let admin = admin(&cluster, "admin_front").await;
    let kettle = create_article(&cluster, &admin, 7).await;
    let token = signup(&cluster, "front_shopper").await;
    let front = &cluster.front;

    let line = json!({"articleId": kettle, "quantity": 3});
    let added = cluster
        .post(format!("{}/cart/article", front.cart), Some(&token), &line)
        .await;
    assert_eq!(added.status, 200, "{added}");
    let closed = cluster
        .post(
            format!("{}/cart/checkout", front.cart),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(closed.status, 200, "{closed}");
    let cart_id = underscore_id(&closed);
    let validated = eventually(FLOW, || async {
        let orders = cluster
            .get(format!("{}/orders", front.orders), Some(&token))
            .await
            .json();
        orders[0]["cartId"] == cart_id.as_str() && orders[0]["status"] == "VALIDATED"
    })
    .await;
    assert!(validated, "the order never became VALIDATED");
    assert_stock_everywhere(&cluster, &kettle, 4).await;
}

#[tokio::test]
async fn repeated_order_placed_and_place_order_on_both_instances_change_nothing() {
    let cluster = Cluster::start().await;
    let admin = admin(&cluster, "admin_repeat").await;
    let kettle = create_article(&cluster, &admin, 10).await;
    let shopper = &shoppers(&cluster, "repeat", 1).await[0];
    let cart_id = buy(&cluster, shopper, &kettle, 3).await;
    assert_eq!(decided(&cluster, shopper, &cart_id).await, "VALIDATED");
    assert_stock_everywhere(&cluster, &kettle, 7).await;
    let order = orders_of(&cluster, shopper).await[0].clone();
    let order_id = order["id"].as_str().expect("an order id");
    let user_id = cluster.auth[0].user_id(&shopper.token).await;
    let events_before = event_count(&cluster, order_id).await;

    // The broker redelivers, and orders re-drives, what both instances of each consumer take.
    let articles = json!([{"articleId": kettle, "quantity": 3}]);
    let order_placed = json!({"type": "order_placed", "correlation_id": "repeat",
        "exchange": "orders", "routing_key": "article-data",
        "message": {"orderId": order_id, "cartId": cart_id, "userId": user_id,
                    "articles": articles}});
    let place_order = json!({"type": "place_order", "correlation_id": "repeat",
        "exchange": "", "routing_key": "",
        "message": {"cartId": cart_id, "userId": user_id, "articles": articles}});
    for _ in 0..3 * INSTANCES {
        cluster
            .vhost
            .publish("orders", "sell_flow", "order_placed", &order_placed)
            .await;
        cluster
            .vhost
            .publish("cart", "orders", "place_order", &place_order)
            .await;
    }
    let drained = eventually(FLOW, || async {
        let mut queued = 0;
        for queue in [
            "catalog.order_placed",
            "orders.place_order",
            "orders.article-data",
        ] {
            queued += cluster.vhost.queued(queue).await;
        }
        queued == 0
    })
    .await;
    assert!(drained, "the repeated messages were never consumed");
    // The broker's statistics lag by up to 500 ms; the last replies may still be in flight.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_stock_everywhere(&cluster, &kettle, 7).await;
    let orders = orders_of(&cluster, shopper).await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["status"], "VALIDATED");
    assert_eq!(event_count(&cluster, order_id).await, events_before);
}

/// How many events the order's stream holds.
async fn event_count(cluster: &Cluster, order_id: &str) -> u64 {
    cluster
        .orders_db
        .collection::<mongodb::bson::Document>("events")
        .count_documents(mongodb::bson::doc! {"orderId": order_id})
        .await
        .expect("MongoDB answers")
}

#[tokio::test]
async fn admin_stock_edits_during_checkouts_never_overwrite_a_reservation() {
    let cluster = Cluster::start().await;
    let admin = admin(&cluster, "admin_edits").await;
    let kettle = create_article(&cluster, &admin, 30).await;
    let shoppers = shoppers(&cluster, "edits", 8).await;

    let checkouts = join_all(
        shoppers
            .iter()
            .map(|shopper| buy(&cluster, shopper, &kettle, 3)),
    );
    let restocks = async {
        let mut conflicts = 0;
        for edit in 0..5 {
            conflicts += restock(&cluster, &admin, &kettle, 10, edit % INSTANCES).await;
        }
        conflicts
    };
    let (carts, conflicts) = tokio::join!(checkouts, restocks);
    let statuses = all_decided(&cluster, &shoppers, &carts).await;

    // 30 units and five restocks of 10: every order of 3 fits, and the stock keeps each edit.
    assert!(statuses.iter().all(|s| s == "VALIDATED"), "{statuses:?}");
    assert_stock_everywhere(&cluster, &kettle, 30 + 5 * 10 - 8 * 3).await;
    println!("{conflicts} restocks were refused with 409 and retried on a fresh read");
}

/// Adds `units` to the article's stock through catalog instance `instance` the way an admin's
/// form does: read the article, send it back with the new stock and the `stockVersion` it read,
/// and read again when another movement came in between (409). Returns how many 409s it took.
async fn restock(
    cluster: &Cluster,
    admin: &str,
    article: &str,
    units: i64,
    instance: usize,
) -> u32 {
    let url = format!("{}/articles/{article}", cluster.catalog[instance].url);
    let mut conflicts = 0;
    loop {
        let mut read = cluster.get(url.clone(), None).await.json();
        let stock = read["stock"].as_i64().expect("a stock");
        read["stock"] = json!(stock + units);
        let edited = json!({"name": read["name"], "description": read["description"],
            "image": read["image"], "price": read["price"], "stock": read["stock"],
            "stockVersion": read["stockVersion"]});
        let reply = cluster.post(url.clone(), Some(admin), &edited).await;
        match reply.status.as_u16() {
            200 => return conflicts,
            409 => conflicts += 1,
            _ => panic!("a restock answered {reply}"),
        }
        assert!(conflicts < 100, "a restock never got through");
    }
}

#[tokio::test]
async fn a_cart_checked_out_on_both_instances_at_once_makes_one_order_and_loses_no_line() {
    let cluster = Cluster::start().await;
    let admin = admin(&cluster, "admin_double").await;
    let kettle = create_article(&cluster, &admin, 1000).await;
    let spoon = create_article(&cluster, &admin, 1000).await;
    let shoppers = shoppers(&cluster, "double", 6).await;

    join_all(shoppers.iter().map(|shopper| async {
        let token = Some(shopper.token.as_str());
        let first = &cluster.cart[0].url;
        let line = json!({"articleId": kettle, "quantity": 1});
        let added = cluster
            .post(format!("{first}/cart/article"), token, &line)
            .await;
        assert_eq!(added.status, 200, "{added}");
        // A double click that the balancer spreads over both instances, while another tab adds
        // a spoon.
        let nothing = json!({});
        let checkouts = cluster
            .cart
            .iter()
            .map(|cart| cluster.post(format!("{}/cart/checkout", cart.url), token, &nothing));
        let spoon_line = json!({"articleId": spoon, "quantity": 1});
        let second = &cluster.cart[1].url;
        let add_spoon = cluster.post(format!("{second}/cart/article"), token, &spoon_line);
        let (closed, spoon_added) = tokio::join!(join_all(checkouts), add_spoon);
        assert_eq!(spoon_added.status, 200, "{spoon_added}");
        let closed_ids: Vec<String> = closed
            .iter()
            .filter(|reply| reply.status == 200)
            .map(underscore_id)
            .collect();
        assert!(!closed_ids.is_empty(), "no checkout succeeded: {closed:?}");
        assert!(
            closed_ids.iter().all(|id| *id == closed_ids[0]),
            "{closed_ids:?}"
        );
        let cart_id = &closed_ids[0];
        assert_eq!(decided(&cluster, shopper, cart_id).await, "VALIDATED");

        // The spoon is in the order or in the shopper's next cart, never lost.
        let orders = orders_of(&cluster, shopper).await;
        assert_eq!(orders.len(), 1, "{orders:?}");
        let order_id = orders[0]["id"].as_str().expect("an order id");
        let orders_url = &cluster.orders[shopper.instance].url;
        let order = cluster
            .get(format!("{orders_url}/orders/{order_id}"), token)
            .await
            .json();
        let in_order = order["articles"]
            .as_array()
            .expect("lines")
            .iter()
            .any(|line| line["articleId"] == spoon.as_str());
        let next = cluster.get(format!("{first}/cart"), token).await.json();
        let in_next_cart = next["articles"]
            .as_array()
            .expect("lines")
            .iter()
            .any(|line| line["articleId"] == spoon.as_str());
        assert!(
            in_order != in_next_cart,
            "spoon in order: {order}, in next cart: {next}"
        );
    }))
    .await;
}

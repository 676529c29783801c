//! `GET /articles/search/{text}` (CONTRACT section 6): enabled articles whose name or description
//! contains the text as literal text, ignoring case and accents, sorted by name; any input is
//! answered or refused cleanly. Every case runs on the in-memory snapshot and on MongoDB.

mod support;

use serde_json::json;
use support::{TestCatalog, both_ways};

async fn names(app: &TestCatalog, path: &str) -> Vec<String> {
    let reply = app.get(path).await;
    assert_eq!(reply.status, 200, "{reply}");
    reply
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("an array: {reply}"))
        .iter()
        .map(|article| article["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_matches_name_or_description_ignoring_case_sorted_by_name() {
    for app in both_ways().await {
        app.create("Red LAMP", "", 1.0, 1).await;
        app.create("Chair", "goes well with a lamp", 1.0, 1).await;
        app.create("Table", "oak", 1.0, 1).await;
        app.create("ample lampshade", "", 1.0, 1).await;

        assert_eq!(
            names(&app, "/articles/search/LaMp").await,
            ["ample lampshade", "Chair", "Red LAMP"]
        );
        let found = app.get("/articles/search/oak").await;
        assert_eq!(found.json()[0]["description"], "oak", "{found}");
    }
}

#[tokio::test]
async fn search_ignores_accents_on_both_sides() {
    for app in both_ways().await {
        app.create("Crème brûlée", "", 1.0, 1).await;
        app.create("Creme anglaise", "", 1.0, 1).await;

        assert_eq!(
            names(&app, "/articles/search/creme").await,
            ["Creme anglaise", "Crème brûlée"]
        );
        assert_eq!(
            names(&app, "/articles/search/CR%C3%88ME%20BR%C3%9BL%C3%89E").await,
            ["Crème brûlée"]
        );
    }
}

#[tokio::test]
async fn regex_metacharacters_are_matched_literally() {
    for app in both_ways().await {
        app.create("Cable (2 m) [USB-C]", "", 1.0, 1).await;
        app.create("Cable 2 m USB C", "", 1.0, 1).await;
        app.create("Price $5 ^ or * more? a|b \\d", "", 1.0, 1)
            .await;

        assert_eq!(
            names(&app, "/articles/search/(2%20m)").await,
            ["Cable (2 m) [USB-C]"]
        );
        assert_eq!(
            names(&app, "/articles/search/%5BUSB-C%5D").await,
            ["Cable (2 m) [USB-C]"]
        );
        for text in [".*", "%5E", "%24", "a%7Cb", "%5Cd", "*%20more%3F"] {
            let found = names(&app, &format!("/articles/search/{text}")).await;
            let expected: &[&str] = if text == ".*" {
                &[]
            } else {
                &["Price $5 ^ or * more? a|b \\d"]
            };
            assert_eq!(found, expected, "{text}");
        }
    }
}

#[tokio::test]
async fn disabled_articles_are_not_found() {
    for app in both_ways().await {
        let admin = app.admin().await;
        let id = app.article("Old lamp", 1).await;
        app.article("New lamp", 1).await;

        app.delete(&format!("/articles/{id}"), Some(&admin)).await;

        assert_eq!(names(&app, "/articles/search/lamp").await, ["New lamp"]);
    }
}

#[tokio::test]
async fn no_match_is_an_empty_array() {
    for app in both_ways().await {
        app.article("Lamp", 1).await;

        app.get("/articles/search/sofa")
            .await
            .assert_is(200, json!([]));
    }
}

#[tokio::test]
async fn search_results_are_paginated_like_listings() {
    for app in both_ways().await {
        for name in ["lamp c", "lamp a", "lamp b"] {
            app.article(name, 1).await;
        }

        assert_eq!(
            names(&app, "/articles/search/lamp?skip=1&limit=1").await,
            ["lamp b"]
        );
        app.get("/articles/search/lamp?limit=500")
            .await
            .assert_field_errors(&["limit"]);
    }
}

#[tokio::test]
async fn a_blank_an_overlong_or_a_malformed_text_is_400_with_path_text() {
    for app in both_ways().await {
        app.article("Lamp", 1).await;

        for text in [
            "%20%20",
            &"x".repeat(201),
            &"a".repeat(10 * 1024),
            "%FF",
            "%G1",
        ] {
            app.get(&format!("/articles/search/{text}"))
                .await
                .assert_field_errors(&["text"]);
        }
        assert_eq!(
            names(&app, &format!("/articles/search/{}", "é".repeat(200)))
                .await
                .len(),
            0
        );
    }
}

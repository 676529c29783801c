//! Odd path segments (review L1): an image id that is not a UUID (a NUL, bytes that are not UTF-8,
//! a very long one) is 404 on both downloads before Redis is asked, and an odd `Size` is 400.

mod support;

use serde_json::json;
use support::spawn_image;

#[tokio::test]
async fn odd_image_ids_are_not_found() {
    let app = spawn_image().await;
    for id in testkit::odd_path_segments() {
        for path in [format!("/images/{id}"), format!("/images/{id}/jpeg")] {
            app.get(&path, &[])
                .await
                .assert_is(404, json!({"error": "Not found"}));
        }
    }
}

#[tokio::test]
async fn an_odd_size_is_refused_with_its_path() {
    let app = spawn_image().await;
    let id = uuid::Uuid::new_v4();
    for size in ["%00", "320%00", "%FF", "-1", &"9".repeat(5000)] {
        let reply = app
            .get(&format!("/images/{id}/jpeg?Size={size}"), &[])
            .await;
        reply.assert_field_errors(&["Size"]);
    }
}

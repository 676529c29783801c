//! Oversized bearer tokens (review M4) against the real cart service: each is refused 401 without
//! a call to auth and leaves nothing in the token cache, so a flood of distinct ones does not grow
//! the process. The cart service runs in the test process, whose memory is read before and after:
//! the only test of this binary, so that no other test's memory comes and goes meanwhile.

mod support;

use support::spawn_cart;

/// Tokens sent: at 256 KiB each, the 51 MiB that the old cache kept.
const TOKENS: usize = 200;
const TOKEN_BYTES: usize = 256 * 1024;
/// The process may grow by less than this: the refusals keep nothing, and what the requests
/// allocate on their way is freed (allocators keep some of it, hence the margin).
const GROWTH_BOUND_MB: u64 = 20;

/// A token of `TOKEN_BYTES` base64url-like characters, different for every `seed`.
fn oversized_token(seed: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = (seed as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..TOKEN_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % 64) as usize] as char
        })
        .collect()
}

/// This process's resident memory, in MiB.
fn resident_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .expect("VmRSS in kB");
    kb / 1024
}

#[tokio::test]
async fn distinct_oversized_tokens_are_refused_and_leave_nothing_behind() {
    let app = spawn_cart().await;
    // One first, so that connection buffers and allocator pools exist before the measure.
    let first = app.get(Some(&oversized_token(TOKENS)), "/cart").await;
    first.assert_is(401, serde_json::json!({"error": "Unauthorized"}));
    let before = resident_mb();

    let app = &app;
    for batch in (0..TOKENS).collect::<Vec<_>>().chunks(4) {
        let requests = batch
            .iter()
            .map(|&seed| async move { app.get(Some(&oversized_token(seed)), "/cart").await });
        for reply in futures_util::future::join_all(requests).await {
            reply.assert_is(401, serde_json::json!({"error": "Unauthorized"}));
        }
    }
    let after = resident_mb();
    eprintln!("RSS before {before} MiB after {after} MiB");

    assert!(
        after.saturating_sub(before) < GROWTH_BOUND_MB,
        "the process grew from {before} MiB to {after} MiB"
    );
    assert_eq!(app.running.cached_tokens().await, 0);

    // hyper reads a request head of up to about 408 KiB; past it, it answers 431 itself, with
    // an empty body, before any handler.
    let past_the_head_limit = oversized_token(0).repeat(2);
    let reply = app.get(Some(&past_the_head_limit), "/cart").await;
    assert_eq!(reply.status, 431, "{reply}");
}

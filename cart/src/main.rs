use common::config::or_exit;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    or_exit(common::telemetry::init());
    let config = or_exit(cart::Config::from_env());
    let shutdown = CancellationToken::new();
    let running = cart::run(config, shutdown.clone())
        .await
        .unwrap_or_else(|error| {
            eprintln!("cart cannot start: {error}");
            std::process::exit(1)
        });
    common::server::shutdown_signal().await;
    shutdown.cancel();
    let _ = running.server.await;
}

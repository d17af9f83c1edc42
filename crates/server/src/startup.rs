//! Building the application from configuration: state, router, listener. `main`, the tests and
//! the benchmarks all go through `Application::build`, so they run the same server.

use crate::state::{AppState, Inner};
use crate::{api, middleware, telemetry, web};
use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use etx_auth::{HashParams, PasswordHasher, TokenKeys};
use etx_core::config::Settings;
use etx_core::config::{Config, StorageBackend};
use etx_core::market::PriceFeed;
use etx_core::ratelimit::{RateLimiter, RedisLimiter};
use etx_db::Db;
use etx_storage::{ObjectStorage, StorageConfig};
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub struct Application {
    listener: TcpListener,
    router: Router,
    pub state: AppState,
}

pub async fn open_db(config: &Config) -> anyhow::Result<Db> {
    if config.database_kind() == "sqlite" {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    }
    let db = Db::connect_with(
        &config.database_url(),
        config.database.max_connections,
        Duration::from_millis(config.database.acquire_timeout_ms.max(100)),
    )
    .await?;
    db.migrate().await?;
    Ok(db)
}

/// The key of the audit chain, derived from the server secret. Only what chains or verifies
/// the trail needs it (the server, `etx audit verify`), so other commands never touch the secret.
pub fn audit_key(secret: &[u8]) -> [u8; 32] {
    etx_auth::totp::derive_key(secret, b"etx audit chain v1")
}

pub fn hasher(config: &Config) -> anyhow::Result<PasswordHasher> {
    let a = &config.auth;
    PasswordHasher::new(
        HashParams {
            memory_kib: a.argon2_memory_kib,
            iterations: a.argon2_iterations,
            parallelism: a.argon2_parallelism,
        },
        a.hash_concurrency,
    )
}

fn storage_config(config: &Config) -> StorageConfig {
    match config.storage.backend {
        StorageBackend::S3 => StorageConfig::S3 {
            bucket: config.storage.s3_bucket.clone().unwrap_or_default(),
            endpoint: config.storage.s3_endpoint.clone(),
            region: config.storage.s3_region.clone(),
            access_key_id: config.storage.s3_access_key_id.clone(),
            secret_access_key: config.storage.s3_secret_access_key.clone(),
        },
        StorageBackend::Memory => StorageConfig::Memory,
        StorageBackend::Local => StorageConfig::Local {
            root: config.data_dir.join("objects"),
        },
    }
}

pub async fn build_state(config: Config, settings: Settings) -> anyhow::Result<AppState> {
    // With Redis configured other instances may revoke a session: their clears reach this
    // cache through Redis (`cache_sync`), which keeps it off while it cannot hear them.
    let cache_ttl = Duration::from_secs(10);
    let secret = config.load_or_create_secret()?;
    let db = open_db(&config)
        .await?
        .with_session_cache(cache_ttl)
        .with_audit_key(audit_key(&secret));
    let tokens = TokenKeys::new(&secret, "etx", "etx-api", config.auth.access_ttl_secs);
    let storage =
        ObjectStorage::open(&storage_config(&config)).context("opening object storage")?;
    let limiter = match &config.redis_url {
        Some(url) => RateLimiter::Redis(
            RedisLimiter::connect(url)
                .await
                .context("connecting to Redis")?,
        ),
        None => RateLimiter::local(),
    };
    let observe = crate::observe::Observe::start(
        config.telemetry.otlp_endpoint.as_deref(),
        config.telemetry.sentry_dsn.as_deref(),
        if config.is_dev() { "dev" } else { "production" },
    )?;
    let cache_sync = match &config.redis_url {
        Some(url) => Some(
            crate::cache_sync::CacheSync::start(&db, url, cache_ttl)
                .await
                .context("connecting the session cache to Redis")?,
        ),
        None => None,
    };
    let hasher = hasher(&config)?;
    bootstrap_admin(&config, &db, &hasher).await?;
    let Settings {
        assets,
        transfer_limits,
        rules,
    } = settings;
    let transfers = etx_core::wallet::group::GroupCommit::start(
        db.clone(),
        config.transfers.commit_lanes,
        config.transfers.max_group,
        transfer_limits.daily_cap_cents,
        etx_core::wallet::group::Velocity {
            max_operations: rules.aml_max_operations,
            window_micros: rules.aml_window_micros,
        },
    );
    let payments = etx_core::providers::Payments::new(&config.deposits, &secret)?;
    let mailer = etx_core::mail::Mailer::from_config(
        &config.email,
        &config.data_dir,
        std::sync::Arc::new(crate::letters::MailTemplates),
    )?;
    let secret_box = etx_auth::totp::SecretBox::new(&secret);
    let market = std::sync::Arc::new(etx_core::market::Market::new(
        &config.market,
        &config.assets,
    )?);
    let realtime = crate::realtime::Realtime::new(config.redis_url.as_deref())
        .await
        .context("starting Socket.IO")?;
    let fanout = crate::fanout::Fanout::new(market.subscribe());
    let core = etx_core::Core::new(etx_core::Parts {
        market,
        events: std::sync::Arc::new(realtime.clone()),
        mailer,
        secret_box,
        assets,
        transfer_limits,
        transfers,
        rules,
        payments,
        config,
        db,
        hasher,
        tokens,
        storage,
        limiter,
        password_checks: etx_core::session::InFlight::default(),
        workers: etx_core::jobs::Workers::default(),
        book: Default::default(),
        orders: Default::default(),
        alerts: Default::default(),
        xp: Default::default(),
        pairs: Default::default(),
        stats: Default::default(),
    });
    let state = AppState::new(Inner {
        core,
        realtime,
        fanout,
        metrics: telemetry::metrics_handle(),
        started: Instant::now(),
        draining: Default::default(),
        cache_sync,
        observe,
    });
    crate::socketio::register(&state).await?;
    Ok(state)
}

/// With `ETX_BOOTSTRAP_ADMIN_*` set and no admin yet, creates the first admin.
async fn bootstrap_admin(config: &Config, db: &Db, hasher: &PasswordHasher) -> anyhow::Result<()> {
    let b = &config.bootstrap;
    let (Some(email), Some(password)) = (&b.admin_email, &b.admin_password) else {
        return Ok(());
    };
    if db.count_active_admins().await? > 0 {
        return Ok(());
    }
    let username = b.admin_username.clone().unwrap_or_else(|| "admin".into());
    let user = etx_core::accounts::create_admin(db, hasher, email, &username, password)
        .await
        .context("ETX_BOOTSTRAP_ADMIN_*")?;
    tracing::info!(user_id = %user.id, "bootstrap admin created");
    Ok(())
}

pub fn build_router(state: AppState) -> Router {
    let (api_router, openapi) = api::router(&state);
    let cfg = &state.config;
    let origins: Vec<HeaderValue> = cfg
        .http
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ])
        .allow_headers([
            axum::http::header::CONTENT_TYPE,
            axum::http::header::AUTHORIZATION,
            HeaderName::from_static("x-csrf-token"),
            HeaderName::from_static("idempotency-key"),
        ])
        .max_age(Duration::from_secs(600));
    let router = Router::new()
        .merge(api_router)
        .merge(web::router(&state))
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
        .fallback(web::not_found)
        .layer(DefaultBodyLimit::max(cfg.http.json_body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::client_context,
        ))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_secs(cfg.http.request_timeout_secs),
            middleware::request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_context,
        ))
        .with_state(state.clone());
    // Outermost: Socket.IO long-polls must not hit the request timeout.
    state.realtime.apply_layer(router)
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let settings = Settings::from_config(&config)?;
        Application::build_with(config, settings).await
    }

    /// Starts with settings already checked and parsed (`Config::load`).
    pub async fn build_with(mut config: Config, settings: Settings) -> anyhow::Result<Application> {
        let bind = config.bind;
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        if config.public_url.is_none() {
            // Links in mail need an address; without a configured one (dev), the one we listen on.
            let addr = listener.local_addr()?;
            config.public_url = Some(if addr.ip().is_unspecified() {
                format!("http://localhost:{}", addr.port())
            } else {
                format!("http://{addr}")
            });
        }
        let state = build_state(config, settings).await?;
        let router = build_router(state.clone());
        Ok(Application {
            listener,
            router,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let upkeep = etx_core::upkeep::spawn_upkeep(self.state.core.clone());
        let mail = etx_core::mail::spawn_sender(self.state.core.clone());
        let workers = etx_core::jobs::spawn_workers(self.state.core.clone());
        let matcher = etx_core::trading::spawn_matcher(self.state.core.clone());
        let evaluator = etx_core::alerts::spawn_evaluator(self.state.core.clone());
        let awarder = etx_core::xp::spawn_awarder(self.state.core.clone());
        let m = &self.state.config.market;
        let feed = match m.provider {
            PriceFeed::Coinbase => tokio::spawn(etx_core::market::coinbase::run(
                self.state.market.clone(),
                m.coinbase_url.clone(),
            )),
            PriceFeed::Simulated => {
                if m.backfill {
                    let core = self.state.core.clone();
                    tokio::spawn(async move {
                        match etx_core::market::backfill_simulated(&core).await {
                            Ok(n) => {
                                tracing::info!(candles = n, "simulated price history filled in")
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "filling in simulated price history failed")
                            }
                        }
                    });
                }
                tokio::spawn(etx_core::market::run_simulated(
                    self.state.market.clone(),
                    Duration::from_millis(m.tick_ms),
                ))
            }
        };
        let recorder =
            etx_core::market::spawn_recorder(self.state.core.clone(), Duration::from_secs(2));
        let forwarder = crate::socketio::spawn_price_forwarder(self.state.clone());
        let http = &self.state.config.http;
        let drain_delay = Duration::from_millis(http.drain_delay_ms);
        let deadline = Duration::from_secs(http.shutdown_deadline_secs);
        let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
        let state = self.state.clone();
        // Readiness turns 503 and the listener closes at once (a balancer's new connections
        // are refused, which it retries elsewhere, POSTs included); connections already open
        // keep being served, each answer with `Connection: close`, for the drain delay, long
        // enough for the balancer to let go of its idle ones. Then the requests in flight
        // (with the group commits they wait on) finish.
        let drained = async move {
            shutdown.await;
            state
                .draining
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = signalled.send(true);
            tracing::info!(
                drain_delay_ms = drain_delay.as_millis() as u64,
                "shutting down: not ready, draining"
            );
            tokio::time::sleep(drain_delay).await;
        };
        // Live sockets never end by themselves, and graceful shutdown waits for every
        // connection: right after the listener closes they are told to reconnect, which takes
        // them through the balancer to an instance that stays.
        let state = self.state.clone();
        let mut signal = on_signal.clone();
        let closer = tokio::spawn(async move {
            if signal.wait_for(|s| *s).await.is_ok() {
                tokio::time::sleep(drain_delay + Duration::from_millis(20)).await;
                state.fanout.close_all();
                state.realtime.close().await;
            }
        });
        let addr = self.local_addr();
        let listener = ClosingListener {
            inner: Some(self.listener),
            addr,
            close: on_signal.clone(),
        };
        let served = axum::serve(
            axum::serve::ListenerExt::tap_io(listener, tune_connection),
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(drained)
        .into_future();
        let cut_off = async move {
            if on_signal.wait_for(|s| *s).await.is_err() {
                return std::future::pending().await;
            }
            tokio::time::sleep(drain_delay + deadline).await;
        };
        let served = tokio::select! {
            r = served => r,
            () = cut_off => {
                tracing::warn!(
                    deadline_secs = deadline.as_secs(),
                    "shutdown deadline reached; connections still open are cut off"
                );
                Ok(())
            }
        };
        tracing::info!("stopped serving");
        closer.abort();
        // Experience points earned by the last requests are still queued in memory.
        self.state.xp.drained(Duration::from_secs(3)).await;
        upkeep.abort();
        mail.abort();
        workers.abort();
        matcher.abort();
        evaluator.abort();
        awarder.abort();
        feed.abort();
        recorder.abort();
        forwarder.abort();
        served?;
        Ok(())
    }
}

/// The server's listening socket, closed (not merely no longer accepted from) as soon as
/// shutdown is signalled: connections a balancer opens after that are refused outright rather
/// than left in the backlog to be reset with a request on them.
struct ClosingListener {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    close: tokio::sync::watch::Receiver<bool>,
}

impl axum::serve::Listener for ClosingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(inner) = self.inner.as_mut() else {
                return std::future::pending().await;
            };
            tokio::select! {
                conn = axum::serve::Listener::accept(inner) => return conn,
                _ = self.close.wait_for(|closing| *closing) => {
                    self.inner = None;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Small writes (WebSocket frames, API answers) go out at once instead of waiting for the
/// peer's delayed ACK, and at most 16 KiB of a connection's output waits unsent in the kernel:
/// without a bound the send buffer grows to 4 MiB for a client that stopped reading, so a
/// stalled price stream would hold hours of old prices instead of skipping to the newest.
fn tune_connection(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    notsent_lowat(tcp, 16 * 1024);
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn notsent_lowat(tcp: &tokio::net::TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain setsockopt on a descriptor the stream owns, with a correctly sized value.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn notsent_lowat(_tcp: &tokio::net::TcpStream, _bytes: i32) {}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

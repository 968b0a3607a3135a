//! The HTTP attestation service (`cachet serve`).
//!
//! Evidence in, signed attestation token out: `POST /v1/challenge` issues a
//! nonce, `POST /v1/attest` verifies evidence with `cachet-verify`, appraises
//! it with a Rego policy ([`appraisal::appraise`]; policies and reference
//! values managed under `/v1/admin/policies` and
//! `/v1/admin/reference-values`), and returns an EAR token signed with the
//! active key of the JWKS (`cachet-token`); everything is persisted in the
//! embedded store (`cachet-store`) with a hash-chained audit log.

#![deny(missing_docs)]

pub mod admin;
pub mod appraisal;
pub mod auth;
pub mod config;
pub mod console;
pub mod deployment;
pub mod endorse;
pub mod endorse_admin;
pub mod error;
pub mod freshness;
pub mod kbs;
pub mod keys;
pub mod limits;
pub mod maa;
pub mod metrics;
pub mod ops;
pub mod policies;
pub mod policy_signing;
pub mod refvals;
pub mod replay;
pub mod routes;
pub mod secrets;
pub mod secrets_client;
pub mod tracing_mw;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cachet_store::{SqliteStore, Store};
use cachet_token::{KeyCustody, RotationPolicy};
use cachet_verify::{AnchorKind, TrustAnchors};
use tokio::sync::Semaphore;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::{Config, ServeArgs};
use error::ApiError;
use keys::KeyService;
use metrics::Metrics;

/// The current time, Unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Signing keys.
    pub keys: Arc<KeyService>,
    /// Roots evidence must chain to.
    pub anchors: Arc<TrustAnchors>,
    /// Resolved configuration.
    pub config: Arc<Config>,
    /// Token issuer and discovery base URL.
    pub issuer: Arc<String>,
    /// Metrics.
    pub metrics: Metrics,
    /// Bounds concurrent verifications.
    pub verify_slots: Arc<Semaphore>,
    /// The key broker: owners' secrets and their release.
    pub broker: Arc<cachet_keybroker::KeyBroker>,
    /// Compiled appraisal policies and the live reference values.
    pub appraiser: Arc<appraisal::Appraiser>,
    /// Endorsements (certificate chains, CRLs, signed collateral) already
    /// verified, by content hash: repeated attestations from the same
    /// platform skip those signatures, never the evidence's own, and every
    /// validity window is re-checked at each request's instant.
    pub verify_cache: Arc<cachet_verify::cache::VerifyCache>,
    /// Certificates whose keys may sign appraisal policies; when any is
    /// configured, only signed policies are stored.
    pub policy_signers: Arc<policy_signing::PolicySigners>,
    /// The service's own endorsements (fetched from the configured sources,
    /// cached in the store); the attester's are only hints.
    pub endorser: Arc<cachet_endorse::Endorser>,
}

impl AppState {
    /// Re-read the stored reference values after a change (or at start) and
    /// give each tenant's view to the key broker's release policies.
    pub async fn reload_reference_values(&self) -> Result<(), ApiError> {
        let release = self.appraiser.reload_reference_values(self.store.as_ref()).await?;
        self.broker.set_reference_values((*release).clone());
        Ok(())
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Cachet attestation service", description = include_str!("api.md")),
    modifiers(&SecurityAddon),
    tags(
        (name = "attestation", description = "Challenges and attestation"),
        (name = "discovery", description = "Relying-party key discovery"),
        (name = "admin", description = "Administration (API key required)"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`cachet admin create-key`); the scope names the role required"))
                    .build(),
            ),
        );
    }
}

/// The application router and its OpenAPI document.
pub fn app(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let store = state.store.clone();
    let reader = admin::reader_routes().layer(from_fn_with_state(store.clone(), auth::require_reader));
    let admin = admin::admin_routes().layer(from_fn_with_state(store.clone(), auth::require_admin));
    let operator_reader = admin::operator_reader_routes()
        .routes(routes!(endorse_admin::forecast_endorsements))
        .layer(from_fn_with_state(store.clone(), auth::require_operator_reader));
    let operator_admin = admin::operator_admin_routes().layer(from_fn_with_state(store, auth::require_operator_admin));
    // The unauthenticated routes that write or verify: a budget per client address.
    let limiter = Arc::new(limits::ClientRateLimiter::new(&state.config));
    // The Trustee KBS protocol (kbs.rs), under the same budget.
    let kbs = kbs::routes().layer(from_fn_with_state(limiter.clone(), limits::rate_limit));
    let public = OpenApiRouter::new()
        .routes(routes!(routes::challenge))
        .routes(routes!(routes::attest))
        .routes(routes!(secrets::release))
        .layer(from_fn_with_state(limiter.clone(), limits::rate_limit));
    // The Azure Attestation (MAA) surface: same pipeline, same budget.
    let maa = maa::routes().layer(from_fn_with_state(limiter, limits::rate_limit));
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(public)
        .routes(routes!(routes::openid_configuration))
        .routes(routes!(routes::jwks))
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
        .merge(reader)
        .merge(admin)
        .merge(operator_reader)
        .merge(operator_admin)
        .split_for_parts();
    let doc = Arc::new(api.clone());
    let timeout = state.config.request_timeout;
    let body_limit = state.config.body_limit;
    let metrics = state.metrics.clone();
    let https = state.config.tls.is_some();
    // The operator console (`/console`): its own pages, the admin API's guards.
    let console = console::router(state.clone());
    let router = router
        .merge(console)
        .merge(kbs)
        .route("/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .merge(maa)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(timeout, timeout_layer))
        // Outermost: the request id, its span, the access log and the HTTP
        // metrics cover every response, timeouts and errors included. It
        // logs the route template, never the raw URI (a path can name a secret).
        .layer(from_fn_with_state(metrics, tracing_mw::trace_request));
    // Served over HTTPS: browsers and HTTP clients that honour HSTS never
    // fall back to plain HTTP for this host (a year, the usual minimum).
    let router = if https {
        router.layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        ))
    } else {
        router
    };
    (router, api)
}

/// Answer `503 timeout` when a request takes longer than the limit.
async fn timeout_layer(State(secs): State<u64>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(Duration::from_secs(secs), next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", format!("the request took longer than {secs} s")).into_response()
        }
    }
}

/// A running server.
pub struct Server {
    /// The bound address.
    pub addr: SocketAddr,
    /// Base URL (`http(s)://addr`).
    pub url: String,
    /// The token issuer.
    pub issuer: String,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stop accepting, finish in-flight requests (up to 10 s), and return.
    pub async fn shutdown(self) {
        self.background.abort();
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        let _ = self.task.await;
    }

    /// Wait until the server stops (after a signal).
    pub async fn wait(self) -> std::io::Result<()> {
        let r = self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.background.abort();
        r
    }

    /// Begin a graceful shutdown (e.g. on SIGTERM).
    pub fn handle(&self) -> axum_server::Handle {
        self.handle.clone()
    }
}

/// Open the configured store: `database_url` when set (`postgres://…` or
/// `postgresql://…`: PostgreSQL, shared by several replicas; `sqlite:PATH`),
/// else the data directory's embedded SQLite file (the default).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, String> {
    match &config.database_url {
        Some(url) => cachet_store::open_url(url).await.map_err(|e| e.to_string()),
        None => Ok(Arc::new(SqliteStore::open_dir(&config.data_dir).await.map_err(|e| e.to_string())?)),
    }
}

/// The key service for a configuration: software signing keys stored
/// sealed under the KEK (the key file's or the HSM's; never as plaintext in
/// the store, so a copy of the database cannot sign tokens), or keys in the
/// PKCS#11 HSM with `signing_custody = pkcs11` (so `cachet keys` and the
/// server use the same custody).
pub fn key_service(config: &Config, store: Arc<dyn Store>) -> KeyService {
    use cachet_keybroker::custody::{SealedCustody, SEALED_CUSTODY};
    let custody: Arc<dyn KeyCustody> = match config.signing_custody {
        config::SigningCustody::Local => match kek(config) {
            Ok(kek) => Arc::new(SealedCustody::new(kek)),
            Err(e) => Arc::new(UnavailableCustody(SEALED_CUSTODY, format!("key-encryption key: {e}"))),
        },
        config::SigningCustody::Pkcs11 => match hsm(config) {
            Ok(Some(h)) => Arc::new(cachet_keybroker::pkcs11::Pkcs11Custody::new(h)),
            Ok(None) => Arc::new(UnavailableCustody("pkcs11", "signing_custody = pkcs11 needs pkcs11_module".into())),
            Err(e) => Arc::new(UnavailableCustody("pkcs11", e)),
        },
    };
    key_service_with(config, store, custody)
}

/// A custody that cannot be opened (its HSM or KEK): every use fails with
/// the reason (rather than silently falling back to plaintext software keys).
struct UnavailableCustody(&'static str, String);

impl KeyCustody for UnavailableCustody {
    fn name(&self) -> &'static str {
        self.0
    }
    fn generate(&self, _: cachet_token::Algorithm, _: &str) -> Result<cachet_token::CustodyKey, cachet_token::TokenError> {
        Err(cachet_token::TokenError::Key(format!("key custody unavailable: {}", self.1)))
    }
    fn sign(&self, _: cachet_token::Algorithm, _: &[u8], _: &[u8]) -> Result<Vec<u8>, cachet_token::TokenError> {
        Err(cachet_token::TokenError::Sign(format!("key custody unavailable: {}", self.1)))
    }
    fn import_pkcs8(&self, _: cachet_token::Algorithm, _: &[u8], _: &str) -> Result<cachet_token::CustodyKey, cachet_token::TokenError> {
        Err(cachet_token::TokenError::Key(format!("key custody unavailable: {}", self.1)))
    }
    fn destroy(&self, _: &[u8]) -> Result<(), cachet_token::TokenError> {
        Err(cachet_token::TokenError::Key(format!("key custody unavailable: {}", self.1)))
    }
}

/// The key service with signing keys in `custody` (e.g. the HSM).
pub fn key_service_with(config: &Config, store: Arc<dyn Store>, custody: Arc<dyn KeyCustody>) -> KeyService {
    let policy = RotationPolicy { publish_lead: config.key_publish_lead, token_ttl: config.token_ttl, clock_skew: config.clock_skew };
    KeyService::new(store, custody, policy, config.token_alg)
}

/// Where the simulated TEE's root key lives.
pub fn simulated_tee_dir(config: &Config) -> PathBuf {
    config.data_dir.join("simulated-tee")
}

/// The PKCS#11 HSM of the configuration, opened once per process (a
/// module is initialised once; the KEK and the signing custody share it).
fn hsm(config: &Config) -> Result<Option<Arc<cachet_keybroker::pkcs11::Hsm>>, String> {
    use std::sync::{Mutex, OnceLock};
    type Opened = Vec<(PathBuf, String, Arc<cachet_keybroker::pkcs11::Hsm>)>;
    static OPENED: OnceLock<Mutex<Opened>> = OnceLock::new();
    let Some(p) = &config.pkcs11 else { return Ok(None) };
    let mut opened = OPENED.get_or_init(Default::default).lock().map_err(|_| "HSM registry lock poisoned".to_string())?;
    if let Some((_, _, h)) = opened.iter().find(|(m, t, _)| *m == p.module && *t == p.token) {
        return Ok(Some(h.clone()));
    }
    let h = cachet_keybroker::pkcs11::Hsm::open(&p.module, &p.token, &p.pin.0).map_err(|e| e.to_string())?;
    opened.push((p.module.clone(), p.token.clone(), h.clone()));
    Ok(Some(h))
}

/// The key-encryption key of a configuration: the HSM's, or the local key
/// file (created 0600 on first start). It seals secrets and software
/// token-signing keys.
pub fn kek(config: &Config) -> Result<Arc<dyn cachet_keybroker::KeyEncryptionKey>, String> {
    use cachet_keybroker::LocalFileKek;
    Ok(match (hsm(config)?, &config.pkcs11) {
        (Some(h), Some(p)) => {
            Arc::new(cachet_keybroker::pkcs11::Pkcs11Kek::open_or_generate(h, &p.kek_label).map_err(|e| format!("HSM KEK: {e}"))?)
        }
        _ => {
            if let Some(dir) = config.kek_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            Arc::new(LocalFileKek::open_or_create(&config.kek_file).map_err(|e| e.to_string())?)
        }
    })
}

/// The key broker of a configuration: its KEK ([`kek`]) over the service store.
pub fn key_broker(config: &Config, store: Arc<dyn Store>) -> Result<cachet_keybroker::KeyBroker, String> {
    let kek = kek(config)?;
    let secrets = Arc::new(secrets::StoreSecrets(store));
    // Release policies get their tenants' reference values from the store
    // (`AppState::reload_reference_values`); the file's sets are the operator's.
    Ok(cachet_keybroker::KeyBroker::new(kek, secrets, cachet_keybroker::BrokerConfig::default()))
}

/// The reference values of `--reference-values` (JSON or TOML), if configured.
pub fn reference_values_file(config: &Config) -> Result<Option<cachet_appraise::ReferenceValues>, String> {
    let Some(path) = &config.reference_values else { return Ok(None) };
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > 16 << 20 {
        return Err(format!("{}: reference values larger than 16 MiB", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let toml = path.extension().is_some_and(|e| e == "toml");
    cachet_appraise::ReferenceValues::parse(&text, toml).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// Open the store, make sure a signing key exists, bind, and serve.
pub async fn start(config: Config) -> Result<Server, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Named files first: a bad path must not leave a data directory behind.
    config.check_files()?;
    let store: Arc<dyn Store> = open_store(&config).await?;
    let broker = Arc::new(key_broker(&config, store.clone())?);
    deployment::check(&config, store.as_ref(), Some(broker.kek())).await?;
    let keys = Arc::new(key_service(&config, store.clone()));
    keys.seal_plaintext_keys("server", now()).await.map_err(|e| format!("sealing stored signing keys: {e}"))?;
    keys.ensure_signer("server", now()).await.map_err(|e| format!("signing key: {e}"))?;

    let mut anchors = TrustAnchors::pinned();
    if config.insecure_simulated_tee {
        let sim = cachet_attester::simulated::SimulatedTee::load_or_create(&simulated_tee_dir(&config)).map_err(|e| e.to_string())?;
        anchors.push(AnchorKind::SimulatedTee, sim.root_der().to_vec());
        eprintln!(
            "\n*** WARNING: INSECURE SIMULATED TEE ENABLED (--insecure-simulated-tee)\n\
             *** Evidence signed by the key in {} is accepted as `sim`.\n\
             *** Development only: anyone with that key can forge attestations.\n",
            simulated_tee_dir(&config).display()
        );
        tracing::warn!(
            dir = %simulated_tee_dir(&config).display(),
            "!!! INSECURE: --insecure-simulated-tee is on: evidence signed by the SIMULATED TEE root key in this directory is \
             accepted. Anyone who can read that file can forge attestations. Never use this in production. !!!"
        );
    }
    if config.allow_verification_time {
        // An attester choosing the verification instant can use evidence
        // whose certificates expired or were revoked since: say so loudly.
        eprintln!(
            "\n*** WARNING: --allow-verification-time is on: POST /v1/attest accepts `at`, so evidence is verified\n\
             *** as of an instant the caller chooses (expired or since-revoked certificates pass).\n\
             *** Tests and offline re-verification only.\n"
        );
        tracing::warn!(
            "!!! INSECURE: --allow-verification-time is on: attesters choose the verification instant (`at`), so evidence whose \
             certificates have expired is accepted. Never use this in production. !!!"
        );
    }

    if let Some(at) = config.fixed_verification_time {
        // Every request's evidence is judged as of one past instant: expired
        // or since-revoked endorsements pass. Tests with recorded evidence only.
        eprintln!(
            "\n*** WARNING: --fixed-verification-time is on (TESTS ONLY): every request's evidence is verified as of\n\
             *** {at} (Unix seconds), not now: expired or since-revoked certificates pass.\n"
        );
        tracing::warn!(
            fixed_verification_time = at,
            "!!! TESTS ONLY: --fixed-verification-time pins the verification instant of every request; expired or revoked \
             certificates are accepted. Never use this in production. !!!"
        );
    }

    let listener = std::net::TcpListener::bind(config.listen).map_err(|e| format!("listen on {}: {e}", config.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");
    let issuer = config.issuer.clone().unwrap_or_else(|| url.clone());
    if config.issuer.is_none() && addr.ip().is_unspecified() {
        tracing::warn!("listening on an unspecified address: set --issuer to the URL relying parties use");
    }

    let metrics = Metrics::new().map_err(|e| e.to_string())?;
    let config = Arc::new(config);
    let state = AppState {
        store: store.clone(),
        keys: keys.clone(),
        anchors: Arc::new(anchors),
        config: config.clone(),
        issuer: Arc::new(issuer.clone()),
        metrics,
        verify_slots: Arc::new(Semaphore::new(config.max_concurrent_verifications)),
        broker,
        appraiser: Arc::new(appraisal::Appraiser::new(reference_values_file(&config)?)),
        verify_cache: Arc::new(cachet_verify::cache::VerifyCache::default()),
        policy_signers: Arc::new(policy_signing::PolicySigners::load(&config.policy_signing_certs)?),
        endorser: Arc::new(
            // The store's endorsements, remembered in memory for 30 s (one
            // query per piece per attestation otherwise; see `Remembered`).
            cachet_endorse::Endorser::new(
                config.endorsement_sources.clone(),
                Arc::new(cachet_endorse::Remembered::new(Arc::new(endorse::StoreCache(store.clone())), Duration::from_secs(30))),
            )
            .map_err(|e| format!("endorsement sources: {e}"))?,
        ),
    };
    state.reload_reference_values().await.map_err(|e| format!("reference values: {}", e.message))?;
    let state_endorser = state.endorser.clone();
    let config_bg = config.clone();
    let (router, _) = app(state);
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    // Connection limits: a cap in all and per client, an idle timeout on
    // every read and write, and hyper's header-read timeout (which needs the
    // timer axum-server does not set) so half-sent requests are closed.
    let limits = limits::ConnectionLimits::new(&config);
    let header_read_timeout = Duration::from_secs(config.header_read_timeout);
    let task = match &config.tls {
        Some((cert, key)) => {
            let tls =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.map_err(|e| format!("TLS certificate/key: {e}"))?;
            let mut server = axum_server::from_tcp_rustls(listener, tls)
                .map(|tls| tls.acceptor(limits::LimitAcceptor::new(axum_server::accept::DefaultAcceptor, limits)))
                .handle(handle.clone());
            server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_read_timeout);
            tokio::spawn(async move { server.serve(service).await })
        }
        None => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(limits::LimitAcceptor::new(axum_server::accept::DefaultAcceptor, limits))
                .handle(handle.clone());
            server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_read_timeout);
            tokio::spawn(async move { server.serve(service).await })
        }
    };
    let refresh = endorse::refresh_loop(state_endorser, config.endorsement_refresh_interval);
    let background = tokio::spawn(async move {
        tokio::join!(housekeeping(store, keys, config_bg), refresh);
    });
    tracing::info!(%addr, %issuer, tls = config.tls.is_some(), "cachet serve: listening");
    Ok(Server { addr, url, issuer, handle, task, background })
}

/// Every minute: purge long-expired nonces, rotate the signing key when due.
async fn housekeeping(store: Arc<dyn Store>, keys: Arc<KeyService>, config: Arc<Config>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let t = now();
        if let Err(e) = store.purge_nonces(t - 3600).await {
            tracing::warn!(error = %e, "nonce purge failed");
        }
        match keys.auto_rotate(config.key_rotate_after, t).await {
            Ok(Some(k)) => tracing::info!(kid = %k.kid, "signing key rotated automatically"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "automatic key rotation failed"),
        }
    }
}

/// Set up logging on stderr (RUST_LOG, default `info`).
pub fn init_logging(format: config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

/// `cachet serve`: run until SIGINT/SIGTERM. Prints one line on stdout,
/// `cachet serve: listening on URL`, once the port is bound.
pub fn run_blocking(args: ServeArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cachet serve: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cachet serve: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        let server = match start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cachet serve: {e}");
                return ExitCode::from(2);
            }
        };
        println!("cachet serve: listening on {}", server.url);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let handle = server.handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        match server.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cachet serve: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

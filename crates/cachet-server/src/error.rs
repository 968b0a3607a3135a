//! JSON errors with stable codes: `{"error": {"code": "nonce_reused", "message": "..."}}`.
//!
//! Clients branch on `code` (stable across releases); `message` is for
//! people. Verification failures also name the failing check.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `nonce_reused`, `verification_failed`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// For `verification_failed`: the name of the failing check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Explanation.
    pub message: String,
    /// Failing verification check, if any.
    pub check: Option<String>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), check: None }
    }

    /// 400 `invalid_request`: a field is missing or malformed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 500 `internal_error`; the detail goes to the log, not the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error (see the server log)")
    }

    /// 503 `storage_unavailable`.
    pub fn storage(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "storage error");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "the store is unavailable")
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message, check: self.check } };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            if let Ok(v) = axum::http::HeaderValue::from_str("Bearer realm=\"cachet-admin\"") {
                resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

impl From<cachet_store::StoreError> for ApiError {
    fn from(e: cachet_store::StoreError) -> Self {
        ApiError::storage(e)
    }
}

/// A JSON body extractor whose rejections are [`ApiError`]s (so a body
/// over the limit is `413 body_too_large` in the usual JSON shape).
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "request body exceeds the size limit"))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::invalid(e.body_text())),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text())),
        }
    }
}

/// A query-string extractor whose rejections are [`ApiError`]s: a
/// malformed query (e.g. `?limit=abc`) is `400 invalid_query` in the usual
/// JSON shape, like every other error.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("{}; the route's query parameters are in /openapi.json", e.body_text()),
            )),
        }
    }
}

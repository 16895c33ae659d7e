//! What the HTTP layer is served with: the use cases ([`Service`]), the idempotency port (only
//! the middleware needs it), the limits and the metrics. Handlers extract the part they need
//! (`State<Arc<Service>>`) through [`FromRef`]; none of them sees a backend type.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;

use super::admin::Admin;
use super::limits::Limits;
use crate::config::Config;
use crate::idempotency::Idempotency;
use crate::metrics::Metrics;
use crate::service::Service;

#[derive(Clone)]
pub struct HttpState {
    pub service: Arc<Service>,
    pub idempotency: Arc<dyn Idempotency>,
    pub limits: Arc<Limits>,
    pub admin: Arc<Admin>,
    pub metrics: Metrics,
}

impl HttpState {
    /// The state of one server; its limits come from the configuration.
    pub fn new(
        service: Arc<Service>,
        idempotency: Arc<dyn Idempotency>,
        metrics: Metrics,
        config: &Config,
    ) -> Self {
        let limits = Limits::new(
            Duration::from_secs(config.request_timeout.max(1)),
            Duration::from_secs(config.idle_timeout.max(1)),
            config.rate_limit_per_client,
            config.rate_limit_per_token,
        );
        Self {
            service,
            idempotency,
            limits: Arc::new(limits),
            admin: Arc::new(Admin::new(config.admin_key.clone())),
            metrics,
        }
    }
}

impl FromRef<HttpState> for Arc<Service> {
    fn from_ref(state: &HttpState) -> Self {
        state.service.clone()
    }
}

impl FromRef<HttpState> for Arc<dyn Idempotency> {
    fn from_ref(state: &HttpState) -> Self {
        state.idempotency.clone()
    }
}

impl FromRef<HttpState> for Arc<Limits> {
    fn from_ref(state: &HttpState) -> Self {
        state.limits.clone()
    }
}

impl FromRef<HttpState> for Metrics {
    fn from_ref(state: &HttpState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<HttpState> for Arc<Admin> {
    fn from_ref(state: &HttpState) -> Self {
        state.admin.clone()
    }
}

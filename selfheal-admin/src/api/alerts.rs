//! Alerts from other systems: Alertmanager's webhook (feature `alertmanager`), handed
//! to the receiver the host configured ([`AdminConfig::alertmanager`](crate::AdminConfig::alertmanager)).
//! Without the feature there is no endpoint.

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[cfg(feature = "alertmanager")]
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(webhook::alertmanager))
        // A `webhook_configs.url` ending in `/` is the same hook (not in the OpenAPI
        // document twice).
        .route(
            "/alerts/alertmanager/",
            axum::routing::post(webhook::alertmanager),
        )
}

#[cfg(not(feature = "alertmanager"))]
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}

#[cfg(feature = "alertmanager")]
mod webhook {
    use std::collections::BTreeMap;

    use axum::Json;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::extract::rejection::BytesRejection;
    use chrono::{DateTime, Utc};
    use selfheal_sources::alertmanager::{Receipt, Refusal};
    use serde::Deserialize;
    use utoipa::ToSchema;

    use crate::error::{ApiError, field_of};
    use crate::{Principal, state::AppState};

    /// Alertmanager's webhook payload, version 4: one notification of one alert group.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = AlertmanagerWebhook)]
    #[allow(dead_code)]
    pub(crate) struct WebhookSchema {
        /// The payload version; only `4` is read.
        version: VersionSchema,
        /// The group's key in Alertmanager.
        #[serde(default)]
        group_key: String,
        /// Alerts left out of the notification by the receiver's `max_alerts`.
        #[serde(default)]
        truncated_alerts: u64,
        /// `firing` when any alert of the group fires.
        status: StatusSchema,
        /// The receiver's name in Alertmanager's configuration.
        #[serde(default)]
        receiver: String,
        /// The labels the group is grouped by.
        #[serde(default)]
        group_labels: BTreeMap<String, String>,
        /// The labels every alert of the notification has.
        #[serde(default)]
        common_labels: BTreeMap<String, String>,
        /// The annotations every alert of the notification has.
        #[serde(default)]
        common_annotations: BTreeMap<String, String>,
        /// Alertmanager's own URL.
        #[serde(default, rename = "externalURL")]
        external_url: String,
        /// The alerts: one signal per firing alert.
        alerts: Vec<AlertSchema>,
    }

    /// The payload version.
    #[derive(Deserialize, ToSchema)]
    #[schema(as = AlertmanagerWebhookVersion)]
    pub(crate) enum VersionSchema {
        /// Version 4 (Alertmanager 0.16 and later).
        #[serde(rename = "4")]
        V4,
    }

    /// Whether an alert fires or has resolved.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    #[schema(as = AlertStatus)]
    pub(crate) enum StatusSchema {
        /// Its condition holds.
        Firing,
        /// Its condition is gone.
        Resolved,
    }

    /// One alert of a notification.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = AlertmanagerAlert)]
    #[allow(dead_code)]
    pub(crate) struct AlertSchema {
        /// Firing or resolved.
        status: StatusSchema,
        /// Its labels; the first of the receiver's target labels (`service`, `job`,
        /// `instance` by default) names the target.
        labels: BTreeMap<String, String>,
        /// Its annotations; `summary` (or `description`) is the signal's message.
        #[serde(default)]
        annotations: BTreeMap<String, String>,
        /// When it started firing.
        starts_at: DateTime<Utc>,
        /// When it resolved; `0001-01-01T00:00:00Z` while it fires.
        #[serde(default)]
        ends_at: Option<DateTime<Utc>>,
        /// The page of the rule that raised it.
        #[serde(default, rename = "generatorURL")]
        generator_url: String,
        /// Alertmanager's identity of the alert, the same firing and resolved.
        #[schema(min_length = 1, pattern = r"\S")]
        fingerprint: String,
    }

    /// What a notification did.
    #[derive(ToSchema)]
    #[schema(as = AlertmanagerReceipt)]
    #[allow(dead_code)]
    pub(crate) struct ReceiptSchema {
        /// Firing alerts taken in as signals.
        firing: usize,
        /// Resolved alerts handed to the healer.
        resolved: usize,
        /// Alerts Alertmanager left out of the notification.
        truncated: u64,
    }

    /// Takes a notification from Alertmanager (`webhook_configs` with
    /// `send_resolved: true` and this URL, the token in `http_config.authorization`):
    /// each firing alert becomes a signal of its target, each resolved one ends its
    /// target's error stream, so a fix there verifies on the resolution. Any token may
    /// post, a viewer's too.
    #[utoipa::path(post, path = "/alerts/alertmanager", tag = "alerts",
        request_body = WebhookSchema,
        responses(
            (status = 200, description = "taken: every firing alert is a signal the healer took in", body = ReceiptSchema),
            (status = 400, description = "not a version 4 payload: the message names the field", body = ApiError),
            (status = 404, description = "no Alertmanager receiver is configured (AdminConfig::alertmanager)", body = ApiError),
            (status = 503, description = "the healer is not running; Alertmanager retries", body = ApiError)))]
    pub(crate) async fn alertmanager(
        State(s): State<AppState>,
        principal: Principal,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Json<Receipt>, ApiError> {
        let Some(receiver) = s.config.alertmanager.as_ref() else {
            return Err(ApiError::not_found(
                "no Alertmanager receiver is configured here: build one \
                 (selfheal_sources::alertmanager::Alertmanager), add it to the healer as a \
                 source and to the admin with AdminConfig::alertmanager",
            ));
        };
        let body = body?;
        tracing::debug!(principal = %principal.name, bytes = body.len(), "Alertmanager notification");
        receiver.receive(&body).await.map(Json).map_err(|refusal| {
            let field = match &refusal {
                Refusal::Malformed(why) => field_of(why),
                _ => None,
            };
            ApiError::new(refusal.status(), refusal.to_string()).with_field(field)
        })
    }
}

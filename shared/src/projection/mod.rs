//! Applying Stripe objects to stored state: the customer aggregate, panel, MRR, LTV, churn risk,
//! metrics. Pure: no AWS, no clock.
//!
//! Flow: [`route_event`] / [`route_listed`] turn a Stripe object into a [`Routed`] change stamped
//! with a total order ([`Stamp`]); [`CustomerAggregate::apply`] keeps, per object, only the greatest
//! stamp, so any permutation of a multiset of changes (duplicates included) ends in the same
//! aggregate; the panel and metric contributions are pure functions of the aggregate.

pub mod aggregate;
pub mod catalog;
pub mod churn;
pub mod matching;
pub mod metrics;
pub mod mrr;
pub mod panel;
pub mod route;
pub mod stamp;

#[cfg(test)]
mod props;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod testkit;

pub use aggregate::{
    ChargeState, ChargeSummary, CouponTerms, CustomerAggregate, CustomerState, HistoryPoint,
    InvoiceState, ItemState, SubEntry, SubState, MAX_INVOICES,
};
pub use catalog::{CatalogItem, CatalogKind};
/// A product or price version, applied with [`CatalogItem::supersedes`].
pub type CatalogChange = CatalogItem;
pub use churn::{ChurnLevel, ChurnRisk};
pub use matching::{choose, MatchKind, PanelResponse, StoredPanel};
pub use metrics::{diff, report, MetricDelta, MetricKey, MetricsReport, SeriesPoint, ANY_CURRENCY};
pub use panel::{Money, PanelCustomer, PanelInvoice, PanelPlan};
pub use route::{route_event, route_listed};
pub use stamp::Stamp;

/// One stored version of an object belonging to a customer aggregate.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    Customer(CustomerState),
    Subscription(SubState),
    Invoice(InvoiceState),
    Charge(ChargeState),
}

impl Change {
    pub fn stamp(&self) -> &Stamp {
        match self {
            Change::Customer(c) => &c.stamp,
            Change::Subscription(s) => &s.stamp,
            Change::Invoice(i) => &i.stamp,
            Change::Charge(c) => &c.stamp,
        }
    }
}

/// Where a Stripe object goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Routed {
    /// Applies to the aggregate `aggregate_id` (a customer id, or a charge id for a guest charge).
    Customer {
        aggregate_id: String,
        change: Change,
    },
    /// A product or price.
    Catalog(CatalogItem),
    AccountUpdated {
        business_name: Option<String>,
    },
    Deauthorized,
    /// Acknowledged and counted by the caller, not stored.
    Unhandled,
}

/// A Stripe object we cannot project; the message goes to the dead-letter queue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProjectionError {
    #[error("{kind} payload is not a JSON object")]
    NotAnObject { kind: String },
    #[error("{kind} object has no id")]
    MissingId { kind: String },
    #[error("{kind} {id} has no customer")]
    MissingCustomer { kind: String, id: String },
}

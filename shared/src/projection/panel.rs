//! The Customer 360 panel (docs/api.md "Panel" `customer` object) derived from the aggregate.
//!
//! Currency choice: a customer's MRR is reported in the currency of their largest MRR (ties: the
//! alphabetically first code); LTV likewise in the currency of their largest lifetime value.
//! Amounts in other currencies are not converted and not shown in the panel; they still count in
//! the per-currency metrics. With nothing to go on, the customer's own currency, else the
//! primary subscription's, else `usd`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::aggregate::{CustomerAggregate, InvoiceState, SubState};
use super::churn::{churn_risk, ChurnRisk};
use super::mrr::subscription_mrr_with;
use crate::stripe::kinds::SubscriptionStatus;
use crate::time::rfc3339;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Minor units.
    pub amount: i64,
    pub currency: String,
}

/// The plan: the per-unit amount and the quantity, never their product (docs/api.md "Panel").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PanelPlan {
    #[schema(required = true)]
    pub product: Option<String>,
    #[schema(required = true)]
    pub price_id: Option<String>,
    /// `month`, `year`, `week` or `day`.
    #[schema(required = true)]
    pub interval: Option<String>,
    #[schema(required = true)]
    pub interval_count: i64,
    /// Per unit, minor units.
    #[schema(required = true)]
    pub unit_amount: i64,
    #[schema(required = true)]
    pub quantity: i64,
    #[schema(required = true)]
    pub currency: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PanelInvoice {
    pub id: String,
    pub status: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub created: String,
    #[schema(required = true)]
    pub hosted_invoice_url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PanelCustomer {
    pub id: String,
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub name: Option<String>,
    pub livemode: bool,
    pub created: String,
    #[schema(required = true)]
    pub plan: Option<PanelPlan>,
    pub mrr: Money,
    pub ltv: Money,
    /// `active`, `past_due`, `canceled`, `trialing`, `unpaid`, `incomplete`, `incomplete_expired`, `paused` or `none`.
    pub payment_status: String,
    #[schema(required = true)]
    pub last_invoice: Option<PanelInvoice>,
    pub churn_risk: ChurnRisk,
    pub dashboard_url: String,
}

/// The currency with the largest positive amount (ties: first code), if any.
fn largest(by_currency: &BTreeMap<String, i64>) -> Option<String> {
    by_currency
        .iter()
        .filter(|(_, a)| **a > 0)
        .fold(None::<(&String, i64)>, |best, (c, a)| match best {
            Some((_, b)) if b >= *a => best,
            _ => Some((c, *a)),
        })
        .map(|(c, _)| c.clone())
}

impl CustomerAggregate {
    /// MRR per currency, summed over subscriptions.
    pub fn mrr_by_currency(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for s in self.subscriptions.values() {
            let inherited = self.inherited_discount(&s.state);
            *out.entry(s.state.currency()).or_insert(0) +=
                subscription_mrr_with(&s.state, inherited);
        }
        out
    }

    /// The customer's MRR in the currency of their largest MRR.
    pub fn mrr(&self) -> Money {
        let by = self.mrr_by_currency();
        let currency = largest(&by).unwrap_or_else(|| self.fallback_currency());
        Money {
            amount: by.get(&currency).copied().unwrap_or(0),
            currency,
        }
    }

    /// Lifetime value per currency: succeeded charges' amount minus refunds.
    pub fn ltv_by_currency(&self) -> BTreeMap<String, i64> {
        self.charge_summary.ltv.clone()
    }

    /// LTV in the currency of the customer's largest lifetime value (else the MRR currency).
    pub fn ltv(&self) -> Money {
        let by = self.ltv_by_currency();
        let currency = largest(&by).unwrap_or_else(|| self.mrr().currency);
        Money {
            amount: by.get(&currency).copied().unwrap_or(0),
            currency,
        }
    }

    fn fallback_currency(&self) -> String {
        self.customer
            .as_ref()
            .and_then(|c| c.currency.clone())
            .or_else(|| self.primary_subscription().map(SubState::currency))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "usd".to_string())
    }

    /// The subscription the panel describes: not ended; established ones before `incomplete`;
    /// then the most recently created.
    pub fn primary_subscription(&self) -> Option<&SubState> {
        self.subscriptions
            .values()
            .map(|s| &s.state)
            .filter(|s| !s.is_terminal())
            .max_by_key(|s| {
                let established =
                    SubscriptionStatus::from(s.status.as_str()) != SubscriptionStatus::Incomplete;
                (
                    established,
                    s.created.or(s.start_date).unwrap_or(s.stamp.t),
                    s.id.clone(),
                )
            })
    }

    /// The primary subscription's status; else the latest ended one's; else `none`.
    pub fn payment_status(&self) -> String {
        if let Some(s) = self.primary_subscription() {
            return s.status.clone();
        }
        self.subscriptions
            .values()
            .map(|s| &s.state)
            .max_by_key(|s| {
                (
                    s.ended_at.or(s.canceled_at).unwrap_or(s.stamp.t),
                    s.id.clone(),
                )
            })
            .map(|s| s.status.clone())
            .unwrap_or_else(|| "none".to_string())
    }

    /// The primary subscription's first licensed, per-unit recurring item.
    pub fn plan(&self) -> Option<PanelPlan> {
        let sub = self.primary_subscription()?;
        let item = sub.items.iter().find(|i| {
            i.interval.is_some()
                && !i.tiered
                && i.usage_type.as_deref().is_none_or(|u| u == "licensed")
        })?;
        Some(PanelPlan {
            product: item.product_id.clone(),
            price_id: item.price_id.clone(),
            interval: item.interval.clone(),
            interval_count: item.interval_count,
            unit_amount: item.unit_amount.unwrap_or(0),
            quantity: item.quantity,
            currency: item.currency.clone().unwrap_or_else(|| sub.currency()),
        })
    }

    /// The newest kept invoice by `(created, id)`, deleted drafts excluded.
    pub fn last_invoice_state(&self) -> Option<&InvoiceState> {
        self.invoices
            .values()
            .filter(|i| !i.deleted)
            .max_by_key(|i| (i.created, i.id.clone()))
    }

    pub fn churn_risk(&self) -> ChurnRisk {
        churn_risk(self)
    }

    /// The panel's `customer` object; none for guests (no customer) and deleted customers.
    pub fn panel_customer(&self) -> Option<PanelCustomer> {
        let c = self.customer.as_ref().filter(|c| !c.deleted)?;
        let livemode = self.livemode();
        let mode = if livemode { "" } else { "test/" };
        Some(PanelCustomer {
            id: c.id.clone(),
            email: c.email.clone(),
            name: c.name.clone(),
            livemode,
            created: rfc3339(c.created.unwrap_or(c.stamp.t)),
            plan: self.plan(),
            mrr: self.mrr(),
            ltv: self.ltv(),
            payment_status: self.payment_status(),
            last_invoice: self.last_invoice_state().map(|i| PanelInvoice {
                id: i.id.clone(),
                status: i.status.clone(),
                amount_due: i.amount_due,
                amount_paid: i.amount_paid,
                currency: i.currency.clone(),
                created: rfc3339(i.created),
                hosted_invoice_url: i.hosted_invoice_url.clone(),
            }),
            churn_risk: self.churn_risk(),
            dashboard_url: format!("https://dashboard.stripe.com/{mode}customers/{}", c.id),
        })
    }
}

//! Stripe's kinds and statuses as enums, each with a fallback that keeps a value we do not know.
//!
//! The values are Stripe's published ones (the `stripe` npm package's type definitions, which
//! end every status union with `OtherString`: Stripe may add values at any time). So parsing never
//! fails: an unknown value is kept verbatim in `Other` and reads back unchanged, and an event with
//! a status we have never seen is projected like today, never dropped.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares a string enum with an `Other(String)` fallback: `From<&str>`, `as_str`, `Display`,
/// and serde as the plain string.
macro_rules! stripe_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value Stripe added after this was written, kept as sent.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $value,)+
                    $name::Other(raw) => raw,
                }
            }
        }

        impl From<&str> for $name {
            fn from(raw: &str) -> Self {
                match raw {
                    $($value => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Ok($name::from(raw.as_str()))
            }
        }
    };
}

stripe_enum! {
    /// `subscription.status` (`Stripe.Subscription.Status`).
    SubscriptionStatus {
        Active = "active",
        Canceled = "canceled",
        Incomplete = "incomplete",
        IncompleteExpired = "incomplete_expired",
        PastDue = "past_due",
        Paused = "paused",
        Trialing = "trialing",
        Unpaid = "unpaid",
    }
}

impl SubscriptionStatus {
    /// Counts toward MRR and as an active subscription: `active` or `past_due`.
    pub fn counts_mrr(&self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue
        )
    }

    /// The subscription is over for good and can never bill again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
        )
    }

    /// Counts as churn: ended, or `unpaid` (Stripe stops retrying and stops billing).
    pub fn is_churn(&self) -> bool {
        self.is_terminal() || *self == SubscriptionStatus::Unpaid
    }
}

stripe_enum! {
    /// `invoice.status` (`Stripe.Invoice.Status`).
    InvoiceStatus {
        Draft = "draft",
        Open = "open",
        Paid = "paid",
        Uncollectible = "uncollectible",
        Void = "void",
    }
}

stripe_enum! {
    /// `charge.status` (`Stripe.Charge.Status`).
    ChargeStatus {
        Failed = "failed",
        Pending = "pending",
        Succeeded = "succeeded",
    }
}

stripe_enum! {
    /// The object families we project, by their `object` value.
    ObjectFamily {
        Customer = "customer",
        Subscription = "subscription",
        Discount = "discount",
        Coupon = "coupon",
        Invoice = "invoice",
        Charge = "charge",
        Product = "product",
        Price = "price",
    }
}

impl ObjectFamily {
    /// The family an event type's object belongs to (`customer.subscription.updated` is a
    /// subscription), or `None` for event types we do not project.
    ///
    /// `customer.*` beyond created/updated/deleted (e.g. `customer.source.*`,
    /// `customer.tax_id.*`) carries other objects; `charge.dispute.*` and friends are caught by
    /// the caller comparing the object's own `object` with the family.
    pub fn of_event_type(event_type: &str) -> Option<ObjectFamily> {
        let (prefix, rest) = event_type.split_once('.')?;
        let family = match (prefix, rest) {
            ("customer", "created" | "updated" | "deleted") => ObjectFamily::Customer,
            ("customer", rest) => match rest.split_once('.')?.0 {
                "subscription" => ObjectFamily::Subscription,
                "discount" => ObjectFamily::Discount,
                _ => return None,
            },
            ("coupon", _) => ObjectFamily::Coupon,
            ("invoice", _) => ObjectFamily::Invoice,
            ("charge", _) => ObjectFamily::Charge,
            ("product", _) => ObjectFamily::Product,
            ("price", _) => ObjectFamily::Price,
            _ => return None,
        };
        Some(family)
    }

    /// Families a full listing reads (discounts are never listed on their own).
    pub fn is_listed(&self) -> bool {
        !matches!(self, ObjectFamily::Discount | ObjectFamily::Other(_))
    }
}

/// Whether an event is about the connected account itself (`account.updated`,
/// `account.application.deauthorized`...), so it counts in either mode.
pub fn is_account_event(event_type: &str) -> bool {
    event_type
        .split_once('.')
        .is_some_and(|(p, _)| p == "account")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_round_trip_and_unknown_ones_are_kept() {
        for raw in [
            "active",
            "canceled",
            "incomplete",
            "incomplete_expired",
            "past_due",
            "paused",
            "trialing",
            "unpaid",
            "some_future_status",
        ] {
            let status = SubscriptionStatus::from(raw);
            assert_eq!(status.as_str(), raw);
            let json = serde_json::to_value(&status).unwrap();
            assert_eq!(json, serde_json::json!(raw));
            let back: SubscriptionStatus = serde_json::from_value(json).unwrap();
            assert_eq!(back, status);
        }
        assert_eq!(
            SubscriptionStatus::from("some_future_status"),
            SubscriptionStatus::Other("some_future_status".into())
        );
        assert_eq!(InvoiceStatus::from("void"), InvoiceStatus::Void);
        assert_eq!(ChargeStatus::from("pending"), ChargeStatus::Pending);
        assert_eq!(
            ChargeStatus::from("requires_review").to_string(),
            "requires_review"
        );
    }

    #[test]
    fn subscription_status_groups_follow_stripes_glossary() {
        let counts: Vec<&str> = [
            "active", "past_due", "trialing", "unpaid", "canceled", "paused", "x",
        ]
        .into_iter()
        .filter(|s| SubscriptionStatus::from(*s).counts_mrr())
        .collect();
        assert_eq!(counts, ["active", "past_due"]);
        assert!(SubscriptionStatus::IncompleteExpired.is_terminal());
        assert!(!SubscriptionStatus::Unpaid.is_terminal());
        assert!(SubscriptionStatus::Unpaid.is_churn());
        assert!(!SubscriptionStatus::from("x").is_churn());
    }

    #[test]
    fn event_types_map_to_their_object_family() {
        let cases = [
            ("customer.created", Some(ObjectFamily::Customer)),
            ("customer.deleted", Some(ObjectFamily::Customer)),
            (
                "customer.subscription.trial_will_end",
                Some(ObjectFamily::Subscription),
            ),
            ("customer.discount.created", Some(ObjectFamily::Discount)),
            ("customer.source.created", None),
            ("customer.tax_id.updated", None),
            ("coupon.deleted", Some(ObjectFamily::Coupon)),
            ("invoice.payment_failed", Some(ObjectFamily::Invoice)),
            ("charge.refund.updated", Some(ObjectFamily::Charge)),
            ("product.updated", Some(ObjectFamily::Product)),
            ("price.created", Some(ObjectFamily::Price)),
            ("payment_intent.succeeded", None),
            ("account.updated", None),
            ("customer", None),
        ];
        for (event_type, family) in cases {
            assert_eq!(
                ObjectFamily::of_event_type(event_type),
                family,
                "{event_type}"
            );
        }
        assert!(is_account_event("account.application.deauthorized"));
        assert!(!is_account_event("accounting.x"));
        assert!(ObjectFamily::from("coupon").is_listed());
        assert!(!ObjectFamily::from("discount").is_listed());
        assert!(!ObjectFamily::from("payment_intent").is_listed());
    }
}

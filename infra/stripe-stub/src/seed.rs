//! Deterministic generation of one connected account's Stripe data: catalog, customers,
//! subscriptions, and the invoices, charges and events of the last `invoice_days` days.
//!
//! The same seed and account id give the same ids, emails, statuses and amounts; timestamps are
//! relative to the `now` the seeder is given.

use std::sync::Arc;

use chrono::{DateTime, Months};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::objects::{
    self, Catalog, ChargeSpec, CouponSpec, CustomerSpec, DiscountSpec, EventSpec, InvoiceSpec,
    ItemSpec, LineSpec, Owner, PriceSpec, SubscriptionSpec,
};
use crate::store::Index;

/// The account of the dev preset.
pub const DEV_ACCOUNT_ID: &str = "acct_1DevStripeAcct01";
pub const DEV_BUSINESS_NAME: &str = "Acme Dev Co";

/// Customers every seeded account holds (when it has at least [`known::COUNT`] customers), with
/// fixed ids and emails tests can rely on.
pub mod known {
    /// Shared by two customers: [`SHARED_NEW_ID`] (active Pro monthly, recent invoices) and
    /// [`SHARED_OLD_ID`] (older, subscription canceled ~300 days ago, no recent activity).
    pub const SHARED_EMAIL: &str = "shared.buyer@example.com";
    pub const SHARED_NEW_ID: &str = "cus_SharedEmailNew";
    pub const SHARED_OLD_ID: &str = "cus_SharedEmailOld";
    /// A mixed-case email; no customer has its lower-case form.
    pub const MIXED_CASE_EMAIL: &str = "Mixed.Case@Example.com";
    pub const MIXED_CASE_ID: &str = "cus_MixedCaseEmail";
    /// Two customers whose emails differ only in case: the lower-case one is `past_due`, the
    /// other `active` (Team, quantity 5).
    pub const PAT_LOWER_EMAIL: &str = "pat.lee@example.com";
    pub const PAT_LOWER_ID: &str = "cus_PatLeeLower";
    pub const PAT_UPPER_EMAIL: &str = "Pat.Lee@example.com";
    pub const PAT_UPPER_ID: &str = "cus_PatLeeUpper";
    /// Active Team subscription, quantity 3, forever 20% coupon, plus a metered item.
    pub const FOREVER_COUPON_EMAIL: &str = "forever.coupon@example.com";
    pub const FOREVER_COUPON_ID: &str = "cus_ForeverCoupon";
    /// Active subscription with [`super::MANY_ITEMS`] monthly add-on items (more than a
    /// subscription embeds: `items.has_more` is true).
    pub const MANY_ITEMS_EMAIL: &str = "many.items@example.com";
    pub const MANY_ITEMS_ID: &str = "cus_ManyItems";
    /// Active Pro monthly with a forever $5.00-off coupon ([`super::COUPON_AMOUNT_OFF`]).
    pub const AMOUNT_OFF_EMAIL: &str = "amount.off@example.com";
    pub const AMOUNT_OFF_ID: &str = "cus_AmountOffCoupon";
    /// Active Starter monthly with a 25%-off-for-3-months coupon ([`super::COUPON_REPEATING`]),
    /// started ~200 days ago: its current invoices are no longer discounted.
    pub const REPEATING_EMAIL: &str = "repeating.coupon@example.com";
    pub const REPEATING_ID: &str = "cus_RepeatingCoupon";
    /// How many fixed customers come first.
    pub const COUNT: usize = 9;
}

pub const PRODUCT_STARTER: &str = "prod_StubStarter";
pub const PRODUCT_PRO: &str = "prod_StubPro";
pub const PRODUCT_TEAM: &str = "prod_StubTeam";
pub const PRICE_STARTER_MONTHLY: &str = "price_StubStarterMonthly";
pub const PRICE_STARTER_YEARLY: &str = "price_StubStarterYearly";
pub const PRICE_PRO_MONTHLY: &str = "price_StubProMonthly";
pub const PRICE_PRO_YEARLY: &str = "price_StubProYearly";
pub const PRICE_PRO_MONTHLY_EUR: &str = "price_StubProMonthlyEur";
pub const PRICE_TEAM_SEAT_MONTHLY: &str = "price_StubTeamSeatMonthly";
pub const PRICE_TEAM_USAGE_METERED: &str = "price_StubTeamUsageMetered";
pub const COUPON_FOREVER: &str = "FOREVER20";
pub const COUPON_ONCE: &str = "WELCOME50";
pub const COUPON_AMOUNT_OFF: &str = "FIVEOFF";
pub const COUPON_REPEATING: &str = "QUARTER3";
pub const PRODUCT_ADDONS: &str = "prod_StubAddons";
/// How many add-on items the [`known::MANY_ITEMS_ID`] subscription has.
pub const MANY_ITEMS: usize = 12;

/// Days of events seeded before `now` (older objects have no seeded events).
pub const EVENT_DAYS: i64 = 3;

const DAY: i64 = 86_400;

/// One connected account to seed.
#[derive(Clone, Debug)]
pub struct SeedAccount {
    pub account_id: String,
    pub business_name: String,
    pub livemode: bool,
    pub customers: usize,
    /// Invoices and charges are generated for this many days before now.
    pub invoice_days: u32,
    pub mix: Mix,
}

/// What the rolled (non-[`known`]) customers look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// ~88% subscribed; monthly and yearly prices in USD and EUR; active, trialing, past_due,
    /// canceled, unpaid, incomplete, cancel_at_period_end; coupons; quantities > 1.
    Dev,
    /// Every customer subscribed to a monthly price, mostly active: ~3 invoices and charges per
    /// customer over 90 days.
    Bench,
}

impl SeedAccount {
    pub fn new(
        account_id: &str,
        business_name: &str,
        livemode: bool,
        customers: usize,
        invoice_days: u32,
    ) -> Self {
        SeedAccount {
            account_id: account_id.to_string(),
            business_name: business_name.to_string(),
            livemode,
            customers,
            invoice_days,
            mix: Mix::Dev,
        }
    }

    /// A benchmark account: every customer subscribed, `invoice_days` of invoices and charges.
    /// 10,000 customers and 90 days give ~80,000 objects.
    pub fn bench(account_id: &str, customers: usize, invoice_days: u32) -> Self {
        SeedAccount {
            mix: Mix::Bench,
            ..SeedAccount::new(account_id, "Bench Co", true, customers, invoice_days)
        }
    }

    /// `acct_1DevStripeAcct01`, "Acme Dev Co", test mode, 300 customers, 90 days.
    pub fn dev() -> Self {
        SeedAccount::new(DEV_ACCOUNT_ID, DEV_BUSINESS_NAME, false, 300, 90)
    }
}

/// A seeded object, kept as its spec and rendered to JSON when first read.
pub(crate) enum Seeded {
    Customer(CustomerSpec),
    Subscription(SubscriptionSpec),
    /// One item of a subscription (its id and the item).
    Item(String, ItemSpec),
    Invoice(InvoiceSpec),
    Charge(ChargeSpec),
    Event(EventSeed),
}

/// A seeded event: its object is the seeded object it announces.
pub(crate) struct EventSeed {
    pub id: String,
    pub event_type: &'static str,
    pub created: i64,
    pub object: Arc<Seeded>,
}

/// What rendering a seeded object needs besides its spec.
pub(crate) struct Renderer {
    pub owner: Owner,
    pub catalog: Catalog,
}

impl Seeded {
    pub fn id(&self) -> &str {
        match self {
            Seeded::Customer(s) => &s.id,
            Seeded::Subscription(s) => &s.id,
            Seeded::Item(_, s) => &s.id,
            Seeded::Invoice(s) => &s.id,
            Seeded::Charge(s) => &s.id,
            Seeded::Event(s) => &s.id,
        }
    }

    /// The filterable fields, without rendering.
    pub fn index(&self, renderer: &Renderer) -> Index {
        match self {
            Seeded::Customer(s) => Index {
                created: s.created,
                email: Some(s.email.clone()),
                currency: s.currency.map(str::to_string),
                ..Index::default()
            },
            Seeded::Subscription(s) => Index {
                created: s.created,
                customer: Some(s.customer.clone()),
                status: Some(s.status.to_string()),
                currency: Some(s.currency.clone()),
                prices: s
                    .items
                    .iter()
                    .map(|i| renderer.catalog.prices[i.price].0.id.to_string())
                    .collect(),
                ..Index::default()
            },
            Seeded::Item(subscription, s) => Index {
                created: s.created,
                subscription: Some(subscription.clone()),
                ..Index::default()
            },
            Seeded::Invoice(s) => Index {
                created: s.created,
                customer: Some(s.customer.clone()),
                subscription: s.subscription.clone(),
                status: Some(s.status.to_string()),
                currency: Some(s.currency.clone()),
                ..Index::default()
            },
            Seeded::Charge(s) => Index {
                created: s.created,
                customer: Some(s.customer.clone()),
                status: Some(if s.succeeded { "succeeded" } else { "failed" }.to_string()),
                currency: Some(s.currency.clone()),
                payment_intent: Some(s.payment_intent.clone()),
                ..Index::default()
            },
            Seeded::Event(s) => Index {
                created: s.created,
                type_: Some(s.event_type.to_string()),
                ..Index::default()
            },
        }
    }

    /// An invoice with all its lines; `None` for other objects.
    pub fn render_full(&self, renderer: &Renderer) -> Option<Value> {
        match self {
            Seeded::Invoice(s) => Some(objects::invoice(
                &renderer.owner,
                &renderer.catalog,
                s,
                true,
            )),
            _ => None,
        }
    }

    pub fn render(&self, renderer: &Renderer) -> Value {
        let owner = &renderer.owner;
        match self {
            Seeded::Customer(s) => objects::customer_from(owner, s),
            Seeded::Subscription(s) => objects::subscription(owner, &renderer.catalog, s),
            Seeded::Item(subscription, s) => {
                objects::subscription_item(&renderer.catalog, subscription, s)
            }
            Seeded::Invoice(s) => objects::invoice(owner, &renderer.catalog, s, false),
            Seeded::Charge(s) => objects::charge(owner, s),
            Seeded::Event(s) => objects::event(EventSpec {
                id: s.id.clone(),
                event_type: s.event_type,
                created: s.created,
                // Seeded objects are kept in the pinned shape; their events say so.
                api_version: crate::version::API_VERSION,
                account_id: &owner.account_id,
                livemode: owner.livemode,
                object: s.object.render(renderer),
                previous_attributes: None,
                pending_webhooks: 0,
                request_id: None,
            }),
        }
    }
}

/// Everything generated for one account.
pub(crate) struct SeedData {
    pub account: Value,
    pub products: Vec<Value>,
    pub prices: Vec<Value>,
    pub customers: Vec<Arc<Seeded>>,
    pub subscriptions: Vec<Arc<Seeded>>,
    pub invoices: Vec<Arc<Seeded>>,
    pub charges: Vec<Arc<Seeded>>,
    pub events: Vec<Arc<Seeded>>,
    pub items: Vec<Arc<Seeded>>,
    pub coupons: Vec<Value>,
    pub discounts: Vec<Value>,
    pub payment_methods: Vec<Value>,
    /// (charge, invoice) of every charge that paid (or tried to pay) an invoice.
    pub charge_invoice: Vec<(String, String)>,
    pub renderer: Renderer,
}

fn catalog() -> Vec<PriceSpec> {
    let p = |id, product, nickname, unit_amount, currency, interval, usage_type| PriceSpec {
        id,
        product,
        nickname,
        unit_amount,
        currency,
        interval,
        usage_type,
    };
    vec![
        p(
            PRICE_STARTER_MONTHLY,
            PRODUCT_STARTER,
            "Starter monthly",
            1900,
            "usd",
            "month",
            "licensed",
        ),
        p(
            PRICE_STARTER_YEARLY,
            PRODUCT_STARTER,
            "Starter yearly",
            19000,
            "usd",
            "year",
            "licensed",
        ),
        p(
            PRICE_PRO_MONTHLY,
            PRODUCT_PRO,
            "Pro monthly",
            4900,
            "usd",
            "month",
            "licensed",
        ),
        p(
            PRICE_PRO_YEARLY,
            PRODUCT_PRO,
            "Pro yearly",
            49000,
            "usd",
            "year",
            "licensed",
        ),
        p(
            PRICE_PRO_MONTHLY_EUR,
            PRODUCT_PRO,
            "Pro monthly (EUR)",
            4500,
            "eur",
            "month",
            "licensed",
        ),
        p(
            PRICE_TEAM_SEAT_MONTHLY,
            PRODUCT_TEAM,
            "Team per seat",
            1500,
            "usd",
            "month",
            "licensed",
        ),
        p(
            PRICE_TEAM_USAGE_METERED,
            PRODUCT_TEAM,
            "Team API usage",
            2,
            "usd",
            "month",
            "metered",
        ),
    ]
    .into_iter()
    .chain(ADDON_PRICES.iter().enumerate().map(|(k, id)| {
        p(
            id,
            PRODUCT_ADDONS,
            ADDON_NAMES[k],
            100 * (k as i64 + 1),
            "usd",
            "month",
            "licensed",
        )
    }))
    .collect()
}

/// Monthly USD add-ons ($1, $2, ... $12), for the subscription with more items than Stripe embeds.
const ADDON_PRICES: [&str; MANY_ITEMS] = [
    "price_StubAddon01",
    "price_StubAddon02",
    "price_StubAddon03",
    "price_StubAddon04",
    "price_StubAddon05",
    "price_StubAddon06",
    "price_StubAddon07",
    "price_StubAddon08",
    "price_StubAddon09",
    "price_StubAddon10",
    "price_StubAddon11",
    "price_StubAddon12",
];
const ADDON_NAMES: [&str; MANY_ITEMS] = [
    "Add-on 1",
    "Add-on 2",
    "Add-on 3",
    "Add-on 4",
    "Add-on 5",
    "Add-on 6",
    "Add-on 7",
    "Add-on 8",
    "Add-on 9",
    "Add-on 10",
    "Add-on 11",
    "Add-on 12",
];

const STARTER_M: usize = 0;
const STARTER_Y: usize = 1;
const PRO_M: usize = 2;
const PRO_Y: usize = 3;
const PRO_EUR: usize = 4;
const TEAM: usize = 5;
const METERED: usize = 6;
const FIRST_ADDON: usize = 7;

const FOREVER: usize = 0;
const ONCE: usize = 1;
const AMOUNT_OFF: usize = 2;
const REPEATING: usize = 3;

fn coupons() -> [CouponSpec; 4] {
    [
        CouponSpec {
            id: COUPON_FOREVER,
            name: "20% off forever",
            percent_off: Some(20.0),
            amount_off: None,
            duration: "forever",
            duration_in_months: None,
        },
        CouponSpec {
            id: COUPON_ONCE,
            name: "50% off first invoice",
            percent_off: Some(50.0),
            amount_off: None,
            duration: "once",
            duration_in_months: None,
        },
        CouponSpec {
            id: COUPON_AMOUNT_OFF,
            name: "$5 off forever",
            percent_off: None,
            amount_off: Some((500, "usd")),
            duration: "forever",
            duration_in_months: None,
        },
        CouponSpec {
            id: COUPON_REPEATING,
            name: "25% off for 3 months",
            percent_off: Some(25.0),
            amount_off: None,
            duration: "repeating",
            duration_in_months: Some(3),
        },
    ]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Active,
    CancelAtPeriodEnd,
    Trialing,
    PastDue,
    Canceled,
    Unpaid,
    Incomplete,
}

impl Status {
    fn wire(self) -> &'static str {
        match self {
            Status::Active | Status::CancelAtPeriodEnd => "active",
            Status::Trialing => "trialing",
            Status::PastDue => "past_due",
            Status::Canceled => "canceled",
            Status::Unpaid => "unpaid",
            Status::Incomplete => "incomplete",
        }
    }
    fn roll(rng: &mut StdRng) -> Status {
        match rng.gen_range(0..100) {
            0..=69 => Status::Active,
            70..=73 => Status::CancelAtPeriodEnd,
            74..=79 => Status::Trialing,
            80..=85 => Status::PastDue,
            86..=95 => Status::Canceled,
            96..=97 => Status::Unpaid,
            _ => Status::Incomplete,
        }
    }
}

/// What one customer gets; the fixed customers spell it out, the rest roll it.
struct Plan {
    id: Option<&'static str>,
    email: Option<&'static str>,
    name: Option<&'static str>,
    subscribed: bool,
    status: Status,
    price: usize,
    quantity: u32,
    metered: bool,
    /// Subscribed to every add-on instead of `price`.
    addons: bool,
    coupon: Option<usize>,
    created_days_ago: Option<i64>,
    canceled_days_ago: Option<i64>,
}

fn fixed_plan(index: usize) -> Plan {
    let base = Plan {
        id: None,
        email: None,
        name: None,
        subscribed: true,
        status: Status::Active,
        price: PRO_M,
        quantity: 1,
        metered: false,
        addons: false,
        coupon: None,
        created_days_ago: Some(200),
        canceled_days_ago: None,
    };
    match index {
        0 => Plan {
            id: Some(known::SHARED_NEW_ID),
            email: Some(known::SHARED_EMAIL),
            name: Some("Sam Shared"),
            ..base
        },
        1 => Plan {
            id: Some(known::SHARED_OLD_ID),
            email: Some(known::SHARED_EMAIL),
            name: Some("Sam Shared"),
            status: Status::Canceled,
            price: STARTER_M,
            created_days_ago: Some(600),
            canceled_days_ago: Some(300),
            ..base
        },
        2 => Plan {
            id: Some(known::MIXED_CASE_ID),
            email: Some(known::MIXED_CASE_EMAIL),
            name: Some("Mixed Case"),
            price: STARTER_Y,
            created_days_ago: Some(120),
            ..base
        },
        3 => Plan {
            id: Some(known::PAT_LOWER_ID),
            email: Some(known::PAT_LOWER_EMAIL),
            name: Some("Pat Lee"),
            status: Status::PastDue,
            created_days_ago: Some(150),
            ..base
        },
        4 => Plan {
            id: Some(known::PAT_UPPER_ID),
            email: Some(known::PAT_UPPER_EMAIL),
            name: Some("Pat Lee"),
            price: TEAM,
            quantity: 5,
            created_days_ago: Some(80),
            ..base
        },
        5 => Plan {
            id: Some(known::FOREVER_COUPON_ID),
            email: Some(known::FOREVER_COUPON_EMAIL),
            name: Some("Forever Coupon"),
            price: TEAM,
            quantity: 3,
            metered: true,
            coupon: Some(FOREVER),
            created_days_ago: Some(400),
            ..base
        },
        6 => Plan {
            id: Some(known::MANY_ITEMS_ID),
            email: Some(known::MANY_ITEMS_EMAIL),
            name: Some("Many Items"),
            price: FIRST_ADDON,
            addons: true,
            created_days_ago: Some(45),
            ..base
        },
        7 => Plan {
            id: Some(known::AMOUNT_OFF_ID),
            email: Some(known::AMOUNT_OFF_EMAIL),
            name: Some("Amount Off"),
            coupon: Some(AMOUNT_OFF),
            created_days_ago: Some(100),
            ..base
        },
        _ => Plan {
            id: Some(known::REPEATING_ID),
            email: Some(known::REPEATING_EMAIL),
            name: Some("Repeating Coupon"),
            price: STARTER_M,
            coupon: Some(REPEATING),
            created_days_ago: Some(200),
            ..base
        },
    }
}

fn rolled_plan(rng: &mut StdRng, mix: Mix) -> Plan {
    let (subscribed, status, price) = match mix {
        Mix::Dev => {
            let subscribed = rng.gen_bool(0.88);
            let status = Status::roll(rng);
            let price = match rng.gen_range(0..100) {
                0..=29 => STARTER_M,
                30..=39 => STARTER_Y,
                40..=64 => PRO_M,
                65..=72 => PRO_Y,
                73..=79 => PRO_EUR,
                _ => TEAM,
            };
            (subscribed, status, price)
        }
        Mix::Bench => {
            let status = match rng.gen_range(0..100) {
                0..=89 => Status::Active,
                90..=92 => Status::CancelAtPeriodEnd,
                93..=96 => Status::PastDue,
                _ => Status::Canceled,
            };
            let price = match rng.gen_range(0..100) {
                0..=34 => STARTER_M,
                35..=69 => PRO_M,
                70..=79 => PRO_EUR,
                _ => TEAM,
            };
            (true, status, price)
        }
    };
    let quantity = if price == TEAM {
        rng.gen_range(2..=25)
    } else if rng.gen_bool(0.05) {
        rng.gen_range(2..=4)
    } else {
        1
    };
    let metered = price == TEAM && rng.gen_bool(0.5);
    let coupon = match rng.gen_range(0..100) {
        0..=7 => Some(FOREVER),
        8..=12 => Some(ONCE),
        // An amount-off coupon is in one currency: USD prices only.
        13..=16 if price != PRO_EUR => Some(AMOUNT_OFF),
        17..=19 => Some(REPEATING),
        _ => None,
    };
    Plan {
        id: None,
        email: None,
        name: None,
        subscribed,
        status,
        price,
        quantity,
        metered,
        addons: false,
        coupon,
        created_days_ago: None,
        canceled_days_ago: None,
    }
}

const FIRST: &[&str] = &[
    "alex", "jordan", "taylor", "morgan", "casey", "riley", "jamie", "avery", "quinn", "parker",
    "drew", "harper", "maria", "li", "ahmed", "sofia", "noah", "emma", "liam", "olivia", "lucas",
    "mia", "ethan", "ava", "yuki", "priya", "omar", "chloe", "mateo", "zoe",
];
const LAST: &[&str] = &[
    "smith", "johnson", "garcia", "nguyen", "patel", "kim", "muller", "rossi", "silva", "cohen",
    "okafor", "tanaka", "dubois", "novak", "larsen", "murphy", "lopez", "wright", "chen", "ali",
    "walker", "young", "king", "scott",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "mail.example.net",
    "acme.test",
    "corp.example",
];
const CARDS: &[(&str, &str)] = &[
    ("visa", "4242"),
    ("mastercard", "4444"),
    ("amex", "8431"),
    ("visa", "1881"),
];

/// A customer's card: (brand, last4, exp_month, exp_year), fixed by the customer id.
fn card_of(customer: &str) -> (&'static str, &'static str, u32, u32) {
    let hash = customer.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let (brand, last4) = CARDS[(hash % CARDS.len() as u64) as usize];
    let month = (hash >> 8) % 12 + 1;
    let year = 2027 + (hash >> 16) % 4;
    (brand, last4, month as u32, year as u32)
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn add_months(t: i64, months: u32) -> i64 {
    DateTime::from_timestamp(t, 0)
        .and_then(|d| d.checked_add_months(Months::new(months)))
        .map(|d| d.timestamp())
        .unwrap_or(t + i64::from(months) * 30 * DAY)
}

struct Seeder {
    rng: StdRng,
    now: i64,
    window_start: i64,
    event_start: i64,
    prices: Vec<PriceSpec>,
    coupons: [CouponSpec; 4],
    out: SeedData,
}

/// Generates one account's data from `seed`, with timestamps relative to `now`.
pub(crate) fn generate(account: &SeedAccount, seed: u64, now: i64) -> SeedData {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in account.account_id.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let owner = Owner {
        account_id: account.account_id.clone(),
        business_name: account.business_name.clone(),
        livemode: account.livemode,
    };
    let catalog_created = now - 800 * DAY;
    let prices = catalog();
    let catalog = Catalog {
        prices: prices
            .iter()
            .map(|spec| {
                let price = objects::price(&owner, spec, catalog_created);
                let plan = objects::plan(&owner, spec, catalog_created);
                (spec.clone(), price, plan)
            })
            .collect(),
        coupons: coupons()
            .iter()
            .map(|c| objects::coupon(&owner, c, catalog_created))
            .collect(),
    };
    let mut seeder = Seeder {
        rng: StdRng::seed_from_u64(seed ^ hash),
        window_start: now - i64::from(account.invoice_days) * DAY,
        event_start: now - EVENT_DAYS * DAY,
        now,
        prices,
        coupons: coupons(),
        out: SeedData {
            account: objects::account(&owner, now - 900 * DAY),
            products: Vec::new(),
            prices: Vec::new(),
            customers: Vec::with_capacity(account.customers),
            subscriptions: Vec::with_capacity(account.customers),
            invoices: Vec::new(),
            charges: Vec::new(),
            events: Vec::new(),
            items: Vec::with_capacity(account.customers),
            coupons: Vec::new(),
            discounts: Vec::new(),
            payment_methods: Vec::with_capacity(account.customers),
            charge_invoice: Vec::new(),
            renderer: Renderer { owner, catalog },
        },
    };
    seeder.catalog(catalog_created);
    for index in 0..account.customers {
        let plan = if account.customers >= known::COUNT && index < known::COUNT {
            fixed_plan(index)
        } else {
            rolled_plan(&mut seeder.rng, account.mix)
        };
        seeder.customer(index, plan);
    }
    seeder.out
}

impl Seeder {
    fn catalog(&mut self, created: i64) {
        let owner = &self.out.renderer.owner;
        let products = [
            (
                PRODUCT_STARTER,
                "Starter",
                "For individuals getting started",
                PRICE_STARTER_MONTHLY,
            ),
            (
                PRODUCT_PRO,
                "Pro",
                "For growing businesses",
                PRICE_PRO_MONTHLY,
            ),
            (
                PRODUCT_TEAM,
                "Team",
                "Per-seat plan with usage-based API calls",
                PRICE_TEAM_SEAT_MONTHLY,
            ),
            (PRODUCT_ADDONS, "Add-ons", "Monthly extras", ADDON_PRICES[0]),
        ];
        for (offset, (id, name, description, default_price)) in products.iter().enumerate() {
            let product = objects::product(
                owner,
                id,
                name,
                description,
                default_price,
                created + offset as i64,
            );
            self.out.products.push(product);
        }
        for (offset, (_, price, _)) in self.out.renderer.catalog.prices.iter().enumerate() {
            let mut price = price.clone();
            price["created"] = Value::from(created + 10 + offset as i64);
            self.out.prices.push(price);
        }
        self.out.coupons = self.out.renderer.catalog.coupons.clone();
    }

    /// An event for `object`, if `created` falls in the seeded event window.
    fn event(
        &mut self,
        event_type: &'static str,
        created: i64,
        object: &Arc<Seeded>,
    ) -> Option<Arc<Seeded>> {
        if created < self.event_start || created > self.now {
            return None;
        }
        let id = objects::random_id(&mut self.rng, "evt_", 24);
        Some(Arc::new(Seeded::Event(EventSeed {
            id,
            event_type,
            created,
            object: object.clone(),
        })))
    }

    fn push_event(&mut self, event_type: &'static str, created: i64, object: &Arc<Seeded>) {
        if let Some(event) = self.event(event_type, created, object) {
            self.out.events.push(event);
        }
    }

    fn customer(&mut self, index: usize, plan: Plan) {
        let rng = &mut self.rng;
        let id = match plan.id {
            Some(id) => id.to_string(),
            None => objects::random_id(rng, "cus_", 14),
        };
        let first = FIRST[rng.gen_range(0..FIRST.len())];
        let last = LAST[rng.gen_range(0..LAST.len())];
        let domain = DOMAINS[rng.gen_range(0..DOMAINS.len())];
        let mixed_case = rng.gen_bool(0.06);
        let email = match plan.email {
            Some(email) => email.to_string(),
            None if mixed_case => format!(
                "{}.{}{index}@{}",
                capitalise(first),
                capitalise(last),
                capitalise(domain)
            ),
            None => format!("{first}.{last}{index}@{domain}"),
        };
        let name = match plan.name {
            Some(name) => name.to_string(),
            None => format!("{} {}", capitalise(first), capitalise(last)),
        };
        let status = if plan.subscribed {
            Some(plan.status)
        } else {
            None
        };
        let created = match (plan.created_days_ago, status) {
            (Some(days), _) => self.now - days * DAY - rng.gen_range(0..DAY),
            (None, Some(Status::Trialing)) => self.now - rng.gen_range(60..13 * DAY),
            (None, Some(Status::Incomplete)) => self.now - rng.gen_range(3_600..20 * 3_600),
            (None, _) => self.now - rng.gen_range(DAY..720 * DAY),
        };
        // Subscribers have a card on file: their default payment method, charged by invoices.
        let payment_method = plan.subscribed.then(|| {
            let pm = format!("pm_{}", &id[4..]);
            let card = card_of(&id);
            let value = objects::payment_method(&self.out.renderer.owner, &pm, &id, card, created);
            self.out.payment_methods.push(value);
            pm
        });
        let customer = Arc::new(Seeded::Customer(CustomerSpec {
            id: id.clone(),
            email: email.clone(),
            name: name.clone(),
            created,
            currency: plan.subscribed.then(|| self.prices[plan.price].currency),
            delinquent: matches!(status, Some(Status::PastDue | Status::Unpaid)),
            payment_method,
        }));
        self.push_event("customer.created", created, &customer);
        self.out.customers.push(customer);
        if plan.subscribed {
            self.subscription(&id, &email, &name, created, &plan);
        }
    }

    fn subscription(
        &mut self,
        customer: &str,
        email: &str,
        name: &str,
        customer_created: i64,
        plan: &Plan,
    ) {
        let now = self.now;
        let rng = &mut self.rng;
        let id = objects::random_id(rng, "sub_", 24);
        let created = match plan.status {
            Status::Trialing | Status::Incomplete => customer_created + rng.gen_range(1..60),
            _ => (customer_created + rng.gen_range(1..7 * DAY))
                .min(now - 3_600)
                .max(customer_created + 1),
        };
        let canceled_at = match (plan.status, plan.canceled_days_ago) {
            (Status::Canceled, Some(days)) => Some(now - days * DAY),
            (Status::Canceled, None) => {
                let earliest = created + DAY;
                Some(if earliest >= now - 3_600 {
                    now - 60
                } else {
                    rng.gen_range(earliest..now - 3_600)
                })
            }
            _ => None,
        };
        let months = self.prices[plan.price].months();
        let trial = (plan.status == Status::Trialing).then_some((created, created + 14 * DAY));
        // Period starts: every `months` from the anchor up to now (or cancellation).
        let end = canceled_at.unwrap_or(now);
        let mut starts = Vec::new();
        match trial {
            Some((start, _)) => starts.push(start),
            None => {
                let mut k = 0;
                loop {
                    let start = add_months(created, k * months);
                    if start > end || k > 1_000 {
                        break;
                    }
                    starts.push(start);
                    k += 1;
                }
            }
        }
        let period_start = starts.last().copied().unwrap_or(created);
        let period_end = match trial {
            Some((_, trial_end)) => trial_end,
            None => add_months(period_start, months),
        };
        let discount = plan.coupon.map(|coupon| DiscountSpec {
            id: objects::random_id(rng, "di_", 24),
            coupon,
            start: created,
        });
        // The discount is an object of its own; the subscription lists it while it applies
        // (a `once` coupon is spent by the first invoice, a repeating one ends).
        let mut active_discount = None;
        if let Some(d) = &discount {
            let coupon = &self.coupons[d.coupon];
            let end = coupon
                .duration_in_months
                .filter(|_| coupon.duration == "repeating")
                .map(|m| add_months(d.start, m));
            self.out.discounts.push(objects::discount(
                &d.id, coupon.id, customer, &id, d.start, end,
            ));
            let applies = match coupon.duration {
                "once" => false,
                "repeating" => end.is_some_and(|end| end > now),
                _ => true,
            };
            if applies {
                active_discount = Some(d.clone());
            }
        }
        let item = |rng: &mut StdRng, price: usize, quantity: Option<u32>| ItemSpec {
            id: objects::random_id(rng, "si_", 14),
            price,
            quantity,
            created,
            period_start,
            period_end,
        };
        let mut items = if plan.addons {
            (FIRST_ADDON..FIRST_ADDON + MANY_ITEMS)
                .map(|price| item(rng, price, Some(1)))
                .collect()
        } else {
            vec![item(rng, plan.price, Some(plan.quantity))]
        };
        if plan.metered {
            items.push(item(rng, METERED, None));
        }
        let mut spec = SubscriptionSpec {
            id,
            customer: customer.to_string(),
            currency: self.prices[plan.price].currency.to_string(),
            created,
            status: plan.status.wire(),
            items,
            cancel_at_period_end: plan.status == Status::CancelAtPeriodEnd,
            canceled_at,
            trial,
            discount: active_discount,
            latest_invoice: None,
        };
        let ctx = InvoiceContext {
            customer,
            email,
            name,
            subscription: &spec,
            discount: discount.as_ref(),
            payment_method: format!("pm_{}", &customer[4..]),
            months,
            status: plan.status,
        };
        // The subscription's event goes before its invoices' events (same second for the first).
        let first_invoice_event = self.out.events.len();
        let last = starts.len().saturating_sub(1);
        let mut latest_invoice = None;
        for (k, start) in starts.iter().enumerate() {
            if *start >= self.window_start {
                latest_invoice = Some(self.invoice(&ctx, k, *start, k == last));
            }
        }
        spec.latest_invoice = latest_invoice;
        for item in &spec.items {
            self.out
                .items
                .push(Arc::new(Seeded::Item(spec.id.clone(), item.clone())));
        }
        let subscription = Arc::new(Seeded::Subscription(spec));
        if let Some(event) = self.event("customer.subscription.created", created, &subscription) {
            self.out.events.insert(first_invoice_event, event);
        }
        self.out.subscriptions.push(subscription);
    }

    /// Generates the invoice for the period starting at `start`, its charges and events;
    /// returns the invoice id.
    fn invoice(&mut self, ctx: &InvoiceContext<'_>, k: usize, start: i64, is_last: bool) -> String {
        let now = self.now;
        let status = ctx.status;
        let rng = &mut self.rng;
        let id = objects::random_id(rng, "in_", 24);
        let period_end = add_months(start, ctx.months);
        let mut lines = Vec::with_capacity(ctx.subscription.items.len());
        for item in &ctx.subscription.items {
            let spec = &self.prices[item.price];
            let (amount, quantity) = match (status, spec.usage_type) {
                (Status::Trialing, _) => (0, item.quantity.unwrap_or(1)),
                (_, "metered") if k == 0 => (0, 0),
                (_, "metered") => {
                    let units = rng.gen_range(0..2_500);
                    (units * spec.unit_amount, units as u32)
                }
                _ => {
                    let quantity = item.quantity.unwrap_or(1);
                    (spec.unit_amount * i64::from(quantity), quantity)
                }
            };
            lines.push(LineSpec {
                id: objects::random_id(rng, "il_", 24),
                amount,
                price: item.price,
                quantity,
                subscription_item: item.id.clone(),
                trial: status == Status::Trialing,
            });
        }
        let subtotal: i64 = lines.iter().map(|l| l.amount).sum();
        let discount = ctx.discount.map_or(0, |d| {
            self.coupons[d.coupon].amount_for(subtotal, k, ctx.months)
        });
        let mut spec = InvoiceSpec {
            id: id.clone(),
            number: format!(
                "{}-{:04}",
                ctx.customer[4..ctx.customer.len().min(12)].to_uppercase(),
                k + 1
            ),
            customer: ctx.customer.to_string(),
            customer_email: ctx.email.to_string(),
            customer_name: ctx.name.to_string(),
            subscription: Some(ctx.subscription.id.clone()),
            currency: ctx.subscription.currency.clone(),
            created: start,
            period_start: start,
            period_end: ctx.subscription.trial.map_or(period_end, |t| t.1),
            billing_reason: if k == 0 {
                "subscription_create"
            } else {
                "subscription_cycle"
            },
            lines,
            discount,
            discount_id: if discount > 0 {
                ctx.discount.map(|d| d.id.clone())
            } else {
                None
            },
            status: "paid",
            attempt_count: 0,
            paid_at: Some(start),
            payment_intent: None,
            charge: None,
            attempted_at: None,
        };
        let total = spec.total();
        let failing = is_last
            && matches!(
                status,
                Status::PastDue | Status::Unpaid | Status::Incomplete
            );
        // (when, succeeded)
        let mut attempts: Vec<(i64, bool)> = Vec::new();
        if total > 0 {
            if failing {
                let count = if status == Status::Incomplete {
                    1
                } else {
                    rng.gen_range(1..=3)
                };
                for attempt in 0..count {
                    let at =
                        (start + attempt * (DAY + rng.gen_range(0..DAY)) + rng.gen_range(1..300))
                            .min(now - 30);
                    attempts.push((at.max(start), false));
                }
            } else {
                let first = (start + rng.gen_range(1..300)).min(now - 30).max(start);
                if rng.gen_bool(0.04) {
                    attempts.push((first, false));
                    let retry = (first + rng.gen_range(3_600..2 * DAY))
                        .min(now - 10)
                        .max(first);
                    attempts.push((retry, true));
                } else {
                    attempts.push((first, true));
                }
            }
        }
        if failing && total > 0 {
            spec.status = "open";
            spec.paid_at = None;
        } else if let Some((at, _)) = attempts.last() {
            spec.paid_at = Some(*at);
        }
        spec.attempt_count = attempts.len() as u32;
        spec.attempted_at = attempts.first().map(|(at, _)| *at);
        if !attempts.is_empty() {
            spec.payment_intent = Some(objects::random_id(rng, "pi_", 24));
        }
        let mut charges = Vec::with_capacity(attempts.len());
        for (at, succeeded) in &attempts {
            let charge_id = objects::random_id(rng, "ch_", 24);
            let refund = if *succeeded && rng.gen_bool(0.03) {
                if rng.gen_bool(0.5) {
                    total
                } else {
                    (total / 2).max(1)
                }
            } else {
                0
            };
            let refunded_at = (*at + rng.gen_range(DAY..5 * DAY)).min(now - 5);
            // (Drawn to keep the seed's random stream; the card is the customer's.)
            let _ = CARDS[rng.gen_range(0..CARDS.len())];
            let (brand, last4, _, _) = card_of(ctx.customer);
            if *succeeded {
                spec.charge = Some(charge_id.clone());
            }
            self.out
                .charge_invoice
                .push((charge_id.clone(), id.clone()));
            let charge = ChargeSpec {
                id: charge_id,
                customer: ctx.customer.to_string(),
                email: ctx.email.to_string(),
                name: ctx.name.to_string(),
                invoice: Some(id.clone()),
                payment_intent: spec.payment_intent.clone().unwrap_or_default(),
                amount: total,
                currency: spec.currency.clone(),
                created: *at,
                succeeded: *succeeded,
                amount_refunded: refund,
                last4,
                brand,
                payment_method: ctx.payment_method.clone(),
            };
            charges.push((
                Arc::new(Seeded::Charge(charge)),
                *at,
                *succeeded,
                (refund > 0).then_some(refunded_at),
            ));
        }
        let invoice = Arc::new(Seeded::Invoice(spec));
        self.push_event("invoice.created", start, &invoice);
        self.push_event("invoice.finalized", start, &invoice);
        if total == 0 {
            self.push_event("invoice.paid", start, &invoice);
        }
        for (charge, at, succeeded, refunded_at) in &charges {
            if *succeeded {
                self.push_event("charge.succeeded", *at, charge);
                self.push_event("invoice.paid", *at, &invoice);
            } else {
                self.push_event("charge.failed", *at, charge);
                self.push_event("invoice.payment_failed", *at, &invoice);
            }
            if let Some(refunded_at) = refunded_at {
                self.push_event("charge.refunded", *refunded_at, charge);
            }
        }
        self.out.invoices.push(invoice);
        self.out
            .charges
            .extend(charges.into_iter().map(|(charge, ..)| charge));
        id
    }
}

struct InvoiceContext<'a> {
    customer: &'a str,
    email: &'a str,
    name: &'a str,
    subscription: &'a SubscriptionSpec,
    /// The subscription's discount, whether or not it still applies now.
    discount: Option<&'a DiscountSpec>,
    payment_method: String,
    months: u32,
    status: Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn render(data: &SeedData, list: &[Arc<Seeded>]) -> Vec<Value> {
        list.iter().map(|s| s.render(&data.renderer)).collect()
    }

    #[test]
    fn same_seed_same_data() {
        let a = generate(&SeedAccount::dev(), 7, NOW);
        let b = generate(&SeedAccount::dev(), 7, NOW);
        assert_eq!(render(&a, &a.customers), render(&b, &b.customers));
        assert_eq!(render(&a, &a.invoices), render(&b, &b.invoices));
        let c = generate(&SeedAccount::dev(), 8, NOW);
        assert_ne!(render(&a, &a.customers), render(&c, &c.customers));
    }

    #[test]
    fn dev_seed_has_the_promised_mix() {
        let data = generate(&SeedAccount::dev(), 42, NOW);
        let customers = render(&data, &data.customers);
        let subscriptions = render(&data, &data.subscriptions);
        let invoices = render(&data, &data.invoices);
        let charges = render(&data, &data.charges);
        assert_eq!(customers.len(), 300);
        assert_eq!(data.products.len(), 4);
        assert_eq!(data.prices.len(), 7 + MANY_ITEMS);
        assert_eq!(data.coupons.len(), 4);
        let statuses: Vec<&str> = subscriptions
            .iter()
            .filter_map(|s| s["status"].as_str())
            .collect();
        for wanted in ["active", "trialing", "past_due", "canceled"] {
            assert!(statuses.contains(&wanted), "no {wanted} subscription");
        }
        assert!(subscriptions.len() > 230, "most customers subscribe");
        assert!(subscriptions
            .iter()
            .any(|s| s["cancel_at_period_end"] == true));
        assert!(subscriptions
            .iter()
            .any(|s| s["items"]["data"][0]["quantity"].as_u64() > Some(1)));
        // Discounts are objects of their own, referenced by id; so are coupons.
        assert!(subscriptions.iter().all(|s| s.get("discount").is_none()));
        let discounted = subscriptions
            .iter()
            .filter(|s| !s["discounts"].as_array().unwrap().is_empty())
            .count();
        assert!(
            discounted > 20,
            "{discounted} subscriptions with a discount"
        );
        for coupon in [
            COUPON_FOREVER,
            COUPON_ONCE,
            COUPON_AMOUNT_OFF,
            COUPON_REPEATING,
        ] {
            assert!(
                data.discounts
                    .iter()
                    .any(|d| d["source"]["coupon"] == coupon),
                "a discount with {coupon}"
            );
        }
        let many = subscriptions
            .iter()
            .find(|s| s["customer"] == known::MANY_ITEMS_ID)
            .unwrap();
        assert_eq!(many["items"]["data"].as_array().unwrap().len(), 10);
        assert_eq!(many["items"]["has_more"], true);
        assert!(subscriptions
            .iter()
            .any(|s| s["items"]["data"][0]["price"]["recurring"]["interval"] == "year"));
        assert!(charges.iter().any(|c| c["status"] == "failed"));
        assert!(charges
            .iter()
            .any(|c| c["amount_refunded"].as_i64() > Some(0)));
        assert!(invoices
            .iter()
            .all(|i| i["created"].as_i64() >= Some(NOW - 90 * DAY)));
        let shared = customers
            .iter()
            .filter(|c| c["email"] == known::SHARED_EMAIL)
            .count();
        assert_eq!(shared, 2);
        let mixed = customers
            .iter()
            .filter(|c| c["email"].as_str().is_some_and(|e| e != e.to_lowercase()));
        assert!(mixed.count() > 3, "mixed-case emails present");
        // current_period_* lives on items, not on the subscription.
        let sub = &subscriptions[0];
        assert!(sub.get("current_period_end").is_none());
        assert!(sub["items"]["data"][0]["current_period_end"].as_i64() > Some(NOW));
        // Paid invoices add up: total = lines - discount, and the charge carries the total.
        let coupon_sub = subscriptions
            .iter()
            .find(|s| s["customer"] == known::FOREVER_COUPON_ID)
            .unwrap();
        let invoice = invoices
            .iter()
            .find(|i| i["id"] == coupon_sub["latest_invoice"])
            .unwrap();
        assert_eq!(invoice["status"], "paid");
        let lines: i64 = invoice["lines"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["amount"].as_i64().unwrap())
            .sum();
        let discount = (lines as f64 * 0.2).round() as i64;
        assert_eq!(invoice["total"].as_i64().unwrap(), lines - discount);
        assert_eq!(invoice["total_discount_amounts"][0]["amount"], discount);
        // The amount-off coupon takes $5 off each invoice; the repeating one only the first
        // three months (its customer started ~200 days ago).
        let amount_off_invoices: Vec<&Value> = invoices
            .iter()
            .filter(|i| i["customer"] == known::AMOUNT_OFF_ID)
            .collect();
        assert!(!amount_off_invoices.is_empty());
        for invoice in amount_off_invoices {
            assert_eq!(
                invoice["subtotal"].as_i64().unwrap() - invoice["total"].as_i64().unwrap(),
                500
            );
        }
        for invoice in invoices
            .iter()
            .filter(|i| i["customer"] == known::REPEATING_ID)
        {
            assert_eq!(invoice["subtotal"], invoice["total"]);
        }
        let repeating = subscriptions
            .iter()
            .find(|s| s["customer"] == known::REPEATING_ID)
            .unwrap();
        assert_eq!(
            repeating["discounts"],
            serde_json::json!([]),
            "the repeating discount ended"
        );
        // Index fields agree with the rendered objects.
        for (seeded, value) in data.subscriptions.iter().zip(&subscriptions) {
            let index = seeded.index(&data.renderer);
            assert_eq!(Some(index.created), value["created"].as_i64());
            assert_eq!(index.status.as_deref(), value["status"].as_str());
            assert_eq!(index.customer.as_deref(), value["customer"].as_str());
        }
    }

    #[test]
    fn events_follow_stripe_order_within_a_second() {
        let data = generate(&SeedAccount::dev(), 42, NOW);
        let events = render(&data, &data.events);
        assert!(!events.is_empty());
        assert!(events
            .iter()
            .all(|e| e["created"].as_i64() >= Some(NOW - EVENT_DAYS * DAY)));
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        let created = types.iter().position(|t| *t == "invoice.created").unwrap();
        assert_eq!(types[created + 1], "invoice.finalized");
    }
}

//! The reference dashboard (infra/dashboard, served by the dev stack at `/`) in headless Chromium:
//! the whole story a new user goes through, and the OAuth capture of issue 13 tried from a second
//! browser profile. Each step's screenshot is written under `target/screenshots/`.

use anyhow::{ensure, Context};
use integration::browser::{dashboard_stack, Browser, Chromedriver, Screenshots};
use integration::TestStack;
use serde_json::Value;
use shared::auth::Role;

/// `amount` minor units of `currency` as the page's `Intl.NumberFormat("en-US")` writes it (the
/// seeded account's currencies).
fn money(amount: i64, currency: &str) -> anyhow::Result<String> {
    let symbol = match currency {
        "usd" => "$",
        "eur" => "€",
        other => anyhow::bail!("no format for {other}"),
    };
    let (sign, abs) = if amount < 0 {
        ("-", -amount)
    } else {
        ("", amount)
    };
    let units = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    Ok(format!("{sign}{symbol}{grouped}.{:02}", abs % 100))
}

fn money_of(v: &Value) -> anyhow::Result<String> {
    money(
        v["amount"]
            .as_i64()
            .with_context(|| format!("amount of {v}"))?,
        str_of(&v["currency"], "currency")?,
    )
}

fn str_of<'a>(v: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    v.as_str()
        .with_context(|| format!("{what} is not a string"))
}

async fn api_ok(stack: &TestStack, ws: &str, path: &str) -> anyhow::Result<Value> {
    let (status, body) = stack.get(ws, Role::Viewer, path).await?;
    ensure!(status == 200, "{path} answered {status}: {body}");
    Ok(body)
}

/// The `data-*` value the page set on an element (the page's own state, as rendered).
async fn data(b: &Browser, css: &str, key: &str) -> anyhow::Result<String> {
    let v = b
        .eval(&format!(
            "(document.querySelector({css:?}) || {{dataset: {{}}}}).dataset[{key:?}] || ''"
        ))
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

async fn manual_runs_finished(b: &Browser) -> anyhow::Result<usize> {
    let v = b
        .eval(
            "[...document.querySelectorAll('#runs tbody tr')]\
             .filter(r => r.dataset.trigger === 'manual' && r.dataset.status === 'succeeded').length",
        )
        .await?;
    Ok(v.as_u64().unwrap_or(0) as usize)
}

async fn rule_rows(b: &Browser) -> anyhow::Result<Vec<String>> {
    let v = b
        .eval("[...document.querySelectorAll('#rule-table tbody tr')].map(r => r.dataset.customer)")
        .await?;
    Ok(serde_json::from_value(v)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_dashboard_story() -> anyhow::Result<()> {
    const WS: &str = "ws_browser";
    let stack = dashboard_stack().await?;
    let driver = Chromedriver::start()?;
    let shots = Screenshots::new("dashboard-story")?;
    let b = Browser::open(&driver, "owner", &stack.base_url, &shots).await?;

    // A workspace that never connected.
    b.sign_in(WS, "owner").await?;
    b.wait_text("#card-body", "Stripe is not connected").await?;
    b.shot("not-connected").await?;

    // Connect through the real redirect: dashboard -> stand-in's authorize page -> callback ->
    // back to `/?stripe=connected`. Stripe answers slowly at first, so the backfill is seen running.
    stack.stub.set_latency_ms(1500);
    b.click("#connect").await?;
    let landed = b.wait_text("#oauth-result", "Stripe is connected").await?;
    ensure!(
        data(&b, "#oauth-result", "outcome").await? == "connected",
        "{landed}"
    );
    let progress = b
        .until("the backfill to show progress", || async {
            let status = data(&b, "#backfill", "status").await?;
            let value = b
                .eval("document.querySelector('#backfill-bar').value")
                .await?;
            let value = value.as_f64().unwrap_or(0.0);
            Ok((status == "running" && value > 0.0 && value < 1.0).then_some(value))
        })
        .await?;
    let shown = b.text("#backfill-text").await?;
    ensure!(
        shown.starts_with("running ") && shown.ends_with('%'),
        "backfill text {shown:?} (progress {progress})"
    );
    b.shot("backfill-running").await?;
    stack.stub.set_latency_ms(0);
    b.wait_text("#backfill-text", "succeeded 100%").await?;

    // The card says what the API says.
    let card = api_ok(&stack, WS, "/v1/stripe/connection").await?;
    let body = b.text("#card-body").await?;
    for field in ["account_id", "business_name", "tier"] {
        let want = str_of(&card[field], field)?;
        ensure!(body.contains(want), "card lacks {field} {want:?}:\n{body}");
    }
    let mode = if card["livemode"] == true {
        "live"
    } else {
        "test"
    };
    ensure!(
        b.text("#card-body [data-field=mode]").await? == mode,
        "{body}"
    );
    ensure!(card["tier"] == "free", "a new workspace is on Free: {card}");
    let last_sync = b.text("#card-body [data-field=last-sync]").await?;
    ensure!(last_sync.ends_with(" UTC"), "last sync {last_sync:?}");
    let next_sync = b.text("#card-body [data-field=next-sync]").await?;
    ensure!(
        next_sync.contains("Re-sync now"),
        "Free has no schedule: {next_sync:?}"
    );
    b.shot("connected").await?;

    // Customer 360 by email.
    let (_, email) = stack.some_active_customer(WS).await?;
    let panel = api_ok(
        &stack,
        WS,
        &format!("/v1/stripe/customers?email={}", email.replace('+', "%2B")),
    )
    .await?;
    let c = &panel["customer"];
    b.fill("#email", &email.to_uppercase()).await?;
    b.click("#search button").await?;
    let id = str_of(&c["id"], "id")?;
    b.wait_text("#panel [data-field=id]", id).await?;
    let field = |name: &'static str| {
        let b = &b;
        async move { b.text(&format!("#panel [data-field={name}]")).await }
    };
    ensure!(field("mrr").await? == money_of(&c["mrr"])?, "{}", c["mrr"]);
    ensure!(field("ltv").await? == money_of(&c["ltv"])?, "{}", c["ltv"]);
    ensure!(field("payment-status").await? == str_of(&c["payment_status"], "status")?);
    let risk = field("churn-risk").await?;
    ensure!(risk.starts_with(str_of(&c["churn_risk"]["level"], "level")?));
    for reason in c["churn_risk"]["reasons"].as_array().into_iter().flatten() {
        ensure!(
            risk.contains(str_of(reason, "reason")?),
            "{risk} lacks {reason}"
        );
    }
    ensure!(
        field("plan").await? != "No plan",
        "an active customer has a plan"
    );
    if let Some(inv) = c["last_invoice"].as_object() {
        let shown = field("last-invoice").await?;
        ensure!(
            shown.contains(str_of(&inv["status"], "invoice status")?),
            "{shown}"
        );
    }
    let href = b
        .eval("document.querySelector('#stripe-link').href")
        .await?;
    ensure!(
        href == c["dashboard_url"],
        "Stripe link {href} vs {}",
        c["dashboard_url"]
    );
    b.shot("customer-panel").await?;

    // An email Stripe does not know, then linked by hand to the customer above.
    b.fill("#email", "nobody-here@example.invalid").await?;
    b.click("#search button").await?;
    b.wait_text("#panel", "No Stripe customer found").await?;
    b.shot("customer-not-found").await?;
    b.fill("#link-customer", id).await?;
    b.click("#link button").await?;
    b.wait_text("#panel [data-field=id]", id).await?;
    b.wait_text("#customer-msg", "Linked nobody-here@example.invalid")
        .await?;

    // Routing rules: active customers in any currency, pages of 5, the same pages the API gives.
    b.eval("(document.querySelector('#rule-status').value = 'active', true)")
        .await?;
    b.fill("#rule-currency", "").await?;
    b.fill("#rule-limit", "5").await?;
    b.click("#rule button").await?;
    let page1 = api_ok(&stack, WS, "/v1/stripe/customers?status=active&limit=5").await?;
    let ids = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["customer"]["id"].as_str().map(str::to_string))
            .collect()
    };
    let want1 = ids(&page1);
    ensure!(
        !want1.is_empty(),
        "the seeded account has active customers: {page1}"
    );
    b.until("page 1 of the rule", || async {
        Ok((rule_rows(&b).await? == want1).then_some(()))
    })
    .await?;
    b.shot("routing-rule-page-1").await?;
    let cursor = str_of(&page1["next_cursor"], "next_cursor")?;
    let page2 = api_ok(
        &stack,
        WS,
        &format!("/v1/stripe/customers?status=active&limit=5&cursor={cursor}"),
    )
    .await?;
    let want2 = ids(&page2);
    b.click("#rule-next").await?;
    b.until("page 2 of the rule", || async {
        Ok((rule_rows(&b).await? == want2).then_some(()))
    })
    .await?;
    b.wait_text("#rule-page", "page 2").await?;

    // Metrics for the chosen window, and the 90-day chart.
    b.click("#metrics-form button").await?;
    let from = b.eval("document.querySelector('#m-from').value").await?;
    let to = b.eval("document.querySelector('#m-to').value").await?;
    let metrics = api_ok(
        &stack,
        WS,
        &format!(
            "/v1/stripe/metrics?from={}&to={}&currency=usd",
            str_of(&from, "from")?,
            str_of(&to, "to")?
        ),
    )
    .await?;
    let mrr = money(metrics["mrr"].as_i64().context("mrr")?, "usd")?;
    ensure!(metrics["mrr"].as_i64() > Some(0), "seeded MRR: {metrics}");
    b.wait_text("[data-metric=mrr] .v", &mrr).await?;
    let customers = metrics["customer_count"].to_string();
    ensure!(b.text("[data-metric=customer_count] .v").await? == customers);
    let points = b
        .until("the 90-day chart", || async {
            let n = b
                .eval("(document.querySelector('#chart svg') || {dataset:{}}).dataset.points")
                .await?;
            Ok(n.as_str().and_then(|n| n.parse::<u32>().ok()))
        })
        .await?;
    ensure!(points == 90, "the chart has {points} days");
    b.shot("metrics").await?;

    // Re-sync now, three times (Free), then the limit: the button says when it comes back.
    for done in 1..=3 {
        b.click("#resync").await?;
        b.until("the manual sync to finish", || async {
            Ok((manual_runs_finished(&b).await? >= done).then_some(()))
        })
        .await?;
    }
    b.until("Re-sync now to be enabled", || async {
        let disabled = b.eval("document.querySelector('#resync').disabled").await?;
        Ok((disabled == false).then_some(()))
    })
    .await?;
    b.click("#resync").await?;
    let said = b.wait_text("#connection-msg", "manual_sync_limit").await?;
    let button = b.wait_text("#resync", "available again at").await?;
    ensure!(
        button.contains("00:00 UTC"),
        "the Free limit resets at midnight UTC: {button}"
    );
    let disabled = b.eval("document.querySelector('#resync').disabled").await?;
    ensure!(disabled == true, "Re-sync now stays disabled ({said})");
    b.shot("resync-limit").await?;

    // Role limits and tenant isolation, seen through the picker.
    b.sign_in(WS, "viewer").await?;
    b.wait_text("#card-body", str_of(&card["account_id"], "account")?)
        .await?;
    b.click("#disconnect").await?;
    b.click("#disconnect-confirm").await?;
    b.wait_text("#connection-msg", "(forbidden)").await?;
    b.shot("viewer-cannot-disconnect").await?;
    b.sign_in("ws_someone_else", "owner").await?;
    b.wait_text("#card-body", "Stripe is not connected").await?;
    b.until("the other workspace's customer list", || async {
        let shown = b.text("#rule-page").await? + &b.text("#rules-msg").await?;
        Ok((!shown.is_empty()).then_some(()))
    })
    .await?;
    ensure!(
        rule_rows(&b).await?.is_empty(),
        "another workspace sees no customers"
    );

    // Disconnect.
    b.sign_in(WS, "owner").await?;
    b.wait_text("#card-body", str_of(&card["account_id"], "account")?)
        .await?;
    b.click("#disconnect").await?;
    b.click("#disconnect-confirm").await?;
    b.wait_text("#connection-msg", "Stripe is disconnected")
        .await?;
    b.wait_text("#card-body [data-field=status]", "disconnected")
        .await?;
    b.wait_visible("#connect").await?;
    b.shot("disconnected").await?;
    let after = api_ok(&stack, WS, "/v1/stripe/connection").await?;
    ensure!(after["status"] == "disconnected", "{after}");

    b.close().await?;
    eprintln!("screenshots in {}", shots.dir().display());
    Ok(())
}

/// Issue 13's capture: the attacker starts Connect for their workspace in their own browser and
/// gets a victim, logged into Stripe in another browser profile, to open the authorize URL. The
/// callback must refuse there (`invalid_state`: the flow was started in another browser), and
/// neither workspace may change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_oauth_capture_is_refused() -> anyhow::Result<()> {
    const VICTIM: &str = "ws_victim";
    const ATTACKER: &str = "ws_attacker";
    let stack = dashboard_stack().await?;
    let driver = Chromedriver::start()?;
    let shots = Screenshots::new("oauth-capture")?;

    // The victim connects their own workspace, normally, in their browser.
    let victim = Browser::open(&driver, "victim", &stack.base_url, &shots).await?;
    victim.sign_in(VICTIM, "owner").await?;
    victim.click("#connect").await?;
    victim
        .wait_text("#oauth-result", "Stripe is connected")
        .await?;
    victim.wait_text("#backfill-text", "succeeded").await?;
    let before = api_ok(&stack, VICTIM, "/v1/stripe/connection").await?;
    victim.shot("victim-connected").await?;

    // The attacker starts the flow in their own browser profile and keeps the URL.
    let attacker = Browser::open(&driver, "attacker", &stack.base_url, &shots).await?;
    attacker.sign_in(ATTACKER, "owner").await?;
    let started = attacker
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/v1/stripe/connect', {method: 'POST', credentials: 'include',
               headers: {Authorization: 'Bearer ' + sessionStorage.getItem('token')}})
               .then(r => r.json()).then(b => done(b.authorize_url || null), () => done(null));",
            vec![],
        )
        .await?;
    let authorize_url = str_of(&started, "authorize_url")?.to_string();

    // The victim's browser opens it; Stripe (the stand-in) approves for the victim's account.
    victim.client.goto(&authorize_url).await?;
    let outcome = victim
        .until("the callback's verdict on the dashboard", || async {
            let o = data(&victim, "#oauth-result", "outcome").await?;
            Ok((!o.is_empty()).then_some(o))
        })
        .await?;
    let reason = data(&victim, "#oauth-result", "reason").await?;
    victim.shot("victim-completes-attackers-url").await?;
    let attacker_card = stack
        .get(ATTACKER, Role::Owner, "/v1/stripe/connection")
        .await?;
    ensure!(
        outcome == "error",
        "CAPTURED: the victim's browser completed the attacker's flow (dashboard says {outcome:?}); \
         the attacker's workspace now has: {} {}",
        attacker_card.0,
        attacker_card.1
    );
    ensure!(reason == "invalid_state", "refused, but as {reason:?}");
    victim
        .wait_text("#oauth-result", "started in another browser")
        .await?;

    // Nothing changed: the attacker has no connection, the victim's is as it was.
    ensure!(
        attacker_card.0 == 404 && attacker_card.1["error"]["code"] == "not_connected",
        "attacker's workspace: {} {}",
        attacker_card.0,
        attacker_card.1
    );
    let after = api_ok(&stack, VICTIM, "/v1/stripe/connection").await?;
    for field in ["account_id", "status", "tier", "banner"] {
        ensure!(
            after[field] == before[field],
            "victim's {field}: {before} -> {after}"
        );
    }
    attacker.sign_in(ATTACKER, "owner").await?;
    attacker
        .wait_text("#card-body", "Stripe is not connected")
        .await?;
    attacker.shot("attacker-still-not-connected").await?;

    // And Stripe is asked to prompt every time (docs/api.md).
    ensure!(
        authorize_url.contains("always_prompt=true"),
        "authorize_url lacks always_prompt=true: {authorize_url}"
    );
    victim.close().await?;
    attacker.close().await?;
    Ok(())
}

//! The console in a real browser (Debian's headless `chromium` driven by `chromedriver` over
//! WebDriver): sign in, the dashboard's numbers against the API's, the trace of a message sent
//! by SMTP with its timeline, a forged form refused, the Japanese console. Screenshots of each
//! page go to `target/console-screenshots/` (the pictures in `docs/console.md` are copies).
//! Fails, never skips, without the browser (`scripts/test.sh` installs it).

mod common;

use std::io::Write;

use common::*;
use testkit::http::request;
use testkit::webdriver::Driver;

fn shots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let customer = testkit::sink::Sink::start(testkit::sink::Behaviour::Accept).await;
    let admin_port = testkit::free_port();
    let (gw, _dir) = gateway("console-browser", &quoted(customer.addr), customer.addr, |c| {
        format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n",
            c.replace("\n[admin]\nlisten = \"127.0.0.1:0\"\n", "")
        )
    });
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let base = format!("http://127.0.0.1:{admin_port}");
    for i in 0..2 {
        let body = testkit::client::message(&format!("browser {i}"), "hello");
        assert_eq!(
            testkit::client::send_one(gw.addr, "a@remote.test", &["alice@acme.example"], &body).await.unwrap().code,
            250
        );
    }
    customer.wait_for(2, WAIT).await;
    let mut child = std::process::Command::new(BIN)
        .args(["--config", gw.config.to_str().unwrap(), "users", "add", "tanaka", "--role", "operator"])
        .current_dir(&gw.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"browser password 1\n").unwrap();
    assert!(child.wait().unwrap().success());
    let mut child = std::process::Command::new(BIN)
        .args(["--config", gw.config.to_str().unwrap(), "users", "add", "suzuki", "--role", "admin"])
        .current_dir(&gw.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"administrator pw 2\n").unwrap();
    assert!(child.wait().unwrap().success());

    let driver = Driver::start().await;
    let b = driver.session("en").await;
    // not signed in: the sign-in page
    b.goto(&format!("{base}/console/")).await;
    assert!(b.url().await.ends_with("/console/login"), "{}", b.url().await);
    b.screenshot(&shots().join("login-en.png")).await;
    b.type_into(&b.find("input[name=user]").await, "tanaka").await;
    b.type_into(&b.find("input[name=password]").await, "browser password 1").await;
    b.click(&b.find("button[type=submit]").await).await;
    let url = b.wait_for_url("/console/").await;
    assert!(url.ends_with("/console/"), "signed in: {url}");
    // the dashboard: the two messages, as the API counts them
    let mut inbound = String::new();
    for _ in 0..100 {
        inbound = b.text(&b.find("#inbound").await).await;
        if inbound == "2" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        b.goto(&format!("{base}/console/")).await;
    }
    let out = gw.cli(&["tokens", "create", "--name", "check", "--scope", "log:read"]);
    let secret = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("mxs_")).unwrap().to_string();
    let stats =
        request(admin, "GET", "/api/v1/log/stats?since=23h", &[("Authorization", &format!("Bearer {secret}"))], b"")
            .await
            .json();
    let api_inbound: i64 =
        stats["buckets"].as_array().unwrap().iter().map(|b| b["by_direction"]["inbound"].as_i64().unwrap_or(0)).sum();
    assert_eq!(inbound, api_inbound.to_string(), "the dashboard says what the API says");
    let bars = b.run("return document.querySelectorAll('#per-hour rect.bar').length").await;
    assert_eq!(bars, 24, "a bar per hour in the chart");
    let tallest = b.run("return Math.max(...Array.from(document.querySelectorAll('#per-hour rect.bar')).map(r => +r.getAttribute('data-count')))").await;
    assert_eq!(tallest, 2, "the chart shows the hour's two messages");
    b.screenshot(&shots().join("dashboard-en.png")).await;
    // the trace: search, then the message with its timeline
    b.goto(&format!("{base}/console/trace")).await;
    let recipient = b.find("input[name=recipient]").await;
    b.type_into(&recipient, "alice@acme.example").await;
    b.click(&b.find("form[action='/console/trace'] button").await).await;
    assert!(b.wait_for_text("browser 1").await.contains("browser 1"), "found");
    b.screenshot(&shots().join("trace-en.png")).await;
    b.click(&b.find("#results a").await).await;
    b.wait_for_text("id=\"timeline\"").await;
    let timeline = b.text(&b.find("#timeline").await).await;
    assert!(timeline.contains("alice@acme.example") && timeline.contains("delivered"), "{timeline}");
    b.screenshot(&shots().join("message-en.png")).await;
    // contracts: the list, one contract, a cancellation quoted first and then confirmed
    b.goto(&format!("{base}/console/contracts")).await;
    b.screenshot(&shots().join("contracts-en.png")).await;
    b.click(&b.find("#contracts a").await).await;
    b.wait_for_text("id=\"events\"").await;
    assert!(b.text(&b.find("#events").await).await.contains("activated"));
    b.screenshot(&shots().join("contract-en.png")).await;
    // a change from a later day, keyed into the form: planned, confirmed, in the timeline
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    let change_on = (today + chrono::Days::new(5)).to_string();
    b.click(&b.find("#edit").await).await;
    b.wait_for_text("id=\"contract-form\"").await;
    b.run(&format!(
        "document.querySelector('input[name=accounts_limit]').value = '7'; \
         document.querySelector('#effective').value = '{change_on}'; \
         document.querySelector('input[name=reason]').value = 'paper form 42';"
    ))
    .await;
    b.screenshot(&shots().join("contract-form-en.png")).await;
    b.click(&b.find("#plan").await).await;
    let planned = b.wait_for_text("id=\"plan-result\"").await;
    assert!(planned.contains("accounts_limit") && planned.contains(&change_on), "the plan: {planned}");
    b.screenshot(&shots().join("contract-plan-en.png")).await;
    b.click(&b.find("#apply").await).await;
    let url = b.wait_for_url("/console/contracts/acme").await;
    assert!(url.ends_with("/console/contracts/acme"), "{url}");
    let events = b.text(&b.find("#events").await).await;
    assert!(events.contains(&change_on) && events.contains("paper form 42"), "the change in the timeline: {events}");
    b.screenshot(&shots().join("contract-changed-en.png")).await;
    let on = (today + chrono::Days::new(10)).to_string();
    b.goto(&format!("{base}/console/contracts/acme/cancel?on={on}")).await;
    assert!(b.source().await.contains("id=\"fee\""), "the quote first");
    b.screenshot(&shots().join("cancel-quote-en.png")).await;
    b.click(&b.find("#confirm").await).await;
    let url = b.wait_for_url("/console/contracts/acme").await;
    assert!(url.ends_with("/console/contracts/acme"), "{url}");
    assert_eq!(b.text(&b.find(".state").await).await, "cancellation scheduled");
    // the nodes, with their signature release
    b.goto(&format!("{base}/console/nodes")).await;
    let mut state = String::new();
    for _ in 0..100 {
        if b.source().await.contains("class=\"node\"") {
            state = b.text(&b.find("tr.node .state").await).await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        b.goto(&format!("{base}/console/nodes")).await;
    }
    assert_eq!(state, "up");
    assert!(b.text(&b.find("#nodes").await).await.contains("builtin"));
    b.screenshot(&shots().join("nodes-en.png")).await;
    b.goto(&format!("{base}/console/detections")).await;
    b.screenshot(&shots().join("detections-en.png")).await;
    b.goto(&format!("{base}/console/queue")).await;
    assert!(b.source().await.contains("<h1>Queue"), "the queue page");
    b.screenshot(&shots().join("queue-en.png")).await;
    b.goto(&format!("{base}/console/statements")).await;
    assert!(b.source().await.contains("<h1>Statements"), "the statements page");
    b.screenshot(&shots().join("statements-en.png")).await;
    // tokens and audit are for administrators: an operator is refused
    b.goto(&format!("{base}/console/admin")).await;
    assert!(b.source().await.contains("Administrators only"), "operators are refused");
    // a form posted with a forged CSRF token is refused, the session kept
    b.run(
        "document.querySelector('nav input[name=csrf]').value = 'forged'; document.querySelector('nav form').submit();",
    )
    .await;
    let refused = b.wait_for_text("CSRF").await;
    assert!(refused.contains("CSRF"), "refused: {refused}");
    // and one posted without any CSRF token
    b.goto(&format!("{base}/console/")).await;
    b.run("document.querySelector('nav input[name=csrf]').remove(); document.querySelector('nav form').submit();")
        .await;
    let refused = b.wait_for_text("CSRF").await;
    assert!(refused.contains("CSRF"), "refused without a token: {refused}");
    b.goto(&format!("{base}/console/")).await;
    assert!(b.url().await.ends_with("/console/"), "still signed in");
    b.quit().await;
    // the console in Japanese
    let ja = driver.session("ja").await;
    ja.goto(&format!("{base}/console/login")).await;
    let heading = ja.text(&ja.find("h1").await).await;
    assert_eq!(heading, "ログイン");
    ja.type_into(&ja.find("input[name=user]").await, "suzuki").await;
    ja.type_into(&ja.find("input[name=password]").await, "administrator pw 2").await;
    ja.click(&ja.find("button[type=submit]").await).await;
    let html = ja.wait_for_text("過去24時間").await;
    assert!(html.contains("過去24時間") && html.contains("過去7日間"), "{html}");
    let week = ja.run("return document.querySelectorAll('#per-hour-7d rect.bar').length").await;
    assert_eq!(week, 168, "a bar per hour of the week");
    ja.screenshot(&shots().join("dashboard-ja.png")).await;
    ja.goto(&format!("{base}/console/contracts/new")).await;
    assert!(ja.source().await.contains("新しい契約"), "the form in Japanese");
    ja.screenshot(&shots().join("contract-new-ja.png")).await;
    // an administrator sees the tokens (the one made above, never its secret) and the audit
    ja.goto(&format!("{base}/console/admin")).await;
    let admin_page = ja.source().await;
    assert!(admin_page.contains("class=\"token\"") && !admin_page.contains(&secret), "tokens, no secret");
    assert!(admin_page.contains("contracts.change"), "the console's change is audited");
    ja.screenshot(&shots().join("admin-ja.png")).await;
    ja.quit().await;
}

//! The web console, first part: sign-in (console users, argon2 passwords, throttled), a
//! session cookie (`HttpOnly; Secure; SameSite=Strict`), a CSRF token on every
//! state-changing form, and the dashboard — server-rendered HTML with an inline SVG chart, no
//! script at all, in Japanese or English (`Accept-Language`).

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AdminState;
use crate::store::{ConsoleSession, Login};

pub(super) mod contract_form;
pub(super) mod dashboard;
pub(super) mod queue;

const COOKIE: &str = "mxs_session";

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Ja,
    En,
}

fn lang(headers: &HeaderMap) -> Lang {
    let first = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if first.starts_with("ja") { Lang::Ja } else { Lang::En }
}

/// The words of the console, in both languages.
fn t(lang: Lang, key: &str) -> &'static str {
    let (ja, en) = match key {
        "title" => ("mxshield 管理コンソール", "mxshield console"),
        "login" => ("ログイン", "Sign in"),
        "user" => ("ユーザー名", "User name"),
        "password" => ("パスワード", "Password"),
        "refused" => ("ユーザー名またはパスワードが違います。", "Wrong user name or password."),
        "throttled" => {
            ("失敗が多すぎます。しばらくしてからお試しください。", "Too many failed attempts: try again later.")
        }
        "dashboard" => ("ダッシュボード", "Dashboard"),
        "logout" => ("ログアウト", "Sign out"),
        "last24" => ("過去24時間", "Last 24 hours"),
        "inbound" => ("受信", "Inbound"),
        "outbound" => ("送信", "Outbound"),
        "refusedmail" => ("拒否", "Refused"),
        "infected" => ("ウイルス検出", "Viruses found"),
        "delivered" => ("配送済み", "Delivered"),
        "perhour" => ("時間ごとの受信数", "Messages received per hour"),
        "signedin" => ("ログイン中", "Signed in as"),
        "trace" => ("メッセージ追跡", "Message trace"),
        "search" => ("検索", "Search"),
        "since" => ("期間（例: 24h, 7d, 2026-12-01）", "Since (24h, 7d, 2026-12-01)"),
        "sender" => ("送信者", "Sender"),
        "recipient" => ("受信者", "Recipient"),
        "queue_id" => ("キューID", "Queue ID"),
        "time" => ("日時 (UTC)", "Time (UTC)"),
        "subject" => ("件名", "Subject"),
        "verdict" => ("判定", "Verdict"),
        "action" => ("処置", "Action"),
        "state" => ("状態", "State"),
        "remote" => ("配送先", "Remote"),
        "reply" => ("応答", "Reply"),
        "attempts" => ("試行回数", "Attempts"),
        "nothing" => ("該当するメッセージはありません。", "No message matches."),
        "timeline" => ("経過", "Timeline"),
        "received" => ("受信", "Received"),
        "viruses" => ("ウイルス", "Viruses"),
        "contract" => ("契約", "Contract"),
        "contracts" => ("契約", "Contracts"),
        "customer" => ("顧客", "Customer"),
        "accounts" => ("アカウント", "Accounts"),
        "starts" => ("開始日", "Starts"),
        "ends" => ("終了日", "Ends"),
        "domains" => ("ドメイン", "Domains"),
        "events" => ("履歴", "History"),
        "cancel" => ("解約", "Cancel"),
        "on" => ("解約日（サービス終了の日）", "From (the first day without service)"),
        "quote" => ("解約の見積もり", "Cancellation quote"),
        "fee" => ("違約金（税抜）", "Early-termination fee (before tax)"),
        "confirm" => ("解約を確定する", "Confirm the cancellation"),
        "readonly" => ("この役割では変更できません。", "Your role cannot change contracts."),
        "queue" => ("キュー", "Queue"),
        "detections" => ("ウイルス検出", "Detections"),
        "nodes" => ("ノード", "Nodes"),
        "statements" => ("請求書", "Statements"),
        "admin" => ("トークンと監査", "Tokens and audit"),
        "tokens" => ("APIトークン", "API tokens"),
        "audit" => ("監査ログ", "Audit log"),
        "revoke" => ("失効させる", "Revoke"),
        "adminonly" => ("管理者のみ表示できます。", "Administrators only."),
        "month" => ("月 (YYYY-MM)", "Month (YYYY-MM)"),
        "show" => ("表示", "Show"),
        "drafts" => ("下書き", "Drafts"),
        "issued" => ("発行済み", "Issued"),
        "issue" => ("この月の請求書を発行する", "Issue this month's statements"),
        "total" => ("合計（税込）", "Total (tax included)"),
        "number" => ("番号", "Number"),
        "corrects" => ("訂正元", "Corrects"),
        "nobilling" => ("価格表がありません（[billing]）。", "No price table is configured ([billing])."),
        "node" => ("ノード", "Node"),
        "signatures" => ("定義ファイル", "Signatures"),
        "age" => ("経過時間", "Age"),
        "generation" => ("契約データの世代", "Contracts generation"),
        "heartbeat" => ("最終応答 (UTC)", "Last heartbeat (UTC)"),
        "byvirus" => ("ウイルス別", "By virus"),
        "bycontract" => ("契約別", "By contract"),
        "byday" => ("日別 (UTC)", "By day (UTC)"),
        "count" => ("件数", "Count"),
        "pending" => ("未配送", "Pending"),
        "next" => ("次回試行 (UTC)", "Next attempt (UTC)"),
        "lasterror" => ("最後のエラー", "Last error"),
        "delete" => ("削除", "Delete"),
        "reason" => ("理由", "Reason"),
        "flush" => ("今すぐ再送", "Retry now"),
        "wouldretry" => ("再送するメッセージ数", "Messages that would be retried"),
        "confirmdelete" => ("削除を確定する（配送されません）", "Confirm the deletion (it will not be delivered)"),
        "confirmflush" => ("再送を確定する", "Confirm the retry"),
        "changed" => ("キューが変わりました。もう一度確認してください。", "The queue changed: check again."),
        "domain" => ("ドメイン", "Domain"),
        "last7" => ("過去7日間", "Last 7 days"),
        "conditions" => ("利用条件", "Conditions of use"),
        "kind" => ("種類", "Kind"),
        "level" => ("判定", "Level"),
        "window" => ("期間", "Window"),
        "counts" => ("計測値", "Counts"),
        "threshold" => ("基準", "Thresholds"),
        "evidence" => ("根拠", "Evidence"),
        "acknowledge" => ("確認済みにする", "Acknowledge"),
        "clear" => ("解除する（理由）", "Clear (reason)"),
        "who" => ("誰が", "Who"),
        "target" => ("対象", "Target"),
        "revokedcount" => {
            ("失効済みのトークン（mxshield tokens list で表示）:", "Revoked tokens (shown by mxshield tokens list):")
        }
        "browserlang" => ("ブラウザの言語", "Browser's language"),
        "outcomes" => ("配送の記録（試行ごと）", "Delivery outcomes, as they happened"),
        "relatedmail" => ("このメッセージについて送った通知・エラーメール", "Warnings and DSNs about this message"),
        "unscanned" => ("未検査（暗号化・制限超過・読めない）", "Not scanned (encrypted, limits, unreadable)"),
        "bounced" => ("不達", "Bounced"),
        "topviruses" => ("多いウイルス", "Top viruses"),
        "actions" => ("処置", "Actions taken"),
        "active" => ("配送待ち", "Active"),
        "deferred" => ("再送待ち", "Deferred"),
        "oldestdeferred" => ("最も古い再送待ち", "Oldest deferred"),
        "thisweek" => ("今週開始・変更・終了する契約", "Contracts starting, changing or ending this week"),
        "effective" => ("適用日", "Effective from"),
        "effectivehint" => ("（空欄は本日から）", "(empty: from today)"),
        "defaulttable" => ("標準の価格表", "the default price table"),
        "limit" => ("契約アカウント数", "Contracted accounts"),
        "sending" => (
            "送信サーバー（IPアドレスまたはネットワーク、1行に1つ）",
            "Sending servers (addresses or networks, one per line)",
        ),
        "functions" => ("利用する機能", "Functions"),
        "pricetable" => ("価格表", "Price table"),
        "encrypted" => ("暗号化された添付ファイル", "Encrypted attachments"),
        "unreadable" => ("読めない添付ファイル", "Unreadable attachments"),
        "receiving" => {
            ("受信サーバー（カンマ区切り、host:port 可）", "Receiving servers (comma-separated, host:port allowed)")
        }
        "accountnames" => ("アカウント（1行に1つ）", "Accounts (one per line)"),
        "morerows" => ("ドメインの行を増やす", "More domain rows"),
        "plan" => ("変更内容を確認", "Plan"),
        "apply" => ("この内容で確定する", "Confirm and apply"),
        "newcontract" => ("新しい契約", "New contract"),
        "changecontract" => ("契約の変更", "Change the contract"),
        "edit" => ("変更", "Change"),
        "pendingchanges" => (
            "予定されている変更（確定すると引き継がれます）:",
            "Changes scheduled for later days (carried over by this one):",
        ),
        "notchanged" => ("内容に問題があるため、何も変更していません。", "Nothing was changed:"),
        "exists" => ("この契約IDは既に存在します", "this contract id exists: change it instead"),
        "contractchanged" => (
            "この契約は他の人が変更しました。開き直してください。",
            "Someone changed this contract meanwhile: open it again.",
        ),
        "added" => ("追加", "Created"),
        "changes" => ("変更される項目", "Fields changed"),
        "carried" => ("引き継がれる予定の変更", "Scheduled change carried over"),
        "pricechange" => ("月額の変更", "Monthly fee changes"),
        "nochange" => ("変更はありません。", "Nothing would change."),
        "fromtoday" => ("本日から適用", "From today"),
        "from" => ("適用日:", "From"),
        _ => ("", ""),
    };
    if lang == Lang::Ja { ja } else { en }
}

/// HTML-escaped text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A page with the console's security headers: no script from anywhere, no framing, forms
/// only to itself.
fn page(status: StatusCode, lang: Lang, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{} — {}</title>\
         <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body>{body}</body></html>\n",
        if lang == Lang::Ja { "ja" } else { "en" },
        esc(title),
        t(lang, "title")
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

/// `GET /console/style.css`.
pub(super) async fn style() -> Response {
    let css = "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
               td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}\
               .bar{fill:#3a6ea5}.delivered{fill:#4a9a5a}.refused{fill:#c0504d}.axis{stroke:#999}\
               .k-bar{color:#3a6ea5}.k-delivered{color:#4a9a5a}.k-refused{color:#c0504d}\
               .cols{display:flex;gap:3em}.tick{font-size:10px;fill:#666}.error{color:#a00}nav form{display:inline}";
    let mut resp = css.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    resp
}

fn login_form(lang: Lang, message: Option<&str>) -> String {
    let msg = message.map(|m| format!("<p class=\"error\">{}</p>", esc(m))).unwrap_or_default();
    format!(
        "<h1>{}</h1>{msg}<form method=\"post\" action=\"/console/login\">\
         <p><label>{} <input name=\"user\" autocomplete=\"username\" required></label></p>\
         <p><label>{} <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">{}</button></p></form>",
        t(lang, "login"),
        t(lang, "user"),
        t(lang, "password"),
        t(lang, "login")
    )
}

/// `GET /console/login`.
pub(super) async fn login_page(headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    page(StatusCode::OK, lang, t(lang, "login"), &login_form(lang, None))
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
}

/// `POST /console/login`.
pub(super) async fn login(
    State(st): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = lang(&headers);
    match st.store.login(&f.user, &f.password, &peer.ip().to_string()).await {
        Ok(Login::Ok(secret, _)) => {
            let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/console/")]).into_response();
            let cookie = format!("{COOKIE}={secret}; HttpOnly; Secure; SameSite=Strict; Path=/console; Max-Age=43200");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(Login::Refused) => {
            page(StatusCode::UNAUTHORIZED, lang, t(lang, "login"), &login_form(lang, Some(t(lang, "refused"))))
        }
        Ok(Login::Throttled) => {
            page(StatusCode::TOO_MANY_REQUESTS, lang, t(lang, "login"), &login_form(lang, Some(t(lang, "throttled"))))
        }
        Err(e) => {
            tracing::error!(event = "admin_error", error = %e);
            page(StatusCode::SERVICE_UNAVAILABLE, lang, t(lang, "login"), "<p class=\"error\">503</p>")
        }
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// A signed-in console user (the extractor of every page but sign-in): the session, and the
/// page's language; the redirect to the sign-in page otherwise.
pub(super) struct SignedIn {
    s: ConsoleSession,
    lang: Lang,
}

impl SignedIn {
    /// The `403` page unless a form carries this session's CSRF token and its user may act
    /// (operators and administrators; auditors only read).
    fn refuse_unless_acting(&self, csrf: &str) -> Option<Response> {
        (csrf != self.s.csrf || self.s.role == crate::store::Role::Auditor)
            .then(|| page(StatusCode::FORBIDDEN, self.lang, "403", "<p class=\"error\">403</p>"))
    }
}

impl axum::extract::FromRequestParts<AdminState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, st: &AdminState) -> Result<Self, Response> {
        let (_, s) = session(st, &parts.headers).await?;
        // the user's own setting, else the browser's
        let lang = match s.lang.as_str() {
            "ja" => Lang::Ja,
            "en" => Lang::En,
            _ => lang(&parts.headers),
        };
        Ok(SignedIn { s, lang })
    }
}

/// The signed-in session, or the redirect to the sign-in page.
async fn session(st: &AdminState, headers: &HeaderMap) -> Result<(String, ConsoleSession), Response> {
    let to_login = || (StatusCode::SEE_OTHER, [(header::LOCATION, "/console/login")]).into_response();
    let Some(secret) = cookie(headers) else { return Err(to_login()) };
    match st.store.session(&secret).await {
        Ok(Some(s)) => Ok((secret, s)),
        _ => Err(to_login()),
    }
}

/// The logout form: its CSRF token.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/logout` (CSRF token required).
pub(super) async fn logout(State(st): State<AdminState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let (secret, s) = match session(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if f.csrf != s.csrf {
        return page(StatusCode::FORBIDDEN, lang(&headers), "403", "<p class=\"error\">CSRF</p>");
    }
    let _ = st.store.logout(&secret).await;
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/console/login")]).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("mxs_session=; HttpOnly; Secure; SameSite=Strict; Path=/console; Max-Age=0"),
    );
    resp
}

/// The language form.
#[derive(Debug, Deserialize)]
pub(super) struct LanguageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lang: String,
}

/// `POST /console/language`: the user's language from now on (`ja`, `en`, or empty for the
/// browser's); CSRF token required.
pub(super) async fn set_language(
    State(st): State<AdminState>,
    me: SignedIn,
    headers: HeaderMap,
    Form(f): Form<LanguageForm>,
) -> Response {
    if f.csrf != me.s.csrf {
        return page(StatusCode::FORBIDDEN, me.lang, "403", "<p class=\"error\">CSRF</p>");
    }
    let lang = match f.lang.as_str() {
        "ja" | "en" => f.lang.as_str(),
        _ => "",
    };
    if let Err(e) = st.store.set_language(&me.s.user, lang).await {
        tracing::error!(event = "admin_error", error = %e);
    }
    // back to the page it was chosen on, when that is a console page
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/console/").map(|i| r[i..].to_string()))
        .filter(|p| !p.contains(['\r', '\n']))
        .unwrap_or_else(|| "/console/".into());
    redirect(&back)
}

/// The navigation bar of a signed-in page, with the sign-out form (its CSRF token).
fn nav(lang: Lang, s: &ConsoleSession) -> String {
    format!(
        "<nav><strong>{title}</strong> · <a href=\"/console/\">{dash}</a> · <a href=\"/console/trace\">{trace}</a> · \
         <a href=\"/console/detections\">{detections}</a> · \
         <a href=\"/console/contracts\">{contracts}</a> · <a href=\"/console/queue\">{queue}</a> · \
         <a href=\"/console/statements\">{statements}</a> · <a href=\"/console/conditions\">{conditions}</a> · \
         <a href=\"/console/nodes\">{nodes}</a> · \
         <a href=\"/console/admin\">{admin}</a> · \
         {signed} {user} ({role}) \
         <form method=\"post\" action=\"/console/language\" id=\"language\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"lang\" value=\"ja\">日本語</button><button type=\"submit\" name=\"lang\" value=\"en\">English</button>\
         <button type=\"submit\" name=\"lang\" value=\"\">{browser}</button></form> \
         <form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">{logout}</button></form></nav>",
        title = t(lang, "title"),
        dash = t(lang, "dashboard"),
        trace = t(lang, "trace"),
        contracts = t(lang, "contracts"),
        queue = t(lang, "queue"),
        detections = t(lang, "detections"),
        nodes = t(lang, "nodes"),
        conditions = t(lang, "conditions"),
        statements = t(lang, "statements"),
        admin = t(lang, "admin"),
        signed = t(lang, "signedin"),
        user = esc(&s.user),
        role = s.role.as_str(),
        csrf = esc(&s.csrf),
        logout = t(lang, "logout"),
        browser = t(lang, "browserlang"),
    )
}

/// The trace's search form, as a GET (works without script; the URL can be shared).
#[derive(Debug, Default, Deserialize)]
pub(super) struct TraceQuery {
    since: Option<String>,
    sender: Option<String>,
    recipient: Option<String>,
    queue_id: Option<String>,
    contract: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn when(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
}

/// `GET /console/trace?since=…&sender=…&recipient=…&queue_id=…&contract=…`: what a help desk
/// needs when a customer says "my mail did not arrive" — the search, and the messages found
/// with each recipient's state, each linking to its detail.
pub(super) async fn trace(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Query(q): axum::extract::Query<TraceQuery>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let since_text = nonempty(&q.since).unwrap_or_else(|| "24h".into());
    let field = |name: &str, label: &str, value: &Option<String>| {
        format!(
            "<label>{} <input name=\"{name}\" value=\"{}\"></label> ",
            t(lang, label),
            esc(value.as_deref().unwrap_or(""))
        )
    };
    let form = format!(
        "<form method=\"get\" action=\"/console/trace\">{}{}{}{}{}<button type=\"submit\">{}</button></form>",
        field("since", "since", &Some(since_text.clone())),
        field("sender", "sender", &q.sender),
        field("recipient", "recipient", &q.recipient),
        field("queue_id", "queue_id", &q.queue_id),
        field("contract", "contract", &q.contract),
        t(lang, "search")
    );
    let now = chrono::Utc::now();
    let results = match msglog::search::parse_time(&since_text, now) {
        Err(e) => format!("<p class=\"error\">{}</p>", esc(&e)),
        Ok(since) => {
            let filter = msglog::search::Filter {
                since: Some(since),
                sender: nonempty(&q.sender),
                recipient: nonempty(&q.recipient),
                queue_id: nonempty(&q.queue_id),
                contract: nonempty(&q.contract),
                limit: 200,
                ..Default::default()
            };
            let found = st.operator.search_log(&filter).await.unwrap_or_default();
            if found.is_empty() {
                format!("<p id=\"nothing\">{}</p>", t(lang, "nothing"))
            } else {
                let rows: String = found
                    .iter()
                    .map(|f| {
                        let m = &f.summary;
                        let rcpts: Vec<String> =
                            f.recipients.iter().map(|r| format!("{} ({})", esc(&r.rcpt), esc(&r.state))).collect();
                        format!(
                            "<tr><td>{}</td><td><a href=\"/console/trace/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            when(m.at),
                            esc(&m.sender),
                            rcpts.join("<br>"),
                            esc(&m.subject),
                            esc(&m.verdict),
                            esc(&m.action),
                            id = esc(&m.queue_id),
                        )
                    })
                    .collect();
                format!(
                    "<table id=\"results\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
                    t(lang, "time"),
                    t(lang, "queue_id"),
                    t(lang, "sender"),
                    t(lang, "recipient"),
                    t(lang, "subject"),
                    t(lang, "verdict"),
                    t(lang, "action")
                )
            }
        }
    };
    let body = format!("{}<h1>{}</h1>{form}{results}", nav(lang, s), t(lang, "trace"));
    page(StatusCode::OK, lang, t(lang, "trace"), &body)
}

/// `GET /console/trace/{queue_id}`: one message — what was received and decided, and each
/// recipient's timeline (received, the attempts, where it stands).
pub(super) async fn trace_one(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let filter = msglog::search::Filter { queue_id: Some(id.clone()), limit: 1, ..Default::default() };
    let found = st.operator.search_log(&filter).await.unwrap_or_default();
    let Some(f) = found.into_iter().next() else {
        let body = format!("{}<p id=\"nothing\">{}</p>", nav(lang, s), t(lang, "nothing"));
        return page(StatusCode::NOT_FOUND, lang, t(lang, "trace"), &body);
    };
    let m = &f.summary;
    let facts = [
        ("time", when(m.at)),
        ("queue_id", m.queue_id.clone()),
        ("contract", m.contract.clone()),
        ("sender", m.sender.clone()),
        ("subject", m.subject.clone()),
        ("verdict", m.verdict.clone()),
        ("viruses", m.viruses.join(", ")),
        ("action", m.action.clone()),
        ("reply", m.reply.clone()),
    ];
    let facts: String =
        facts.iter().map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", t(lang, k), esc(v))).collect();
    let timeline: String = f
        .recipients
        .iter()
        .map(|r| {
            format!(
                "<tr class=\"rcpt\"><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.rcpt),
                t(lang, "received"),
                when(m.at),
                r.attempts,
                when(r.updated),
                esc(&r.state),
                esc(&format!("{} {}", r.remote, r.reply)),
            )
        })
        .collect();
    let (events, related) = st.operator.message_history(&id).await.unwrap_or_default();
    let events: String = events
        .iter()
        .map(|e| {
            format!(
                "<tr class=\"attempt\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(e.at),
                esc(&e.rcpt),
                esc(&e.state),
                esc(&e.remote),
                esc(&e.reply)
            )
        })
        .collect();
    let related: String = related
        .iter()
        .map(|r| {
            format!(
                "<li><a href=\"/console/trace/{id}\">{id}</a> {} {} — {}</li>",
                when(r.at),
                esc(&r.direction),
                esc(&r.subject),
                id = esc(&r.queue_id)
            )
        })
        .collect();
    let body = format!(
        "{}<h1>{}</h1><table id=\"facts\">{facts}</table><h2>{}</h2>\
         <table id=\"timeline\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{timeline}</table>\
         <h2>{attempts_h}</h2><table id=\"attempts\">{events}</table><h2>{related_h}</h2><ul id=\"related\">{related}</ul>",
        nav(lang, s),
        esc(&m.queue_id),
        t(lang, "timeline"),
        t(lang, "recipient"),
        t(lang, "received"),
        t(lang, "attempts"),
        t(lang, "time"),
        t(lang, "state"),
        t(lang, "reply"),
        attempts_h = t(lang, "outcomes"),
        related_h = t(lang, "relatedmail"),
    );
    page(StatusCode::OK, lang, t(lang, "trace"), &body)
}

/// `GET /console/contracts`: every contract with its state (derived from the dates).
pub(super) async fn contracts_page(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Query(f): axum::extract::Query<super::ContractFilter>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let today = (st.today)();
    let (list, scheduled, _) = st.operator.contracts_visible(&super::Visibility::All).await.unwrap_or_default();
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let states = ["", "applied", "active", "cancellation scheduled", "cancelled"];
    let options: String = states
        .iter()
        .map(|o| {
            let sel = if f.state.as_deref().unwrap_or("") == *o { " selected" } else { "" };
            format!("<option value=\"{o}\"{sel}>{}</option>", if o.is_empty() { "-" } else { o })
        })
        .collect();
    let search = format!(
        "<form method=\"get\" action=\"/console/contracts\" id=\"contract-search\"><label>{} <select name=\"state\">{options}</select></label> \
         <label>{} <input name=\"customer\" value=\"{}\"></label> <label>{} <input name=\"domain\" value=\"{}\"></label> \
         <button type=\"submit\">{}</button></form>",
        t(lang, "state"),
        t(lang, "customer"),
        value(&f.customer),
        t(lang, "domain"),
        value(&f.domain),
        t(lang, "search"),
    );
    let rows: String = list
        .iter()
        .filter(|c| f.keeps(c, &scheduled, today))
        .map(|c| {
            let domains: Vec<String> = c.domains.iter().map(|d| esc(&d.name)).collect();
            format!(
                "<tr><td><a href=\"/console/contracts/{id}\">{id}</a></td><td>{}</td><td class=\"state\">{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.customer),
                contracts::state_on(c, &scheduled, today),
                c.accounts_used(),
                c.accounts_limit,
                c.starts,
                c.ends.map(|e| e.to_string()).unwrap_or_default(),
                domains.join(" "),
                id = esc(&c.id),
            )
        })
        .collect();
    let new = if s.role == crate::store::Role::Auditor {
        String::new()
    } else {
        format!("<p><a id=\"new-contract\" href=\"/console/contracts/new\">{}</a></p>", t(lang, "newcontract"))
    };
    let body = format!(
        "{}<h1>{}</h1>{new}{search}<table id=\"contracts\"><tr><th>ID</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
        nav(lang, s),
        t(lang, "contracts"),
        t(lang, "customer"),
        t(lang, "state"),
        t(lang, "accounts"),
        t(lang, "starts"),
        t(lang, "ends"),
        t(lang, "domains"),
    );
    page(StatusCode::OK, lang, t(lang, "contracts"), &body)
}

/// `GET /console/contracts/{id}`: one contract, its history as events, and (for operators
/// and admins) the cancellation form — a GET that shows the quote first.
pub(super) async fn contract_page(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let today = (st.today)();
    let (list, scheduled, _) = st.operator.contracts_visible(&super::Visibility::All).await.unwrap_or_default();
    let Some(c) = list.iter().find(|c| c.id == id) else {
        return page(
            StatusCode::NOT_FOUND,
            lang,
            t(lang, "contracts"),
            &format!("{}<p id=\"nothing\">404</p>", nav(lang, s)),
        );
    };
    let revisions = st.operator.contract_history(&id).await.unwrap_or_default();
    let events = st.operator.contract_events(&id).await.unwrap_or_default();
    let rows: String = contracts::timeline(&revisions, &events, today)
        .iter()
        .map(|e| {
            format!(
                "<tr class=\"event\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&e.at),
                e.kind,
                esc(&e.detail),
                esc(&e.actor),
                esc(&e.reason)
            )
        })
        .collect();
    let cancel = if s.role == crate::store::Role::Auditor {
        format!("<p>{}</p>", t(lang, "readonly"))
    } else {
        format!(
            "<p><a id=\"edit\" href=\"/console/contracts/{id}/edit\">{edit}</a></p>\
             <h2>{}</h2><form method=\"get\" action=\"/console/contracts/{}/cancel\"><label>{} <input type=\"date\" name=\"on\" required></label> <button type=\"submit\">{}</button></form>",
            t(lang, "cancel"),
            esc(&c.id),
            t(lang, "on"),
            t(lang, "quote"),
            id = esc(&c.id),
            edit = t(lang, "edit"),
        )
    };
    let body = format!(
        "{}<h1>{} — {}</h1><p class=\"state\">{}</p><h2>{}</h2><table id=\"events\">{rows}</table>{cancel}",
        nav(lang, s),
        esc(&c.id),
        esc(&c.customer),
        contracts::state_on(c, &scheduled, today),
        t(lang, "events"),
    );
    page(StatusCode::OK, lang, t(lang, "contracts"), &body)
}

/// The day a cancellation is asked for.
#[derive(Debug, Deserialize)]
pub(super) struct CancelQuery {
    on: chrono::NaiveDate,
}

/// `GET /console/contracts/{id}/cancel?on=DATE`: the quote — nothing changes — and the form
/// that confirms it (a POST with the CSRF token).
pub(super) async fn cancel_quote(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<CancelQuery>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let req =
        crate::CancelRequest { today: (st.today)(), tables: &st.tables, actor: &s.user, reason: "", dry_run: true };
    let body = match st.operator.cancel(&id, q.on, &req).await {
        Err(e) => format!("{}<p class=\"error\">{}</p>", nav(lang, s), esc(&e.to_string())),
        Ok(quote) => {
            let lines: String = quote
                .last_lines
                .iter()
                .map(|l| format!("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&l.contract), l.from, l.amount))
                .collect();
            let confirm = if s.role == crate::store::Role::Auditor {
                format!("<p>{}</p>", t(lang, "readonly"))
            } else {
                format!(
                    "<form method=\"post\" action=\"/console/contracts/{}/cancel\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                     <input type=\"hidden\" name=\"on\" value=\"{}\"><button type=\"submit\" id=\"confirm\">{}</button></form>",
                    esc(&id),
                    esc(&s.csrf),
                    q.on,
                    t(lang, "confirm")
                )
            };
            format!(
                "{}<h1>{} — {}</h1><table id=\"quote\"><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td id=\"fee\">{}</td></tr></table>\
                 <table id=\"last-lines\">{lines}</table>{confirm}",
                nav(lang, s),
                t(lang, "quote"),
                esc(&quote.contract),
                t(lang, "on"),
                quote.ends,
                t(lang, "fee"),
                quote.fee,
            )
        }
    };
    page(StatusCode::OK, lang, t(lang, "quote"), &body)
}

/// The confirmation of a cancellation.
#[derive(Debug, Deserialize)]
pub(super) struct CancelForm {
    #[serde(default)]
    csrf: String,
    on: chrono::NaiveDate,
}

/// `POST /console/contracts/{id}/cancel`: the cancellation, recorded with its quoted fee
/// (operators and admins; the CSRF token required); audited.
pub(super) async fn cancel_confirm(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<CancelForm>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    if f.csrf != s.csrf {
        return page(StatusCode::FORBIDDEN, lang, "403", "<p class=\"error\">CSRF</p>");
    }
    if s.role == crate::store::Role::Auditor {
        return page(StatusCode::FORBIDDEN, lang, "403", &format!("<p class=\"error\">{}</p>", t(lang, "readonly")));
    }
    let actor = format!("{} (console)", s.user);
    let req =
        crate::CancelRequest { today: (st.today)(), tables: &st.tables, actor: &actor, reason: "", dry_run: false };
    let outcome = st.operator.cancel(&id, f.on, &req).await;
    let entry = crate::store::AuditEntry {
        actor,
        source: "console".into(),
        action: "contracts.cancel".into(),
        target: id.clone(),
        before: None,
        after: outcome.as_ref().ok().map(|q| format!("ends {} fee {}", q.ends, q.fee)),
        outcome: if outcome.is_ok() { "ok".into() } else { "refused".into() },
    };
    st.store.audit_or_log(&entry).await;
    match outcome {
        Ok(_) => redirect(&format!("/console/contracts/{id}")),
        Err(e) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            lang,
            t(lang, "cancel"),
            &format!("{}<p class=\"error\">{}</p>", nav(lang, s), esc(&e.to_string())),
        ),
    }
}

fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The window of the detections page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct DetectionsQuery {
    since: Option<String>,
}

/// `GET /console/detections?since=7d`: the viruses found, counted by virus, by contract and by
/// day, each linking into the trace (the messages in which a virus was found, at most 5,000 of
/// the window).
pub(super) async fn detections(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Query(q): axum::extract::Query<DetectionsQuery>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let since_text = nonempty(&q.since).unwrap_or_else(|| "7d".into());
    let since = match msglog::search::parse_time(&since_text, chrono::Utc::now()) {
        Ok(t) => t,
        Err(e) => {
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                lang,
                t(lang, "detections"),
                &format!("{}<p class=\"error\">{}</p>", nav(lang, s), esc(&e)),
            );
        }
    };
    let filter = msglog::search::Filter { since: Some(since), infected: true, limit: 5000, ..Default::default() };
    let found = st.operator.search_log(&filter).await.unwrap_or_default();
    let mut by_virus: std::collections::BTreeMap<String, i64> = Default::default();
    let mut by_contract: std::collections::BTreeMap<String, i64> = Default::default();
    let mut by_day: std::collections::BTreeMap<String, i64> = Default::default();
    for f in &found {
        for v in &f.summary.viruses {
            *by_virus.entry(v.clone()).or_default() += 1;
        }
        *by_contract.entry(f.summary.contract.clone()).or_default() += 1;
        *by_day.entry(when(f.summary.at).chars().take(10).collect()).or_default() += 1;
    }
    let since_param = esc(&since_text);
    let table = |id: &str, key: &str, map: &std::collections::BTreeMap<String, i64>, link: &dyn Fn(&str) -> String| {
        let mut rows: Vec<(&String, &i64)> = map.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let rows: String = rows.iter().map(|(k, n)| format!("<tr><td>{}</td><td>{n}</td></tr>", link(k))).collect();
        format!(
            "<h2>{}</h2><table id=\"{id}\"><tr><th></th><th>{}</th></tr>{rows}</table>",
            t(lang, key),
            t(lang, "count")
        )
    };
    let plain = |k: &str| esc(k);
    let to_trace =
        |k: &str| format!("<a href=\"/console/trace?since={since_param}&amp;contract={}\">{}</a>", esc(k), esc(k));
    let body = format!(
        "{}<h1>{}</h1>{}{}{}",
        nav(lang, s),
        t(lang, "detections"),
        table("by-virus", "byvirus", &by_virus, &plain),
        table("by-contract", "bycontract", &by_contract, &to_trace),
        table("by-day", "byday", &by_day, &plain),
    );
    page(StatusCode::OK, lang, t(lang, "detections"), &body)
}

/// `GET /console/conditions`: the conditions of use measured per contract — each finding with
/// its level, window, raw counts, the thresholds applied and its evidence, never a bare verdict.
pub(super) async fn conditions_page(State(st): State<AdminState>, me: SignedIn) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let now = chrono::Utc::now().timestamp();
    let findings = match st.operator.conditions(None, &st.conditions, &st.store, now).await {
        Ok(f) => f,
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                lang,
                t(lang, "conditions"),
                &format!("{}<p class=\"error\">{}</p>", nav(lang, s), esc(&e.to_string())),
            );
        }
    };
    let acting = me.s.role != crate::store::Role::Auditor;
    let rows: String = findings
        .iter()
        .map(|f| {
            let counts: Vec<String> = f
                .counts
                .iter()
                .map(|(k, v)| if k.starts_with("rate") { format!("{k} {:.1} %", v * 100.0) } else { format!("{k} {v}") })
                .collect();
            let level = serde_json::to_value(f.level).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let target = format!("/console/conditions/{}/{}", esc(&f.contract), f.kind);
            let csrf = format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&s.csrf));
            let forms = match f.state {
                crate::conditions::State::Open | crate::conditions::State::Acknowledged if acting => {
                    let ack = if f.state == crate::conditions::State::Open {
                        format!(
                            "<form method=\"post\" action=\"{target}/acknowledge\" class=\"acknowledge\">{csrf}\
                             <button>{}</button></form>",
                            t(lang, "acknowledge")
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "{ack}<form method=\"post\" action=\"{target}/clear\" class=\"clear\">{csrf}\
                         <input name=\"reason\" required><button>{}</button></form>",
                        t(lang, "clear")
                    )
                }
                _ => String::new(),
            };
            format!(
                "<tr class=\"finding {level}\" data-kind=\"{}\"><td><a href=\"/console/contracts/{c}\">{c}</a></td><td>{}</td><td class=\"level\">{level}</td>\
                 <td class=\"state\">{}{forms}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f.kind,
                f.kind,
                f.state.as_str(),
                esc(&f.window),
                esc(&counts.join(", ")),
                esc(&f.threshold),
                esc(&f.evidence.join(" / ")),
                c = esc(&f.contract),
            )
        })
        .collect();
    let body = format!(
        "{}<h1>{}</h1><table id=\"findings\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
        nav(lang, s),
        t(lang, "conditions"),
        t(lang, "contract"),
        t(lang, "kind"),
        t(lang, "level"),
        t(lang, "state"),
        t(lang, "window"),
        t(lang, "counts"),
        t(lang, "threshold"),
        t(lang, "evidence"),
    );
    page(StatusCode::OK, lang, t(lang, "conditions"), &body)
}

/// The form acknowledging or clearing a finding.
#[derive(Debug, Deserialize)]
pub(super) struct FindingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/conditions/{contract}/{kind}/{acknowledge|clear}` (operators and admins;
/// the CSRF token required; a clearing needs its reason); audited.
pub(super) async fn handle_finding(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Path((contract, kind, action)): axum::extract::Path<(String, String, String)>,
    Form(f): Form<FindingForm>,
) -> Response {
    if let Some(refused) = me.refuse_unless_acting(&f.csrf) {
        return refused;
    }
    let lang = me.lang;
    let Some(how) = crate::conditions::Handling::parse(&action) else {
        return page(StatusCode::NOT_FOUND, lang, "404", "<p class=\"error\">404</p>");
    };
    if !crate::conditions::KINDS.contains(&kind.as_str())
        || (how == crate::conditions::Handling::Clear && f.reason.trim().is_empty())
    {
        return page(StatusCode::UNPROCESSABLE_ENTITY, lang, "422", "<p class=\"error\">422</p>");
    }
    let actor = format!("{} (console)", me.s.user);
    match st.store.handle_finding(&contract, &kind, how, &actor, "console", &f.reason).await {
        Ok(_) => redirect("/console/conditions"),
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            t(lang, "conditions"),
            &format!("{}<p class=\"error\">{}</p>", nav(lang, &me.s), esc(&e.to_string())),
        ),
    }
}

/// `GET /console/nodes`: every node with its state (as `mxshield nodes` derives it), its
/// signature release and that release's age, its contracts generation and queue.
pub(super) async fn nodes_page(State(st): State<AdminState>, me: SignedIn) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let down_after = &st.down_after;
    let all = st.node_list().await.unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let rows: String = all
        .iter()
        .map(|n| {
            let age = if n.signatures_at > 0 {
                humanize(now - n.signatures_at)
            } else {
                "-".into()
            };
            format!(
                "<tr class=\"node\"><td>{}</td><td class=\"state\">{}</td><td>{}</td><td>{age}</td><td>{}</td><td>{}+{}</td><td>{}</td></tr>",
                esc(&n.id),
                store::nodes::state(n, &all, *down_after, now),
                esc(&n.signatures),
                n.contracts_generation,
                n.queue_active,
                n.queue_deferred,
                when(n.heartbeat),
            )
        })
        .collect();
    let body = format!(
        "{}<h1>{}</h1><table id=\"nodes\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
        nav(lang, s),
        t(lang, "nodes"),
        t(lang, "node"),
        t(lang, "state"),
        t(lang, "signatures"),
        t(lang, "age"),
        t(lang, "generation"),
        t(lang, "queue"),
        t(lang, "heartbeat"),
    );
    page(StatusCode::OK, lang, t(lang, "nodes"), &body)
}

/// A duration in seconds as the largest whole unit (`3 h`, `2 d`).
fn humanize(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// The month of the statements page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct MonthQuery {
    month: Option<String>,
}

fn month_or_this(q: &MonthQuery, today: chrono::NaiveDate) -> Option<chrono::NaiveDate> {
    match nonempty(&q.month) {
        None => chrono::Datelike::with_day(&today, 1),
        Some(m) => chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").ok(),
    }
}

/// `GET /console/statements?month=YYYY-MM`: the month's drafts (each customer's total), the
/// statements issued for it, CSV links, and (operators and admins) the form that issues them.
pub(super) async fn statements_page(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Query(q): axum::extract::Query<MonthQuery>,
) -> Response {
    use chrono::Datelike;
    let (s, lang) = (&me.s, me.lang);
    let Some(first) = month_or_this(&q, (st.today)()) else {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            lang,
            t(lang, "statements"),
            &format!("{}<p class=\"error\">{}</p>", nav(lang, s), t(lang, "month")),
        );
    };
    let month = format!("{:04}-{:02}", first.year(), first.month());
    let form = format!(
        "<form method=\"get\" action=\"/console/statements\"><label>{} <input name=\"month\" value=\"{month}\"></label> <button type=\"submit\">{}</button></form>",
        t(lang, "month"),
        t(lang, "show")
    );
    let drafts = if st.tables.is_empty() {
        format!("<p>{}</p>", t(lang, "nobilling"))
    } else {
        match st.operator.statement_docs(first, &st.tables, st.rounding, &st.issuer).await {
            Err(e) => format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
            Ok(docs) => {
                let rows: String = docs
                    .iter()
                    .map(|d| {
                        format!(
                            "<tr class=\"draft\"><td>{}</td><td>{}</td></tr>",
                            esc(&d.customer),
                            d.totals.as_ref().map_or(0, |t| t.total)
                        )
                    })
                    .collect();
                let issue = if s.role == crate::store::Role::Auditor || docs.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<form method=\"post\" action=\"/console/statements/issue\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                         <input type=\"hidden\" name=\"month\" value=\"{month}\"><button type=\"submit\" id=\"issue\">{}</button></form>",
                        esc(&s.csrf),
                        t(lang, "issue")
                    )
                };
                format!(
                    "<h2>{}</h2><table id=\"drafts\"><tr><th>{}</th><th>{}</th></tr>{rows}</table>{issue}",
                    t(lang, "drafts"),
                    t(lang, "customer"),
                    t(lang, "total")
                )
            }
        }
    };
    let issued = st.operator.issued_statements(Some(&month)).await.unwrap_or_default();
    let rows: String = issued
        .iter()
        .map(|(i, _)| {
            format!(
                "<tr class=\"issued\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                crate::statement_number(i.number),
                esc(&i.customer),
                i.total,
                esc(&i.issued_at),
                i.corrects.map(crate::statement_number).unwrap_or_default()
            )
        })
        .collect();
    let body = format!(
        "{}<h1>{}</h1>{form}{drafts}<h2>{}</h2><table id=\"issued\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>\
         <p><a href=\"/console/statements.csv?month={month}\">CSV</a></p>",
        nav(lang, s),
        t(lang, "statements"),
        t(lang, "issued"),
        t(lang, "number"),
        t(lang, "customer"),
        t(lang, "total"),
        t(lang, "time"),
        t(lang, "corrects"),
    );
    page(StatusCode::OK, lang, t(lang, "statements"), &body)
}

/// `GET /console/statements.csv?month=YYYY-MM`: the month's issued statements as CSV (the
/// CLI's and the API's CSV).
pub(super) async fn statements_csv(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Query(q): axum::extract::Query<MonthQuery>,
) -> Response {
    use chrono::Datelike;
    let Some(first) = month_or_this(&q, (st.today)()) else {
        return page(StatusCode::UNPROCESSABLE_ENTITY, me.lang, "CSV", "<p class=\"error\">month</p>");
    };
    let month = format!("{:04}-{:02}", first.year(), first.month());
    let issued = st.operator.issued_statements(Some(&month)).await.unwrap_or_default();
    let shown: Vec<_> = issued.iter().map(|(i, d)| (Some(i), d)).collect();
    let mut resp = crate::statements_csv(&shown).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    resp
}

/// The issuing form.
#[derive(Debug, Deserialize)]
pub(super) struct IssueForm {
    #[serde(default)]
    csrf: String,
    month: String,
}

/// `POST /console/statements/issue`: the month's statements issued (operators and admins; the
/// CSRF token required); audited.
pub(super) async fn statements_issue(State(st): State<AdminState>, me: SignedIn, Form(f): Form<IssueForm>) -> Response {
    let (s, lang) = (&me.s, me.lang);
    if let Some(refused) = me.refuse_unless_acting(&f.csrf) {
        return refused;
    }
    let Some(first) = chrono::NaiveDate::parse_from_str(&format!("{}-01", f.month), "%Y-%m-%d").ok() else {
        return page(StatusCode::UNPROCESSABLE_ENTITY, lang, "422", "<p class=\"error\">month</p>");
    };
    let actor = format!("{} (console)", s.user);
    let result = match st.operator.statement_docs(first, &st.tables, st.rounding, &st.issuer).await {
        Ok(docs) => st.operator.issue_statements(&docs, &actor).await,
        Err(e) => Err(e),
    };
    let entry = crate::store::AuditEntry {
        actor,
        source: "console".into(),
        action: "statements.issue".into(),
        target: f.month.clone(),
        before: None,
        after: result.as_ref().ok().map(|v| {
            v.iter()
                .filter(|(_, new)| *new)
                .map(|(i, _)| crate::statement_number(i.number))
                .collect::<Vec<_>>()
                .join(",")
        }),
        outcome: if result.is_ok() { "ok".into() } else { "refused".into() },
    };
    st.store.audit_or_log(&entry).await;
    match result {
        Ok(_) => redirect(&format!("/console/statements?month={}", esc(&f.month))),
        Err(e) => page(
            StatusCode::CONFLICT,
            lang,
            t(lang, "statements"),
            &format!("{}<p class=\"error\">{}</p>", nav(lang, s), esc(&e.to_string())),
        ),
    }
}

/// `GET /console/admin` (administrators): the API tokens (never their secrets) with a revoke
/// form each, and the newest 200 entries of the audit log.
/// The audit search of the tokens-and-audit page (a GET form).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<String>,
}

pub(super) async fn admin_page(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    if s.role != crate::store::Role::Admin {
        return page(
            StatusCode::FORBIDDEN,
            lang,
            t(lang, "admin"),
            &format!("{}<p class=\"error\">{}</p>", nav(lang, s), t(lang, "adminonly")),
        );
    }
    // the tokens in force (revoked ones, among them the console's own short-lived ones, are in
    // `mxshield tokens list`)
    let tokens = st.store.tokens().await.unwrap_or_default();
    let revoked = tokens.iter().filter(|t| t.revoked_at.is_some()).count();
    let rows: String = tokens
        .iter()
        .filter(|t| t.revoked_at.is_none())
        .map(|tok| {
            let scopes: Vec<String> = tok.scopes.iter().map(|x| x.to_string()).collect();
            let revoke = if tok.revoked_at.is_none() {
                format!(
                    "<form method=\"post\" action=\"/console/admin/tokens/{id}/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                     <button type=\"submit\">{}</button></form>",
                    esc(&s.csrf),
                    t(lang, "revoke"),
                    id = esc(&tok.id),
                )
            } else {
                esc(tok.revoked_at.as_deref().unwrap_or_default())
            };
            format!(
                "<tr class=\"token\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
                esc(&tok.id),
                esc(&tok.name),
                esc(&scopes.join(",")),
                esc(&tok.contracts.join(",")),
                esc(tok.last_used_at.as_deref().unwrap_or("-")),
            )
        })
        .collect();
    let filter = crate::store::AuditFilter {
        actor: nonempty(&q.actor),
        action: nonempty(&q.action),
        target: nonempty(&q.target),
        since: nonempty(&q.since),
        limit: 200,
    };
    let audit = st.store.audit_search(&filter).await.unwrap_or_default();
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let search = format!(
        "<form method=\"get\" action=\"/console/admin\" id=\"audit-search\">\
         <label>{} <input name=\"actor\" value=\"{}\"></label> <label>{} <input name=\"action\" value=\"{}\" placeholder=\"contracts.change\"></label> \
         <label>{} <input name=\"target\" value=\"{}\"></label> <label>{} <input name=\"since\" value=\"{}\" placeholder=\"2026-12-01\"></label> \
         <button type=\"submit\">{}</button></form>",
        t(lang, "who"),
        value(&q.actor),
        t(lang, "action"),
        value(&q.action),
        t(lang, "target"),
        value(&q.target),
        t(lang, "from"),
        value(&q.since),
        t(lang, "search"),
    );
    let log: String = audit
        .iter()
        .map(|(at, e)| {
            format!(
                "<tr class=\"audit\"><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
                esc(at),
                esc(&e.actor),
                esc(&e.source),
                esc(&e.action),
                esc(&e.target),
                esc(&e.outcome)
            )
        })
        .collect();
    let body = format!(
        "{}<h1>{}</h1><h2>{}</h2><table id=\"tokens\">{rows}</table><p>{} {revoked}</p><h2>{}</h2>{search}<table id=\"audit\">{log}</table>",
        nav(lang, s),
        t(lang, "admin"),
        t(lang, "tokens"),
        t(lang, "revokedcount"),
        t(lang, "audit"),
    );
    page(StatusCode::OK, lang, t(lang, "admin"), &body)
}

/// `POST /console/admin/tokens/{id}/revoke` (administrators; CSRF): the token stops working at
/// once; audited.
pub(super) async fn revoke_token(
    State(st): State<AdminState>,
    me: SignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let (s, lang) = (&me.s, me.lang);
    if f.csrf != s.csrf || s.role != crate::store::Role::Admin {
        return page(StatusCode::FORBIDDEN, lang, "403", "<p class=\"error\">403</p>");
    }
    let revoked = st.store.revoke(&id).await.unwrap_or(false);
    let entry = crate::store::AuditEntry {
        actor: format!("{} (console)", s.user),
        source: "console".into(),
        action: "tokens.revoke".into(),
        target: id,
        before: None,
        after: None,
        outcome: if revoked { "ok".into() } else { "no such token still valid".into() },
    };
    st.store.audit_or_log(&entry).await;
    redirect("/console/admin")
}

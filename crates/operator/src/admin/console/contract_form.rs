//! The console's contract forms: create a contract, and change one from an effective date —
//! what the staff key in from the paper forms. A form is first planned (a dry run: what
//! changes, the scheduled revisions carried over, the price-range changes), then confirmed;
//! both are POSTs with the CSRF token, auditors only read. The form becomes the API's JSON
//! body and goes through the same function as `PUT /api/v1/contracts/{id}` and
//! `contracts apply`, so the rules and the words are the CLI's; a change carries the
//! contract's ETag and is refused when someone changed the contract in between.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Lang, SignedIn, esc, nav, page, redirect, t};
use crate::admin::write::{etag, pointer, to_contract_toml};
use crate::admin::{AdminState, Visibility};
use crate::store::{AuditEntry, Role};

/// Domain rows a form shows by default (`?rows=N` shows more, up to [`MAX_ROWS`]).
const ROWS: usize = 3;
/// The most domain rows a form takes.
const MAX_ROWS: usize = 100;

/// A submitted form, as its fields in order (the domain rows are `d0_name`, `d0_servers`,
/// `d0_accounts`, `d1_name` …).
type Fields = Vec<(String, String)>;

fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// Names separated by commas, spaces or line breaks.
fn names(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

/// The form as the API's JSON body of a contract (`effective` and `reason` included).
fn body_of(f: &Fields, id: &str) -> Value {
    let mut domains = Vec::new();
    for i in 0..MAX_ROWS {
        let name = field(f, &format!("d{i}_name")).trim();
        if name.is_empty() {
            continue;
        }
        domains.push(json!({
            "name": name,
            "receiving_servers": names(field(f, &format!("d{i}_servers"))),
            "accounts": names(field(f, &format!("d{i}_accounts"))),
        }));
    }
    let limit = field(f, "accounts_limit").trim();
    let mut functions = Vec::new();
    for name in ["inbound", "outbound"] {
        if !field(f, &format!("fn_{name}")).is_empty() {
            functions.push(name);
        }
    }
    let mut body = json!({
        "id": id,
        "customer": field(f, "customer"),
        // a number when it is one; otherwise the text, for the reader to say what is wrong
        "accounts_limit": limit.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(limit)),
        "starts": field(f, "starts"),
        "sending_servers": names(field(f, "sending_servers")),
        "allow_wide_sending_networks": !field(f, "allow_wide").is_empty(),
        "functions": functions,
        "encrypted_attachments": field(f, "encrypted"),
        "unreadable_attachments": field(f, "unreadable"),
        "domains": domains,
        "reason": field(f, "reason"),
    });
    for (key, name) in [("price_table", "price_table"), ("ends", "ends"), ("effective", "effective")] {
        let v = field(f, name).trim();
        if !v.is_empty() {
            body[key] = Value::from(v);
        }
    }
    body
}

/// A contract as the form's fields.
fn fields_of(c: &contracts::Contract) -> Fields {
    let mut f: Fields = vec![
        ("customer".into(), c.customer.clone()),
        ("accounts_limit".into(), c.accounts_limit.to_string()),
        ("starts".into(), c.starts.to_string()),
        ("ends".into(), c.ends.map(|e| e.to_string()).unwrap_or_default()),
        ("sending_servers".into(), c.sending_servers.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("\n")),
        ("price_table".into(), c.price_table.clone().unwrap_or_default()),
        ("encrypted".into(), c.encrypted.as_str().into()),
        ("unreadable".into(), c.unreadable.as_str().into()),
    ];
    if c.wide_sending_networks {
        f.push(("allow_wide".into(), "on".into()));
    }
    for name in c.functions.names() {
        f.push((format!("fn_{name}"), "on".into()));
    }
    for (i, d) in c.domains.iter().enumerate() {
        f.push((format!("d{i}_name"), d.name.clone()));
        f.push((
            format!("d{i}_servers"),
            d.receiving_servers.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", "),
        ));
        f.push((format!("d{i}_accounts"), d.accounts.join("\n")));
    }
    f
}

/// A JSON pointer into the body (`/domains/1/accounts`) in the form's words.
fn where_in_form(lang: Lang, p: &str) -> String {
    let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["domains", i, rest @ ..] => {
            let n = i.parse::<usize>().map(|i| i + 1).unwrap_or(0);
            format!("{} {n} {}", t(lang, "domain"), rest.join(" "))
        }
        _ => parts.join(" "),
    }
}

/// What a form is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Change,
}

/// The form, filled with `f`; `notice` above it (errors, or the plan with the confirm
/// button).
fn form_html(st: &AdminState, lang: Lang, csrf: &str, shown: &Shown<'_>) -> String {
    let Shown { kind, id, fields: f, rows, planned } = *shown;
    let v = |name: &str| esc(field(f, name));
    let checked = |name: &str| if field(f, name).is_empty() { "" } else { " checked" };
    let select = |name: &str| {
        let cur = field(f, name);
        ["pass", "refuse"]
            .iter()
            .map(|o| format!("<option{}>{o}</option>", if *o == cur { " selected" } else { "" }))
            .collect::<String>()
    };
    let mut tables = format!("<option value=\"\">{}</option>", t(lang, "defaulttable"));
    for name in st.tables.tables.keys().filter(|n| !n.is_empty()) {
        let sel = if field(f, "price_table") == name { " selected" } else { "" };
        tables.push_str(&format!("<option{sel}>{}</option>", esc(name)));
    }
    let used = (0..MAX_ROWS).filter(|i| !field(f, &format!("d{i}_name")).is_empty()).max().map_or(0, |i| i + 1);
    let rows = rows.max(used + 1).min(MAX_ROWS);
    let domain_rows: String = (0..rows)
        .map(|i| {
            format!(
                "<tr><td><input name=\"d{i}_name\" value=\"{}\"></td><td><input name=\"d{i}_servers\" value=\"{}\" size=\"40\"></td>\
                 <td><textarea name=\"d{i}_accounts\" rows=\"2\" cols=\"30\">{}</textarea></td></tr>",
                v(&format!("d{i}_name")),
                v(&format!("d{i}_servers")),
                v(&format!("d{i}_accounts")),
            )
        })
        .collect();
    let (action, id_field, date_field) = match kind {
        Kind::Create => (
            "/console/contracts/new".to_string(),
            format!(
                "<p><label>ID <input name=\"id\" value=\"{}\" required pattern=\"[A-Za-z0-9._-]{{1,64}}\"></label></p>",
                esc(id)
            ),
            format!(
                "<p><label>{} <input type=\"date\" name=\"starts\" value=\"{}\" required></label></p>",
                t(lang, "starts"),
                v("starts")
            ),
        ),
        Kind::Change => (
            format!("/console/contracts/{}/edit", esc(id)),
            format!(
                "<input type=\"hidden\" name=\"etag\" value=\"{}\"><input type=\"hidden\" name=\"starts\" value=\"{}\">\
                 <input type=\"hidden\" name=\"ends\" value=\"{}\">",
                v("etag"),
                v("starts"),
                v("ends")
            ),
            format!(
                "<p><label>{} <input type=\"date\" name=\"effective\" id=\"effective\" value=\"{}\"></label> {}</p>",
                t(lang, "effective"),
                v("effective"),
                t(lang, "effectivehint")
            ),
        ),
    };
    format!(
        "<form method=\"post\" action=\"{action}\" id=\"contract-form\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         {id_field}\
         <p><label>{customer} <input name=\"customer\" value=\"{cv}\" required size=\"40\"></label></p>\
         <p><label>{limit} <input name=\"accounts_limit\" value=\"{lv}\" required inputmode=\"numeric\"></label></p>\
         {date_field}\
         <p><label>{sending}<br><textarea name=\"sending_servers\" rows=\"3\" cols=\"40\">{sv}</textarea></label></p>\
         <p><label><input type=\"checkbox\" name=\"allow_wide\"{wide}> allow_wide_sending_networks</label></p>\
         <p>{functions}: <label><input type=\"checkbox\" name=\"fn_inbound\"{fin}> inbound</label> \
         <label><input type=\"checkbox\" name=\"fn_outbound\"{fout}> outbound</label></p>\
         <p><label>{price} <select name=\"price_table\">{tables}</select></label></p>\
         <p><label>{enc} <select name=\"encrypted\">{encs}</select></label> \
         <label>{unr} <select name=\"unreadable\">{unrs}</select></label></p>\
         <h2>{domains}</h2><table id=\"domain-rows\"><tr><th>{dname}</th><th>{dservers}</th><th>{daccounts}</th></tr>{domain_rows}</table>\
         <p><a href=\"?rows={more}\">{morerows}</a></p>\
         <p><label>{reason} <input name=\"reason\" value=\"{rv}\" size=\"60\"></label></p>\
         <p><button type=\"submit\" name=\"step\" value=\"{step}\" id=\"{step}\">{button}</button></p></form>",
        csrf = esc(csrf),
        customer = t(lang, "customer"),
        cv = v("customer"),
        limit = t(lang, "limit"),
        lv = v("accounts_limit"),
        sending = t(lang, "sending"),
        sv = v("sending_servers"),
        wide = checked("allow_wide"),
        functions = t(lang, "functions"),
        fin = checked("fn_inbound"),
        fout = checked("fn_outbound"),
        price = t(lang, "pricetable"),
        enc = t(lang, "encrypted"),
        encs = select("encrypted"),
        unr = t(lang, "unreadable"),
        unrs = select("unreadable"),
        domains = t(lang, "domains"),
        dname = t(lang, "domain"),
        dservers = t(lang, "receiving"),
        daccounts = t(lang, "accountnames"),
        more = (rows + 5).min(MAX_ROWS),
        morerows = t(lang, "morerows"),
        reason = t(lang, "reason"),
        rv = v("reason"),
        step = if planned { "apply" } else { "plan" },
        button = t(lang, if planned { "apply" } else { "plan" }),
    )
}

/// `?rows=N`: how many domain rows to show.
#[derive(Debug, Default, Deserialize)]
pub(in crate::admin) struct Rows {
    rows: Option<usize>,
}

/// A form as shown: for what, filled with what, how many domain rows, and whether it was
/// planned (the confirm button in place of the plan button).
#[derive(Clone, Copy)]
struct Shown<'a> {
    kind: Kind,
    id: &'a str,
    fields: &'a Fields,
    rows: usize,
    planned: bool,
}

fn form_page(st: &AdminState, me: &SignedIn, shown: &Shown<'_>, notice: &str) -> String {
    let (kind, id) = (shown.kind, shown.id);
    let heading = match kind {
        Kind::Create => t(me.lang, "newcontract").to_string(),
        Kind::Change => format!("{} — {}", t(me.lang, "changecontract"), esc(id)),
    };
    let body = if me.s.role == Role::Auditor {
        format!("<p>{}</p>", t(me.lang, "readonly"))
    } else {
        form_html(st, me.lang, &me.s.csrf, shown)
    };
    format!("{}<h1>{heading}</h1>{notice}{body}", nav(me.lang, &me.s))
}

/// `GET /console/contracts/new`: the empty form (both functions, `pass` policies, today as
/// the first day).
pub(in crate::admin) async fn new_page(State(st): State<AdminState>, me: SignedIn, Query(q): Query<Rows>) -> Response {
    let f: Fields = vec![
        ("starts".into(), (st.today)().to_string()),
        ("fn_inbound".into(), "on".into()),
        ("fn_outbound".into(), "on".into()),
        ("encrypted".into(), "pass".into()),
        ("unreadable".into(), "pass".into()),
    ];
    let shown = Shown { kind: Kind::Create, id: "", fields: &f, rows: q.rows.unwrap_or(ROWS), planned: false };
    let html = form_page(&st, &me, &shown, "");
    page(StatusCode::OK, me.lang, t(me.lang, "newcontract"), &html)
}

/// `GET /console/contracts/{id}/edit`: the form filled with the contract as it is today.
pub(in crate::admin) async fn edit_page(
    State(st): State<AdminState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<Rows>,
) -> Response {
    let (list, scheduled, _) = st.operator.contracts_visible(&Visibility::All).await.unwrap_or_default();
    let Some(c) = list.iter().find(|c| c.id == id) else {
        return page(
            StatusCode::NOT_FOUND,
            me.lang,
            t(me.lang, "contracts"),
            &format!("{}<p>404</p>", nav(me.lang, &me.s)),
        );
    };
    let mut f = fields_of(c);
    f.push(("etag".into(), etag(c, &scheduled)));
    let pending = scheduled.iter().filter(|s| s.id == id).count();
    let notice = if pending > 0 {
        format!("<p class=\"note\">{} {pending}</p>", t(me.lang, "pendingchanges"))
    } else {
        String::new()
    };
    let shown = Shown { kind: Kind::Change, id: &id, fields: &f, rows: q.rows.unwrap_or(ROWS), planned: false };
    let html = form_page(&st, &me, &shown, &notice);
    page(StatusCode::OK, me.lang, t(me.lang, "changecontract"), &html)
}

/// `POST /console/contracts/new`.
pub(in crate::admin) async fn create(State(st): State<AdminState>, me: SignedIn, Form(f): Form<Fields>) -> Response {
    let id = field(&f, "id").trim().to_string();
    submit(&st, &me, Kind::Create, id, f).await
}

/// `POST /console/contracts/{id}/edit`.
pub(in crate::admin) async fn change(
    State(st): State<AdminState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    submit(&st, &me, Kind::Change, id, f).await
}

/// Plans (`step=plan`) or applies (`step=apply`) a submitted form.
async fn submit(st: &AdminState, me: &SignedIn, kind: Kind, id: String, f: Fields) -> Response {
    let lang = me.lang;
    if field(&f, "csrf") != me.s.csrf {
        return page(StatusCode::FORBIDDEN, lang, "403", "<p class=\"error\">CSRF</p>");
    }
    if me.s.role == Role::Auditor {
        return page(StatusCode::FORBIDDEN, lang, "403", &format!("<p class=\"error\">{}</p>", t(lang, "readonly")));
    }
    let apply = field(&f, "step") == "apply";
    let title = t(lang, if kind == Kind::Create { "newcontract" } else { "changecontract" });
    let again = |status: StatusCode, notice: String| {
        let shown = Shown { kind, id: &id, fields: &f, rows: ROWS, planned: false };
        page(status, lang, title, &form_page(st, me, &shown, &notice))
    };
    let errors = |items: Vec<String>| {
        let li: String = items.iter().map(|i| format!("<li>{i}</li>")).collect();
        format!("<div class=\"error\" id=\"errors\"><p>{}</p><ul>{li}</ul></div>", t(lang, "notchanged"))
    };
    let (list, scheduled, _) = match st.operator.contracts_visible(&Visibility::All).await {
        Ok(x) => x,
        Err(e) => return again(StatusCode::SERVICE_UNAVAILABLE, errors(vec![esc(&e.to_string())])),
    };
    let current = list.iter().find(|c| c.id == id);
    match (kind, current) {
        (Kind::Create, Some(_)) => {
            return again(StatusCode::CONFLICT, errors(vec![format!("{}: {}", esc(&id), t(lang, "exists"))]));
        }
        (Kind::Change, None) => return again(StatusCode::NOT_FOUND, errors(vec!["404".into()])),
        (Kind::Change, Some(c)) if etag(c, &scheduled) != field(&f, "etag") => {
            return again(StatusCode::CONFLICT, errors(vec![t(lang, "contractchanged").to_string()]));
        }
        _ => {}
    }
    let (toml, effective, reason) = match to_contract_toml(&body_of(&f, &id)) {
        Ok(x) => x,
        Err(p) => {
            let mut items: Vec<String> = p
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        esc(&where_in_form(lang, e["pointer"].as_str().unwrap_or(""))),
                        esc(e["detail"].as_str().unwrap_or(""))
                    )
                })
                .collect();
            if items.is_empty() {
                items.push(esc(&p.detail));
            }
            return again(StatusCode::UNPROCESSABLE_ENTITY, errors(items));
        }
    };
    let actor = format!("{} (console)", me.s.user);
    let opts = crate::ApplyOptions {
        prune: false,
        dry_run: !apply,
        today: Some((st.today)()),
        effective,
        actor: actor.clone(),
        reason,
        tables: st.tables.as_ref().clone(),
    };
    let outcome = st.operator.apply_contracts(&toml, opts).await;
    if apply {
        let entry = AuditEntry {
            actor,
            source: "console".into(),
            action: if kind == Kind::Create { "contracts.create" } else { "contracts.change" }.into(),
            target: id.clone(),
            before: current.map(contracts::to_toml),
            after: Some(toml.clone()),
            outcome: if outcome.is_ok() { "ok".into() } else { "refused".into() },
        };
        st.store.audit_or_log(&entry).await;
    }
    match outcome {
        Ok(_) if apply => redirect(&format!("/console/contracts/{id}")),
        Ok(a) => {
            // the plan, and the same form with a confirm button in place of the plan button
            let p = &a.plan;
            let mut items = Vec::new();
            if !p.added.is_empty() {
                items.push(format!("{}: {}", t(lang, "added"), esc(&p.added.join(", "))));
            }
            for (cid, fields) in &p.changed {
                items.push(format!("{}: {} ({})", t(lang, "changes"), esc(cid), fields.join(", ")));
            }
            for r in &p.rebased {
                items.push(format!("{}: {} #{} ({})", t(lang, "carried"), esc(&r.id), r.rev, r.effective_from));
            }
            for (cid, before, after) in &a.price_changes {
                items.push(format!("{}: {} {before} → {after}", t(lang, "pricechange"), esc(cid)));
            }
            if items.is_empty() {
                items.push(t(lang, "nochange").to_string());
            }
            let when =
                effective.map_or_else(|| t(lang, "fromtoday").to_string(), |d| format!("{} {d}", t(lang, "from")));
            let li: String = items.iter().map(|i| format!("<li>{i}</li>")).collect();
            let notice =
                format!("<div id=\"plan-result\"><h2>{}</h2><p>{when}</p><ul>{li}</ul></div>", t(lang, "plan"));
            let shown = Shown { kind, id: &id, fields: &f, rows: ROWS, planned: true };
            page(StatusCode::OK, lang, title, &form_page(st, me, &shown, &notice))
        }
        Err(crate::OperatorError::InvalidContracts(issues)) => {
            let items = issues
                .0
                .iter()
                .map(|i| format!("{}: {}", esc(&where_in_form(lang, &pointer(&i.key))), esc(&i.why)))
                .collect();
            again(StatusCode::UNPROCESSABLE_ENTITY, errors(items))
        }
        Err(crate::OperatorError::ContractConflicts(problems)) => {
            again(StatusCode::CONFLICT, errors(problems.iter().map(|p| esc(p)).collect()))
        }
        Err(e) => again(StatusCode::UNPROCESSABLE_ENTITY, errors(vec![esc(&e.to_string())])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_becomes_the_apis_body() {
        let f: Fields = [
            ("customer", "Acme"),
            ("accounts_limit", "10"),
            ("starts", "2026-12-01"),
            ("sending_servers", "192.0.2.0/24\n198.51.100.7"),
            ("fn_inbound", "on"),
            ("encrypted", "pass"),
            ("unreadable", "refuse"),
            ("d0_name", "acme.example"),
            ("d0_servers", "mx1.acme.example, 192.0.2.25:2525"),
            ("d0_accounts", "alice\nbob, carol"),
            ("d1_name", ""),
            ("d2_name", "acme.test"),
            ("effective", "2027-01-01"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let b = body_of(&f, "acme");
        assert_eq!(b["accounts_limit"], 10);
        assert_eq!(b["functions"], json!(["inbound"]));
        assert_eq!(b["sending_servers"], json!(["192.0.2.0/24", "198.51.100.7"]));
        assert_eq!(b["domains"][0]["accounts"], json!(["alice", "bob", "carol"]));
        assert_eq!(b["domains"][1]["name"], "acme.test", "the empty row is skipped");
        assert_eq!(b["effective"], "2027-01-01");
        assert!(b.get("price_table").is_none());
        let f2: Fields = vec![("accounts_limit".into(), "ten".into())];
        assert_eq!(body_of(&f2, "x")["accounts_limit"], "ten", "left for the reader to refuse");
    }

    #[test]
    fn pointers_read_as_the_forms_words() {
        assert_eq!(where_in_form(Lang::En, "/domains/1/accounts"), "Domain 2 accounts");
        assert_eq!(where_in_form(Lang::En, "/accounts_limit"), "accounts_limit");
    }
}

//! The console's dashboard: mail in and out per hour over 24 hours and 7 days (received,
//! delivered, refused) from the message log's hourly roll-ups, the viruses found with the top
//! names and the actions taken, what could not be scanned and why, each node's queue (with its
//! oldest deferred message) and signature release, and the contracts that start, change or end
//! this week — charts as inline SVG drawn here, no script.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{SignedIn, esc, humanize, nav, page, t};
use crate::admin::{AdminState, Visibility};

/// One hour's counts, as the charts draw them.
#[derive(Debug, Default, Clone, Copy)]
struct Hour {
    received: i64,
    delivered: i64,
    refused: i64,
}

/// What a window adds up to.
#[derive(Debug, Default)]
struct Totals {
    inbound: i64,
    outbound: i64,
    refused: i64,
    infected: i64,
    unscanned: i64,
    delivered: i64,
    bounced: i64,
}

/// Scan verdicts that mean "not scanned (completely)".
const UNSCANNED: [&str; 3] = ["encrypted", "limit-exceeded", "unscannable"];

/// The hourly roll-ups of `hours` hours up to now, as per-hour counts and totals, with the
/// actions taken on infected mail and the reasons mail went unscanned.
fn tally(
    messages: &[msglog::HourlyMessages],
    outcomes: &[msglog::HourlyOutcomes],
    since: i64,
    hours: usize,
) -> (Vec<Hour>, Totals, BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let mut per_hour = vec![Hour::default(); hours];
    let mut totals = Totals::default();
    let (mut actions, mut unscanned) = (BTreeMap::new(), BTreeMap::new());
    let slot = |hour: i64| usize::try_from((hour - since) / 3600).ok().filter(|i| *i < hours);
    for m in messages.iter().filter(|m| m.hour >= since) {
        let Some(i) = slot(m.hour) else { continue };
        per_hour[i].received += m.messages;
        match m.direction.as_str() {
            "inbound" => totals.inbound += m.messages,
            "outbound" => totals.outbound += m.messages,
            _ => {}
        }
        if m.action == "refuse" {
            per_hour[i].refused += m.messages;
            totals.refused += m.messages;
        }
        if m.verdict == "infected" {
            totals.infected += m.messages;
            *actions.entry(m.action.clone()).or_default() += m.messages;
        }
        if UNSCANNED.contains(&m.verdict.as_str()) {
            totals.unscanned += m.messages;
            *unscanned.entry(m.verdict.clone()).or_default() += m.messages;
        }
    }
    for o in outcomes.iter().filter(|o| o.hour >= since) {
        let Some(i) = slot(o.hour) else { continue };
        match o.state.as_str() {
            "delivered" => {
                per_hour[i].delivered += o.recipients;
                totals.delivered += o.recipients;
            }
            "bounced" => totals.bounced += o.recipients,
            _ => {}
        }
    }
    (per_hour, totals, actions, unscanned)
}

/// A bar chart of `hours` (oldest first): a received bar per hour (`rect.bar`, its count in
/// `data-count`), with thinner delivered and refused bars beside it.
fn chart(id: &str, label: &str, hours: &[Hour], since: i64) -> String {
    let slot = if hours.len() <= 24 { 20 } else { 4 };
    let width = hours.len() * slot;
    let top = hours.iter().map(|h| h.received.max(h.delivered)).max().unwrap_or(0).max(1);
    let height = |n: i64| n * 100 / top;
    let mut bars = String::new();
    for (i, h) in hours.iter().enumerate() {
        let x = i * slot;
        let at = super::when(since + i as i64 * 3600);
        let (w, thin) = if slot >= 20 { (10, 4) } else { (3, 0) };
        let (r, d, f) = (height(h.received), height(h.delivered), height(h.refused));
        bars.push_str(&format!(
            "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{w}\" height=\"{r}\" data-count=\"{n}\"><title>{at} UTC: {n}</title></rect>",
            x + 1,
            110 - r,
            n = h.received,
        ));
        if thin > 0 {
            bars.push_str(&format!(
                "<rect class=\"delivered\" x=\"{}\" y=\"{}\" width=\"{thin}\" height=\"{d}\" data-count=\"{}\"/>\
                 <rect class=\"refused\" x=\"{}\" y=\"{}\" width=\"{thin}\" height=\"{f}\" data-count=\"{}\"/>",
                x + 11,
                110 - d,
                h.delivered,
                x + 15,
                110 - f,
                h.refused
            ));
        }
    }
    // the time under the axis: every 6 hours over a day, every day (UTC) over a week
    let every = if slot >= 20 { 6 } else { 24 };
    let ticks: String = (0..hours.len())
        .step_by(every)
        .map(|i| {
            let at = super::when(since + i as i64 * 3600);
            let text = if slot >= 20 {
                at.get(11..16).unwrap_or("").to_string()
            } else {
                at.get(5..10).unwrap_or("").to_string()
            };
            format!("<text class=\"tick\" x=\"{}\" y=\"126\">{text}</text>", i * slot)
        })
        .collect();
    format!(
        "<svg id=\"{id}\" width=\"{width}\" height=\"130\" viewBox=\"0 0 {width} 130\" role=\"img\" aria-label=\"{label}\">\
         <line class=\"axis\" x1=\"0\" y1=\"110\" x2=\"{width}\" y2=\"110\"/>{bars}{ticks}</svg>"
    )
}

fn totals_row(label: &str, suffix: &str, t_: &Totals) -> String {
    format!(
        "<tr><th>{label}</th><td id=\"inbound{suffix}\">{}</td><td id=\"outbound{suffix}\">{}</td>\
         <td id=\"refused{suffix}\">{}</td><td id=\"infected{suffix}\">{}</td><td id=\"unscanned{suffix}\">{}</td>\
         <td id=\"delivered{suffix}\">{}</td><td id=\"bounced{suffix}\">{}</td></tr>",
        t_.inbound, t_.outbound, t_.refused, t_.infected, t_.unscanned, t_.delivered, t_.bounced
    )
}

fn counts_table(id: &str, map: &BTreeMap<String, i64>) -> String {
    let mut rows: Vec<(&String, &i64)> = map.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let rows: String = rows.iter().map(|(k, n)| format!("<tr><td>{}</td><td>{n}</td></tr>", esc(k))).collect();
    format!("<table id=\"{id}\">{rows}</table>")
}

/// `GET /console/`: the dashboard.
pub(in crate::admin) async fn dashboard(State(st): State<AdminState>, me: SignedIn) -> Response {
    let (s, lang) = (&me.s, me.lang);
    let now = chrono::Utc::now().timestamp();
    let this_hour = now - now.rem_euclid(3600);
    let since_24h = this_hour - 23 * 3600;
    let since_7d = this_hour - 167 * 3600;
    let (messages, outcomes) = st.operator.log_hourly(since_7d, now + 1, None).await.unwrap_or_default();
    let (day, day_totals, _, _) = tally(&messages, &outcomes, since_24h, 24);
    let (week, week_totals, actions, unscanned) = tally(&messages, &outcomes, since_7d, 168);
    // the top virus names of the week, from the log's infected messages (at most 5,000)
    let filter = msglog::search::Filter { since: Some(since_7d), infected: true, limit: 5000, ..Default::default() };
    let mut viruses: BTreeMap<String, i64> = BTreeMap::new();
    for f in st.operator.search_log(&filter).await.unwrap_or_default() {
        for v in f.summary.viruses {
            *viruses.entry(v).or_default() += 1;
        }
    }
    let mut top: Vec<(String, i64)> = viruses.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(10);
    let top: BTreeMap<String, i64> = top.into_iter().collect();
    // the nodes: queue (oldest deferred), signature release and its age
    let nodes = st.node_list().await.unwrap_or_default();
    let node_rows: String = nodes
        .iter()
        .map(|n| {
            let oldest =
                if n.queue_oldest_deferred > 0 { humanize(now - n.queue_oldest_deferred) } else { "-".into() };
            let age = if n.signatures_at > 0 { humanize(now - n.signatures_at) } else { "-".into() };
            format!(
                "<tr class=\"node\"><td>{}</td><td class=\"state\">{}</td><td>{}</td><td>{}</td><td class=\"oldest\">{oldest}</td><td>{}</td><td>{age}</td></tr>",
                esc(&n.id),
                store::nodes::state(n, &nodes, st.down_after, now),
                n.queue_active,
                n.queue_deferred,
                esc(&n.signatures),
            )
        })
        .collect();
    // contracts starting, changing or ending within the week
    let today = (st.today)();
    let week_end = today + chrono::Days::new(7);
    let within = |d: chrono::NaiveDate| d >= today && d < week_end;
    let (list, scheduled, _) = st.operator.contracts_visible(&Visibility::All).await.unwrap_or_default();
    let mut coming: Vec<(chrono::NaiveDate, String, &'static str)> = Vec::new();
    for c in &list {
        if within(c.starts) {
            coming.push((c.starts, c.id.clone(), t(lang, "starts")));
        }
        if let Some(e) = c.ends.filter(|e| within(*e)) {
            coming.push((e, c.id.clone(), t(lang, "ends")));
        }
    }
    for sch in &scheduled {
        match sch.contract.as_ref().map(|n| n.ends.filter(|e| within(*e))) {
            None if within(sch.effective_from) => coming.push((sch.effective_from, sch.id.clone(), t(lang, "ends"))),
            Some(Some(e)) => coming.push((e, sch.id.clone(), t(lang, "ends"))),
            Some(None) if within(sch.effective_from) => {
                coming.push((sch.effective_from, sch.id.clone(), t(lang, "edit")));
            }
            _ => {}
        }
    }
    coming.sort();
    coming.dedup();
    let coming_rows: String = coming
        .iter()
        .map(|(d, id, what)| {
            format!(
                "<tr><td>{d}</td><td><a href=\"/console/contracts/{id}\">{id}</a></td><td>{what}</td></tr>",
                id = esc(id)
            )
        })
        .collect();
    let head = format!(
        "<tr><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(lang, "inbound"),
        t(lang, "outbound"),
        t(lang, "refusedmail"),
        t(lang, "infected"),
        t(lang, "unscanned"),
        t(lang, "delivered"),
        t(lang, "bounced"),
    );
    let body = format!(
        "{nav}<h1>{dash}</h1>\
         <table id=\"totals\">{head}{day_row}{week_row}</table>\
         <h2>{perhour} — {last24}</h2>{chart24}\
         <p class=\"legend\"><span class=\"k-bar\">■</span> {received} <span class=\"k-delivered\">■</span> {delivered} <span class=\"k-refused\">■</span> {refused}</p>\
         <h2>{perhour} — {last7}</h2>{chart7}\
         <h2>{viruses} — {last7}</h2><div class=\"cols\"><div><h3>{top}</h3>{top_table}</div>\
         <div><h3>{actions}</h3>{actions_table}</div><div><h3>{unscanned}</h3>{unscanned_table}</div></div>\
         <h2>{nodes}</h2><table id=\"dash-nodes\"><tr><th>{node}</th><th>{state}</th><th>{active}</th><th>{deferred}</th>\
         <th>{oldest}</th><th>{signatures}</th><th>{age}</th></tr>{node_rows}</table>\
         <h2>{thisweek}</h2><table id=\"this-week\">{coming_rows}</table>",
        nav = nav(lang, s),
        dash = t(lang, "dashboard"),
        day_row = totals_row(t(lang, "last24"), "", &day_totals),
        week_row = totals_row(t(lang, "last7"), "-7d", &week_totals),
        perhour = t(lang, "perhour"),
        last24 = t(lang, "last24"),
        last7 = t(lang, "last7"),
        chart24 = chart("per-hour", t(lang, "perhour"), &day, since_24h),
        chart7 = chart("per-hour-7d", t(lang, "perhour"), &week, since_7d),
        received = t(lang, "received"),
        delivered = t(lang, "delivered"),
        refused = t(lang, "refusedmail"),
        viruses = t(lang, "viruses"),
        top = t(lang, "topviruses"),
        top_table = counts_table("top-viruses", &top),
        actions = t(lang, "actions"),
        actions_table = counts_table("virus-actions", &actions),
        unscanned = t(lang, "unscanned"),
        unscanned_table = counts_table("unscanned-reasons", &unscanned),
        nodes = t(lang, "nodes"),
        node = t(lang, "node"),
        state = t(lang, "state"),
        active = t(lang, "active"),
        deferred = t(lang, "deferred"),
        oldest = t(lang, "oldestdeferred"),
        signatures = t(lang, "signatures"),
        age = t(lang, "age"),
        thisweek = t(lang, "thisweek"),
    );
    page(StatusCode::OK, lang, t(lang, "dashboard"), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(hour: i64, direction: &str, verdict: &str, action: &str, n: i64) -> msglog::HourlyMessages {
        msglog::HourlyMessages {
            hour,
            contract: String::new(),
            direction: direction.into(),
            verdict: verdict.into(),
            action: action.into(),
            messages: n,
            bytes: 0,
        }
    }

    #[test]
    fn roll_ups_add_up_per_hour_and_per_window() {
        let since = 1_000 * 3600;
        let msgs = [
            m(since, "inbound", "clean", "deliver", 5),
            m(since + 3600, "outbound", "infected", "drop", 2),
            m(since + 3600, "inbound", "encrypted", "refuse", 1),
            m(since - 3600, "inbound", "clean", "deliver", 100),
        ];
        let outs = [msglog::HourlyOutcomes { hour: since, state: "delivered".into(), recipients: 4 }];
        let (hours, t, actions, unscanned) = tally(&msgs, &outs, since, 24);
        assert_eq!((hours[0].received, hours[0].delivered, hours[1].received, hours[1].refused), (5, 4, 3, 1));
        assert_eq!((t.inbound, t.outbound, t.infected, t.unscanned, t.refused, t.delivered), (6, 2, 2, 1, 1, 4));
        assert_eq!(actions["drop"], 2);
        assert_eq!(unscanned["encrypted"], 1);
        let svg = chart("c", "x", &hours, since);
        assert_eq!(svg.matches("class=\"bar\"").count(), 24);
    }
}

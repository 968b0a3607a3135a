//! The console's pages. Each takes the [`Principal`] the admin API's own
//! middleware set, reads through the admin API's handlers or the same store
//! queries, and escapes every value it shows ([`esc`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Extension;
use cachet_store::AuditRecord;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{csrf_ok, esc, html_page, url_enc, ConsoleState, SessionInfo};
use crate::auth::{format_time, Principal};
use crate::error::{ApiError, ApiJson, ApiQuery};

type Page = Result<Html<String>, ApiError>;

/// Most audit entries one page view reads (in pages of 1000).
const MAX_SCAN: usize = 200_000;
/// Entries per page of the explorer.
const PAGE: usize = 50;
/// Status columns, worst last.
const STATUSES: [&str; 5] = ["affirming", "warning", "contraindicated", "none", "refused"];

fn page(p: &Principal, s: &SessionInfo, title: &str, body: &str) -> Page {
    Ok(html_page(title, Some(p), Some(s), body))
}

fn when(ts: i64) -> String {
    esc(&format_time(ts))
}

fn detail_of(r: &AuditRecord) -> Value {
    serde_json::from_str(&r.detail).unwrap_or(Value::Null)
}

/// The status an attestation entry records: the appraisal's, or `refused`.
fn status_of(r: &AuditRecord, d: &Value) -> String {
    if r.outcome == "ok" {
        d["status"].as_str().unwrap_or("none").to_string()
    } else {
        r.outcome.clone()
    }
}

fn status_span(s: &str) -> String {
    format!("<span class=\"st-{}\">{}</span>", esc(&s.replace(|c: char| !c.is_ascii_alphanumeric(), "")), esc(s))
}

/// Every audit entry the principal may read, oldest first, through the
/// admin API's queries (`/v1/admin/audit` for an operator,
/// `/v1/admin/secret-releases` for a tenant); at most [`MAX_SCAN`].
async fn visible_audit(cs: &ConsoleState, p: &Principal, mut each: impl FnMut(AuditRecord)) -> Result<bool, ApiError> {
    let store = &cs.app.store;
    let mut after = 0;
    let mut seen = 0;
    loop {
        let batch = match &p.tenant {
            None => store.audit_page(after, 1000).await?,
            Some(t) => store.owner_audit_page(t, after, 1000).await?,
        };
        let Some(last) = batch.last() else { return Ok(false) };
        after = last.seq;
        for r in batch {
            seen += 1;
            each(r);
        }
        if seen >= MAX_SCAN {
            return Ok(true);
        }
    }
}

/// One audit entry by sequence number, if the principal may read it: an
/// operator any, a tenant only one in its own audit view (another tenant's
/// is "no such entry", as if it did not exist).
async fn visible_entry(cs: &ConsoleState, p: &Principal, seq: i64) -> Result<Option<AuditRecord>, ApiError> {
    if seq < 1 {
        return Ok(None);
    }
    let batch = match &p.tenant {
        None => cs.app.store.audit_page(seq - 1, 1).await?,
        Some(t) => cs.app.store.owner_audit_page(t, seq - 1, 1).await?,
    };
    Ok(batch.into_iter().next().filter(|r| r.seq == seq))
}

// ---------------------------------------------------------------- overview

/// `GET /console`: the operator's figures, or the tenant's own.
pub async fn overview(State(cs): State<ConsoleState>, Extension(p): Extension<Principal>, Extension(s): Extension<SessionInfo>) -> Page {
    if p.tenant.is_some() {
        return tenant_overview(cs, p, s).await;
    }
    let mut by_tee: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut by_day: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    let mut by_check: BTreeMap<String, u64> = BTreeMap::new();
    let mut releases: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    let capped = visible_audit(&cs, &p, |r| match r.action.as_str() {
        "attest" => {
            let d = detail_of(&r);
            let st = status_of(&r, &d);
            total += 1;
            *by_tee.entry(r.tee.clone().unwrap_or_else(|| "?".into())).or_default().entry(st.clone()).or_default() += 1;
            *by_day.entry(r.ts.div_euclid(86_400)).or_default().entry(st).or_default() += 1;
            if r.outcome != "ok" {
                *by_check.entry(r.failed_check.clone().unwrap_or_else(|| "(none named)".into())).or_default() += 1;
            }
        }
        "secret.release" => *releases.entry(r.outcome.clone()).or_default() += 1,
        _ => {}
    })
    .await?;

    let mut b = String::from("<h1>Overview</h1>");
    if capped {
        let _ = write!(b, "<p class=\"notice\">Figures cover the first {MAX_SCAN} audit entries.</p>");
    }
    let refused: u64 = by_check.values().sum();
    let released = releases.get("released").copied().unwrap_or(0);
    let _ = write!(
        b,
        "<div class=\"cards\"><div class=\"card\"><span class=\"n\" data-figure=\"total\">{total}</span><span class=\"l\">attestations</span></div>\
         <div class=\"card\"><span class=\"n\" data-figure=\"refused\">{refused}</span><span class=\"l\">refused before a token</span></div>\
         <div class=\"card\"><span class=\"n\" data-figure=\"released\">{released}</span><span class=\"l\">secrets released</span></div>\
         <div class=\"card\"><span class=\"n\" data-figure=\"release-refused\">{}</span><span class=\"l\">releases refused</span></div></div>",
        releases.get("refused").copied().unwrap_or(0)
    );

    b.push_str("<h2 id=\"over-time\">Attestations over time</h2>");
    b.push_str(&day_chart(&by_day));

    b.push_str("<h2>Attestations by TEE and status</h2><table id=\"by-tee\"><thead><tr><th scope=\"col\">TEE</th>");
    for st in STATUSES {
        let _ = write!(b, "<th scope=\"col\" class=\"num\">{st}</th>");
    }
    b.push_str("<th scope=\"col\" class=\"num\">total</th></tr></thead><tbody>");
    for (tee, counts) in &by_tee {
        let _ = write!(b, "<tr><th scope=\"row\">{}</th>", esc(tee));
        for st in STATUSES {
            let n = counts.get(st).copied().unwrap_or(0);
            let _ = write!(b, "<td class=\"num\" data-figure=\"{}:{st}\">{n}</td>", esc(tee));
        }
        let _ = write!(b, "<td class=\"num\">{}</td></tr>", counts.values().sum::<u64>());
    }
    if by_tee.is_empty() {
        b.push_str("<tr><td colspan=\"7\" class=\"muted\">No attestations yet.</td></tr>");
    }
    b.push_str("</tbody></table>");

    b.push_str("<h2>Refusals by failing check</h2><table id=\"by-check\"><thead><tr><th scope=\"col\">Check</th><th scope=\"col\" class=\"num\">refusals</th></tr></thead><tbody>");
    let mut checks: Vec<_> = by_check.iter().collect();
    checks.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (check, n) in checks {
        let _ = write!(
            b,
            "<tr><td><a href=\"/console/attestations?check={}\">{}</a></td><td class=\"num\" data-figure=\"check:{}\">{n}</td></tr>",
            url_enc(check),
            esc(check),
            esc(check)
        );
    }
    if by_check.is_empty() {
        b.push_str("<tr><td colspan=\"2\" class=\"muted\">No refusals.</td></tr>");
    }
    b.push_str("</tbody></table>");

    b.push_str("<h2>Release decisions</h2><table id=\"releases\"><thead><tr><th scope=\"col\">Outcome</th><th scope=\"col\" class=\"num\">decisions</th></tr></thead><tbody>");
    for (o, n) in &releases {
        let _ = write!(b, "<tr><td>{}</td><td class=\"num\" data-figure=\"release:{}\">{n}</td></tr>", status_span(o), esc(o));
    }
    if releases.is_empty() {
        b.push_str("<tr><td colspan=\"2\" class=\"muted\">No release decisions.</td></tr>");
    }
    b.push_str("</tbody></table>");

    // Signing keys: the admin API's listing.
    let keys = crate::admin::list_signing_keys(State(cs.app.clone())).await?.0;
    b.push_str("<h2>Signing keys</h2><table id=\"signing-keys\"><thead><tr><th scope=\"col\">Key id</th><th scope=\"col\">alg</th><th scope=\"col\">custody</th><th scope=\"col\">state</th><th scope=\"col\">signs from</th><th scope=\"col\">published until</th></tr></thead><tbody>");
    for k in &keys {
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td data-key-state=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&k.kid),
            esc(&k.alg),
            esc(&k.custody),
            esc(&k.state),
            esc(&k.state),
            when(k.active_from),
            k.published_until.map(when).unwrap_or_else(|| "—".into())
        );
    }
    b.push_str("</tbody></table>");

    // Endorsement health: the admin API's listing.
    let held = crate::endorse_admin::list_endorsements(State(cs.app.clone())).await.0;
    let oldest = held.iter().filter_map(|e| e["age_s"].as_i64()).max();
    let stale = held.iter().filter(|e| e["stale"] == true).count();
    let mut sources: BTreeMap<String, u64> = BTreeMap::new();
    for e in &held {
        let src = e["source"].as_str().unwrap_or("");
        // The service (scheme and host) the entry came from.
        let base = src.split_once("://").map(|(s, rest)| format!("{s}://{}", rest.split('/').next().unwrap_or(""))).unwrap_or(src.into());
        *sources.entry(base).or_default() += 1;
    }
    let _ = write!(
        b,
        "<h2>Endorsement health</h2><dl class=\"kv\" id=\"endorsements\"><dt>Entries held</dt><dd data-figure=\"endorsements\">{}</dd>\
         <dt>Oldest</dt><dd data-figure=\"endorsements-oldest\">{}</dd><dt>Past their next update</dt><dd data-figure=\"endorsements-stale\">{stale}</dd>\
         <dt>Sources</dt><dd>{}</dd></dl>",
        held.len(),
        oldest.map(age).unwrap_or_else(|| "—".into()),
        if sources.is_empty() {
            "none".to_string()
        } else {
            sources.iter().map(|(s, n)| format!("{} ({n})", esc(s))).collect::<Vec<_>>().join(", ")
        }
    );
    page(&p, &s, "Overview", &b)
}

fn age(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// Stacked bars by day (UTC) and status: the last 14 days with the latest
/// attestation's day at the right.
fn day_chart(by_day: &BTreeMap<i64, BTreeMap<String, u64>>) -> String {
    let Some(&last) = by_day.keys().next_back() else {
        return "<p class=\"muted\">No attestations yet.</p>".into();
    };
    let days: Vec<i64> = (last - 13..=last).collect();
    let max = days.iter().filter_map(|d| by_day.get(d)).map(|m| m.values().sum::<u64>()).max().unwrap_or(1).max(1);
    let (w, h, left, bottom, bar) = (760.0, 220.0, 40.0, 30.0, 38.0);
    let step = (w - left - 10.0) / days.len() as f64;
    let scale = (h - bottom - 20.0) / max as f64;
    let colour = |s: &str| match s {
        "affirming" => "#1a7f37",
        "warning" => "#9a6700",
        "contraindicated" => "#cf222e",
        "refused" => "#8250df",
        _ => "#57606a",
    };
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-labelledby=\"chart-title\">\
         <title id=\"chart-title\">Attestations per day (UTC) by status, last 14 days</title>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#8c959f\"/>\
         <text x=\"{}\" y=\"24\" font-size=\"11\" text-anchor=\"end\" fill=\"#57606a\">{max}</text>",
        h - bottom,
        w - 10.0,
        h - bottom,
        left - 6.0
    );
    for (i, d) in days.iter().enumerate() {
        let x = left + i as f64 * step + (step - bar) / 2.0;
        let mut y = h - bottom;
        if let Some(m) = by_day.get(d) {
            for st in STATUSES {
                let n = m.get(st).copied().unwrap_or(0) + if st == "none" { other_statuses(m) } else { 0 };
                if n == 0 {
                    continue;
                }
                let bh = n as f64 * scale;
                y -= bh;
                let _ = write!(
                    svg,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar}\" height=\"{bh:.1}\" fill=\"{}\"><title>{} {st}: {n}</title></rect>",
                    colour(st),
                    esc(&day_label(*d))
                );
            }
            let total: u64 = m.values().sum();
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#1f2328\">{total}</text>",
                x + bar / 2.0,
                y - 4.0
            );
        }
        let label = day_label(*d);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>",
            x + bar / 2.0,
            h - bottom + 16.0,
            esc(label.get(5..).unwrap_or(&label))
        );
    }
    svg.push_str("</svg><ul class=\"legend\" aria-hidden=\"true\">");
    for st in STATUSES {
        let _ = write!(svg, "<li><span class=\"sw sw-{st}\"></span>{st}</li>");
    }
    svg.push_str("</ul>");
    svg
}

/// Counts under statuses the chart has no colour of (shown as `none`).
fn other_statuses(m: &BTreeMap<String, u64>) -> u64 {
    m.iter().filter(|(k, _)| !STATUSES.contains(&k.as_str())).map(|(_, n)| n).sum()
}

fn day_label(day: i64) -> String {
    format_time(day * 86_400).get(..10).unwrap_or_default().to_string()
}

async fn tenant_overview(cs: ConsoleState, p: Principal, s: SessionInfo) -> Page {
    let tenant = p.tenant.clone().unwrap_or_default();
    let secrets = crate::secrets::list_secrets(State(cs.app.clone()), Extension(p.clone())).await?.0;
    let mut by_secret: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut released, mut refused, mut changes) = (0u64, 0u64, 0u64);
    visible_audit(&cs, &p, |r| {
        if r.action == "secret.release" {
            let d = detail_of(&r);
            let name = d["secret"].as_str().map(str::to_string).unwrap_or_else(|| "(request refused)".into());
            let e = by_secret.entry(name).or_default();
            if r.outcome == "released" {
                released += 1;
                e.0 += 1;
            } else {
                refused += 1;
                e.1 += 1;
            }
        } else {
            changes += 1;
        }
    })
    .await?;
    let mut b = format!(
        "<h1>Overview for tenant {}</h1><div class=\"cards\">\
         <div class=\"card\"><span class=\"n\" data-figure=\"secrets\">{}</span><span class=\"l\">secrets</span></div>\
         <div class=\"card\"><span class=\"n\" data-figure=\"released\">{released}</span><span class=\"l\">releases</span></div>\
         <div class=\"card\"><span class=\"n\" data-figure=\"release-refused\">{refused}</span><span class=\"l\">refused releases</span></div>\
         <div class=\"card\"><span class=\"n\" data-figure=\"changes\">{changes}</span><span class=\"l\">changes</span></div></div>",
        esc(&tenant),
        secrets.len()
    );
    b.push_str("<h2>Release decisions by secret</h2><table id=\"releases\"><thead><tr><th scope=\"col\">Secret</th><th scope=\"col\" class=\"num\">released</th><th scope=\"col\" class=\"num\">refused</th></tr></thead><tbody>");
    for (name, (ok, no)) in &by_secret {
        let _ = write!(b, "<tr><td>{}</td><td class=\"num\">{ok}</td><td class=\"num\">{no}</td></tr>", esc(name));
    }
    if by_secret.is_empty() {
        b.push_str("<tr><td colspan=\"3\" class=\"muted\">No release decisions yet.</td></tr>");
    }
    b.push_str(
        "</tbody></table><p class=\"muted\">Attestations of the whole service, signing keys and endorsements are the operator's view.</p>",
    );
    page(&p, &s, "Overview", &b)
}

// ---------------------------------------------------------------- explorer

/// The explorer's filters (all optional).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    tee: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    check: String,
    #[serde(default)]
    q: String,
    /// `attest` (default for operators), `all`, or an action name.
    #[serde(default)]
    action: String,
    #[serde(default)]
    page: usize,
}

impl Filters {
    fn query(&self, page: usize) -> String {
        format!(
            "tee={}&outcome={}&check={}&q={}&action={}&page={page}",
            url_enc(&self.tee),
            url_enc(&self.outcome),
            url_enc(&self.check),
            url_enc(&self.q),
            url_enc(&self.action)
        )
    }
}

/// `GET /console/attestations`: the audit log (a tenant: its own view),
/// newest first, filtered and paged.
pub async fn attestations(
    State(cs): State<ConsoleState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<SessionInfo>,
    ApiQuery(mut f): ApiQuery<Filters>,
) -> Page {
    if f.action.is_empty() {
        f.action = if p.is_operator() { "attest".into() } else { "all".into() };
    }
    let q = f.q.to_lowercase();
    let mut rows: Vec<(AuditRecord, Value, String)> = Vec::new();
    let mut tees = std::collections::BTreeSet::new();
    let capped = visible_audit(&cs, &p, |r| {
        if let Some(t) = &r.tee {
            tees.insert(t.clone());
        }
        if f.action != "all" && r.action != f.action {
            return;
        }
        let d = detail_of(&r);
        let st = if r.action == "attest" { status_of(&r, &d) } else { r.outcome.clone() };
        let keep = (f.tee.is_empty() || r.tee.as_deref() == Some(f.tee.as_str()))
            && (f.outcome.is_empty() || st == f.outcome || r.outcome == f.outcome)
            && (f.check.is_empty() || r.failed_check.as_deref() == Some(f.check.as_str()))
            && (q.is_empty()
                || [
                    r.actor.as_str(),
                    r.action.as_str(),
                    r.detail.as_str(),
                    r.failed_check.as_deref().unwrap_or(""),
                    r.token_id.as_deref().unwrap_or(""),
                ]
                .iter()
                .any(|t| t.to_lowercase().contains(&q)));
        if keep {
            rows.push((r, d, st));
        }
    })
    .await?;
    rows.reverse();
    let title = if p.is_operator() { "Attestations" } else { "Releases and changes" };
    let mut b = format!("<h1>{title}</h1>");
    // Filters: a GET form (nothing secret in it).
    let opt = |v: &str, cur: &str, label: &str| {
        format!("<option value=\"{}\"{}>{}</option>", esc(v), if v == cur { " selected" } else { "" }, esc(label))
    };
    let mut tee_opts = opt("", &f.tee, "any");
    for t in &tees {
        tee_opts.push_str(&opt(t, &f.tee, t));
    }
    let mut outcome_opts = opt("", &f.outcome, "any");
    for o in ["affirming", "warning", "contraindicated", "none", "refused", "ok", "released"] {
        outcome_opts.push_str(&opt(o, &f.outcome, o));
    }
    let mut action_opts = String::new();
    for a in ["attest", "secret.release", "all"] {
        action_opts.push_str(&opt(a, &f.action, a));
    }
    let _ = write!(
        b,
        "<form class=\"filters\" method=\"get\" action=\"/console/attestations\" role=\"search\">\
         <div><label for=\"f-action\">Action</label><select id=\"f-action\" name=\"action\">{action_opts}</select></div>\
         <div><label for=\"f-tee\">TEE</label><select id=\"f-tee\" name=\"tee\">{tee_opts}</select></div>\
         <div><label for=\"f-outcome\">Outcome</label><select id=\"f-outcome\" name=\"outcome\">{outcome_opts}</select></div>\
         <div><label for=\"f-check\">Failing check</label><input id=\"f-check\" name=\"check\" value=\"{}\" size=\"18\"></div>\
         <div><label for=\"f-q\">Text</label><input id=\"f-q\" name=\"q\" type=\"search\" value=\"{}\" size=\"22\"></div>\
         <div><button type=\"submit\">Filter</button></div></form>",
        esc(&f.check),
        esc(&f.q)
    );
    if capped {
        let _ = write!(b, "<p class=\"notice\">Only the first {MAX_SCAN} audit entries were searched.</p>");
    }
    let pages = rows.len().div_ceil(PAGE).max(1);
    let pg = f.page.min(pages - 1);
    let _ = write!(b, "<p class=\"muted\" id=\"match-count\">{} matching entries</p>", rows.len());
    b.push_str(
        "<table id=\"entries\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Time (UTC)</th><th scope=\"col\">Action</th>\
         <th scope=\"col\">TEE</th><th scope=\"col\">Outcome</th><th scope=\"col\">Failing check / reason</th><th scope=\"col\">Policy / secret</th></tr></thead><tbody>",
    );
    for (r, d, st) in rows.iter().skip(pg * PAGE).take(PAGE) {
        let why = r
            .failed_check
            .clone()
            .or_else(|| d["reason"].as_str().map(str::to_string))
            .or_else(|| d["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        let what = d["policy"].as_str().or_else(|| d["secret"].as_str()).or_else(|| d["name"].as_str()).unwrap_or("");
        let _ = write!(
            b,
            "<tr data-seq=\"{seq}\"><td><a href=\"/console/attestations/{seq}\">{seq}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(r.ts),
            esc(&r.action),
            esc(r.tee.as_deref().unwrap_or("")),
            status_span(st),
            esc(&cut(&why, 120)),
            esc(&cut(what, 80)),
            seq = r.seq
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=\"7\" class=\"muted\">No entries match.</td></tr>");
    }
    b.push_str("</tbody></table><nav class=\"pager\" aria-label=\"Pages\">");
    if pg > 0 {
        let _ = write!(b, "<a href=\"/console/attestations?{}\" rel=\"prev\">← Newer</a>", esc(&f.query(pg - 1)));
    }
    let _ = write!(b, "<span>Page {} of {pages}</span>", pg + 1);
    if pg + 1 < pages {
        let _ = write!(b, "<a href=\"/console/attestations?{}\" rel=\"next\">Older →</a>", esc(&f.query(pg + 1)));
    }
    b.push_str("</nav>");
    page(&p, &s, title, &b)
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

// ---------------------------------------------------------------- report

/// `GET /console/attestations/{seq}`: one entry as a report.
pub async fn report(
    State(cs): State<ConsoleState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<SessionInfo>,
    Path(seq): Path<String>,
) -> Page {
    let seq: i64 = seq.parse().map_err(|_| ApiError::not_found("no such audit entry"))?;
    let r = visible_entry(&cs, &p, seq).await?.ok_or_else(|| ApiError::not_found("no such audit entry"))?;
    let d = detail_of(&r);
    let st = if r.action == "attest" { status_of(&r, &d) } else { r.outcome.clone() };
    let mut b = format!("<h1>Audit entry {} <small class=\"muted\">{}</small></h1>", r.seq, esc(&r.action));
    let opt = |k: &str, v: Option<&str>| v.map(|v| format!("<dt>{k}</dt><dd>{}</dd>", esc(v))).unwrap_or_default();
    let _ = write!(
        b,
        "<dl class=\"kv\" id=\"summary\"><dt>Outcome</dt><dd id=\"outcome\">{}</dd><dt>Time</dt><dd>{}</dd>{}{}{}{}{}{}</dl>",
        status_span(&st),
        when(r.ts),
        opt("TEE", r.tee.as_deref()),
        opt("Failing check", r.failed_check.as_deref()).replace("<dd>", "<dd id=\"failed-check\">"),
        opt("Actor", Some(&r.actor)),
        opt("Token id", r.token_id.as_deref()),
        opt("Request id", d["request_id"].as_str()),
        opt("Verification time", d["verification_time"].as_i64().map(format_time).as_deref()),
    );
    if r.action == "attest" {
        let message = d["message"].as_str().or_else(|| d["reason"].as_str());
        let checks: Vec<(String, bool, String)> = d["checks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (c["name"].as_str().unwrap_or("").to_string(), c["ok"] == true, c["detail"].as_str().unwrap_or("").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let failure = r.failed_check.as_deref().map(|c| (c, message.unwrap_or("")));
        b.push_str(&checks_html(&checks, failure));
        let rules = d.get("rules").or_else(|| d.get("reasons"));
        b.push_str(&policy_html(d["policy"].as_str(), d["policy_hash"].as_str(), d["status"].as_str(), rules, d.get("rules").is_none()));
        b.push_str(&claims_html(d.get("claims")));
        b.push_str(&revisions_html(d.get("revisions"), d.get("claims")));
    }
    let pretty = serde_json::to_string_pretty(&d).unwrap_or_else(|_| r.detail.clone());
    let _ = write!(
        b,
        "<h2>Recorded detail</h2><pre id=\"detail\">{}</pre><h2>Hash chain</h2><dl class=\"kv\"><dt>Previous</dt><dd><code>{}</code></dd><dt>This entry</dt><dd><code>{}</code></dd></dl>\
         <p><a href=\"/console/attestations/{}\" id=\"permalink\">Link to this report</a></p>",
        esc(&pretty),
        esc(&r.prev_hash),
        esc(&r.hash),
        r.seq
    );
    page(&p, &s, &format!("Entry {}", r.seq), &b)
}

fn checks_html(checks: &[(String, bool, String)], failure: Option<(&str, &str)>) -> String {
    let mut b = String::from("<h2>Checks</h2>");
    if checks.is_empty() && failure.is_none() {
        b.push_str("<p class=\"muted\">This entry records no checks (it was written before checks were recorded).</p>");
        return b;
    }
    b.push_str("<ol class=\"checks\" id=\"checks\">");
    for (name, ok, detail) in checks {
        let _ = write!(
            b,
            "<li data-ok=\"{ok}\"><span class=\"{}\" aria-hidden=\"true\">{}</span> <span class=\"visually\">{}</span> <strong>{}</strong><span class=\"detail\">{}</span></li>",
            if *ok { "pass" } else { "fail" },
            if *ok { "✓" } else { "✗" },
            if *ok { "passed:" } else { "failed:" },
            esc(name),
            esc(detail)
        );
    }
    // The failing check, when the recorded list does not end with it (a
    // refusal before verification, or an older entry without the list).
    if let Some((check, message)) = failure {
        if !checks.iter().any(|(n, ok, _)| n == check && !ok) {
            let _ = write!(
                b,
                "<li data-ok=\"false\"><span class=\"fail\" aria-hidden=\"true\">✗</span> failed: <strong>{}</strong><span class=\"detail\">{}</span></li>",
                esc(check),
                esc(message)
            );
        } else if !message.is_empty() {
            let _ = write!(b, "<li class=\"muted\">Refused: {}</li>", esc(message));
        }
    }
    b.push_str("</ol>");
    b
}

fn policy_html(name: Option<&str>, hash: Option<&str>, status: Option<&str>, rules: Option<&Value>, only_not_affirming: bool) -> String {
    let mut b = String::from("<h2>Policy</h2>");
    let Some(name) = name else {
        b.push_str("<p class=\"muted\">No appraisal: the evidence was refused before a policy ran.</p>");
        return b;
    };
    let _ = write!(
        b,
        "<dl class=\"kv\" id=\"policy\"><dt>Policy</dt><dd>{}</dd><dt>Hash</dt><dd><code>{}</code></dd><dt>Appraisal</dt><dd>{}</dd></dl>",
        esc(name),
        esc(hash.unwrap_or("")),
        status.map(status_span).unwrap_or_default()
    );
    let rules = rules.and_then(Value::as_array).cloned().unwrap_or_default();
    if only_not_affirming {
        b.push_str("<p class=\"muted\">This entry records only the rules that did not affirm.</p>");
    }
    b.push_str("<table id=\"rules\"><thead><tr><th scope=\"col\">Rule</th><th scope=\"col\">Outcome</th><th scope=\"col\">Detail</th></tr></thead><tbody>");
    for r in &rules {
        let outcome = r["outcome"].as_str().map(str::to_string).unwrap_or_else(|| r["outcome"].to_string());
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(r["rule"].as_str().unwrap_or("")),
            status_span(&outcome),
            esc(r["detail"].as_str().unwrap_or(""))
        );
    }
    if rules.is_empty() {
        b.push_str("<tr><td colspan=\"3\" class=\"muted\">No rule reasons recorded.</td></tr>");
    }
    b.push_str("</tbody></table>");
    b
}

fn claims_html(claims: Option<&Value>) -> String {
    match claims {
        Some(c) if !c.is_null() => {
            format!("<h2>Claims</h2><pre id=\"claims\">{}</pre>", esc(&serde_json::to_string_pretty(c).unwrap_or_default()))
        }
        _ => "<h2>Claims</h2><p class=\"muted\">No verified claims recorded.</p>".into(),
    }
}

fn revisions_html(revisions: Option<&Value>, claims: Option<&Value>) -> String {
    let mut b = String::from("<h2>Endorsement revisions</h2><dl class=\"kv\" id=\"revisions\">");
    let mut any = false;
    if let Some(r) = revisions.filter(|r| !r.is_null()) {
        if let Some(n) = r.get("tcb_eval_num").filter(|n| !n.is_null()) {
            let _ = write!(b, "<dt>TCB evaluation number</dt><dd>{}</dd>", esc(&n.to_string()));
            any = true;
        }
        for c in r["crls"].as_array().into_iter().flatten() {
            let _ = write!(
                b,
                "<dt>CRL</dt><dd>{} — number {}, issued {}</dd>",
                esc(c["issuer"].as_str().unwrap_or("")),
                esc(&c["crl_number"].to_string()),
                esc(&c["this_update"].to_string())
            );
            any = true;
        }
    }
    for id in claims.and_then(|c| c["rim_ids"].as_array()).into_iter().flatten() {
        let _ = write!(b, "<dt>RIM</dt><dd>{}</dd>", esc(id.as_str().unwrap_or("")));
        any = true;
    }
    if !any {
        b.push_str("<dt>—</dt><dd class=\"muted\">none recorded</dd>");
    }
    b.push_str("</dl>");
    b
}

// ---------------------------------------------------------------- dry run

/// The dry-run form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct DryRunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tee: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    evidence: String,
    #[serde(default)]
    at: String,
}

const TEES: [&str; 11] = ["auto", "sgx", "tdx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "nitro", "nitro-tpm", "tpm", "nvgpu", "sim"];

async fn dry_run_page(cs: &ConsoleState, p: &Principal, s: &SessionInfo, f: &DryRunForm, result: &str) -> Page {
    let policies = crate::policies::list_policies(State(cs.app.clone())).await?.0;
    let mut tee_opts = String::new();
    for t in TEES {
        let _ = write!(tee_opts, "<option value=\"{t}\"{}>{t}</option>", if f.tee == t { " selected" } else { "" });
    }
    let mut pol_opts = String::from("<option value=\"\">the TEE's default</option>");
    for pi in &policies {
        let _ =
            write!(pol_opts, "<option value=\"{0}\"{1}>{0}</option>", esc(&pi.name), if f.policy == pi.name { " selected" } else { "" });
    }
    let at_note = if cs.app.config.allow_verification_time { "" } else { " (this server refuses it: --allow-verification-time is off)" };
    let body = format!(
        "<h1>Dry run</h1><p class=\"help\">Verifies and appraises evidence with <code>POST /v1/admin/policies/{{name}}/evaluate</code>: \
         no token is issued, no nonce consumed, nothing stored.</p>\
         <form class=\"stack\" method=\"post\" action=\"/console/dry-run\" enctype=\"multipart/form-data\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <div><label for=\"d-tee\">TEE</label><select id=\"d-tee\" name=\"tee\">{tee_opts}</select></div>\
         <div><label for=\"d-policy\">Policy</label><select id=\"d-policy\" name=\"policy\">{pol_opts}</select></div>\
         <div><label for=\"d-evidence\">Evidence (base64, hex or JSON, as <code>cachet verify</code> reads it)</label>\
         <textarea id=\"d-evidence\" name=\"evidence\" spellcheck=\"false\">{}</textarea></div>\
         <div><label for=\"d-file\">or the evidence file itself (raw bytes, or text as above; it wins over the box)</label>\
         <input type=\"file\" id=\"d-file\" name=\"file\"></div>\
         <div><label for=\"d-at\">Verification time (RFC 3339, optional){at_note}</label><input id=\"d-at\" name=\"at\" value=\"{}\" size=\"28\" placeholder=\"2025-01-01T00:00:00Z\"></div>\
         <div><button type=\"submit\">Evaluate</button></div></form>{result}",
        esc(&s.csrf),
        esc(&f.evidence),
        esc(&f.at)
    );
    page(p, s, "Dry run", &body)
}

/// `GET /console/dry-run`.
pub async fn dry_run_form(
    State(cs): State<ConsoleState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<SessionInfo>,
) -> Page {
    dry_run_page(&cs, &p, &s, &DryRunForm { tee: "auto".into(), ..Default::default() }, "").await
}

/// `POST /console/dry-run`: the admin API's `evaluate`, rendered as a report.
pub async fn dry_run(
    State(cs): State<ConsoleState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<SessionInfo>,
    mut form: axum::extract::Multipart,
) -> Page {
    // The form's fields; an uploaded file (raw evidence) wins over the box.
    let mut f = DryRunForm::default();
    let mut file: Vec<u8> = Vec::new();
    let bad = |e: axum::extract::multipart::MultipartError| ApiError::invalid(format!("the form could not be read: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            file = field.bytes().await.map_err(bad)?.to_vec();
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        match name.as_str() {
            "csrf" => f.csrf = text,
            "tee" => f.tee = text,
            "policy" => f.policy = text,
            "evidence" => f.evidence = text,
            "at" => f.at = text,
            _ => {}
        }
    }
    if !csrf_ok(&s, &f.csrf) {
        return Err(ApiError::forbidden("the form's token does not match this session; reload the page"));
    }
    use base64::Engine;
    let tee = if f.tee.is_empty() { "auto" } else { f.tee.as_str() };
    let evidence: &[u8] = if file.is_empty() { f.evidence.trim().as_bytes() } else { &file };
    if evidence.is_empty() {
        return dry_run_page(&cs, &p, &s, &f, "<p class=\"error\" role=\"alert\" id=\"result\">paste the evidence or choose its file</p>")
            .await;
    }
    let req = json!({
        "tee": tee,
        // The bytes as pasted or uploaded, base64-encoded: the API decodes
        // hex, base64 or JSON text inside once more, as `cachet verify` reads files.
        "evidence": base64::engine::general_purpose::STANDARD.encode(evidence),
        "at": (!f.at.trim().is_empty()).then(|| f.at.trim().to_string()),
    });
    let req: crate::policies::EvaluateRequest = serde_json::from_value(req).map_err(|e| ApiError::invalid(e.to_string()))?;
    let name = if f.policy.is_empty() {
        // The family's default: for `auto`, of the family the evidence is
        // (the same recognition as the API's; an unknown format is refused there).
        let t = match crate::routes::decode_evidence(tee, &req.evidence, &[]) {
            Ok((t, _, _)) => t.as_str().to_string(),
            Err(_) => tee.to_string(),
        };
        cachet_appraise::defaults::default_policy_name(&t)
    } else {
        f.policy.clone()
    };
    let result = match crate::policies::evaluate(State(cs.app.clone()), Path(name), ApiJson(req)).await {
        Ok(axum::Json(r)) => {
            let checks: Vec<(String, bool, String)> = r.checks.iter().map(|c| (c.name.clone(), c.ok, c.detail.clone())).collect();
            let failure =
                r.error.as_ref().map(|e| (e["check"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()));
            let appraisal = serde_json::to_value(&r.appraisal).unwrap_or(Value::Null);
            let mut out = format!(
                "<h2 id=\"result\">Result: {} — {}</h2>",
                if r.verified { "<span class=\"pass\">verified</span>" } else { "<span class=\"fail\">not verified</span>" },
                status_span(appraisal["status"].as_str().unwrap_or("none"))
            );
            out.push_str(&checks_html(&checks, failure.as_ref().map(|(c, m)| (c.as_str(), m.as_str()))));
            out.push_str(&policy_html(
                r.policy["name"].as_str(),
                r.policy["hash"].as_str(),
                appraisal["status"].as_str(),
                appraisal.get("reasons"),
                false,
            ));
            out.push_str(&claims_html(r.claims.as_ref()));
            out.push_str(&revisions_html(None, r.claims.as_ref()));
            out
        }
        Err(e) => format!("<p class=\"error\" role=\"alert\" id=\"result\"><code>{}</code>: {}</p>", esc(e.code), esc(&e.message)),
    };
    dry_run_page(&cs, &p, &s, &f, &result).await
}

// ---------------------------------------------------------------- policies

/// `GET /console/policies`.
pub async fn policies(State(cs): State<ConsoleState>, Extension(p): Extension<Principal>, Extension(s): Extension<SessionInfo>) -> Page {
    let list = crate::policies::list_policies(State(cs.app.clone())).await?.0;
    let mut b = String::from(
        "<h1>Policies</h1><table id=\"policies\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\" class=\"num\">Version</th><th scope=\"col\">Source</th>\
         <th scope=\"col\">Stored</th><th scope=\"col\">By</th><th scope=\"col\">Signer</th><th scope=\"col\">Hash</th></tr></thead><tbody>",
    );
    for pi in &list {
        let _ = write!(
            b,
            "<tr><td><a href=\"/console/policies/{}\">{}</a></td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            url_enc(&pi.name),
            esc(&pi.name),
            pi.version,
            esc(&pi.source),
            pi.created_at.map(when).unwrap_or_default(),
            esc(pi.created_by.as_deref().unwrap_or("")),
            signer(pi.signer.as_ref()),
            esc(&cut(&pi.hash, 23))
        );
    }
    b.push_str("</tbody></table>");
    page(&p, &s, "Policies", &b)
}

fn signer(s: Option<&crate::policy_signing::SignerInfo>) -> String {
    match s.and_then(|s| serde_json::to_value(s).ok()) {
        Some(v) => format!(
            "{} <span class=\"muted\">({}, {})</span>",
            esc(v["subject"].as_str().unwrap_or("")),
            esc(v["alg"].as_str().unwrap_or("")),
            esc(&cut(v["thumbprint"].as_str().unwrap_or(""), 16))
        ),
        None => "<span class=\"muted\">unsigned</span>".into(),
    }
}

/// Two versions to compare.
#[derive(Debug, Default, Deserialize)]
pub struct DiffQuery {
    a: Option<i64>,
    b: Option<i64>,
}

/// `GET /console/policies/{name}[?a=N&b=M]`: versions, text, a diff, and
/// the form that replays a candidate over recorded attestations.
pub async fn policy(
    State(cs): State<ConsoleState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<SessionInfo>,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Page {
    policy_page(&cs, &p, &s, name, q, None, "").await
}

/// The candidate-policy form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    last: String,
}

/// `POST /console/policies/{name}`: what the candidate would do to the last
/// attestations recorded under this policy (`POST /v1/admin/policies/{name}/replay`).
pub async fn policy_replay(
    State(cs): State<ConsoleState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<SessionInfo>,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<ReplayForm>,
) -> Page {
    if !csrf_ok(&s, &f.csrf) {
        return Err(ApiError::forbidden("the form's token does not match this session; reload the page"));
    }
    let last = f.last.trim().parse::<usize>().ok();
    let req = crate::replay::ReplayRequest { policy: Some(f.policy.clone()), last };
    let result = match crate::replay::replay(State(cs.app.clone()), Path(name.clone()), ApiJson(req)).await {
        Ok(axum::Json(r)) => {
            let mut out = format!(
                "<div id=\"replay-result\" role=\"status\"><p><strong>This change would refuse <span data-figure=\"would-refuse\">{}</span> of the last \
                 <span data-figure=\"evaluated\">{}</span> attestations</strong> appraised by {} ({} would change status, {} refused now would pass; \
                 {} recorded without claims skipped).</p>",
                r.would_refuse,
                r.evaluated,
                esc(&name),
                r.changed,
                r.would_admit,
                r.skipped
            );
            if !r.changes.is_empty() {
                out.push_str(
                    "<table id=\"replay-changes\"><thead><tr><th scope=\"col\">Attestation</th><th scope=\"col\">TEE</th>\
                     <th scope=\"col\">Was</th><th scope=\"col\">Would be</th><th scope=\"col\">Why</th></tr></thead><tbody>",
                );
                for c in &r.changes {
                    let why: Vec<String> = c
                        .reasons
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| format!("{}: {}", r["rule"].as_str().unwrap_or(""), r["detail"].as_str().unwrap_or("")))
                        .collect();
                    let _ = write!(
                        out,
                        "<tr><td><a href=\"/console/attestations/{0}\">#{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td></tr>",
                        c.seq,
                        esc(&c.tee),
                        status_span(&c.was),
                        status_span(&c.now),
                        esc(&cut(&why.join("; "), 300))
                    );
                }
                out.push_str("</tbody></table>");
            }
            out + "</div>"
        }
        Err(e) => format!("<p class=\"error\" role=\"alert\" id=\"replay-result\"><code>{}</code>: {}</p>", esc(e.code), esc(&e.message)),
    };
    policy_page(&cs, &p, &s, name, DiffQuery::default(), Some(&f), &result).await
}

async fn policy_page(
    cs: &ConsoleState,
    p: &Principal,
    s: &SessionInfo,
    name: String,
    q: DiffQuery,
    form: Option<&ReplayForm>,
    replay_result: &str,
) -> Page {
    let get = |v: Option<i64>| {
        crate::policies::get_policy(State(cs.app.clone()), Path(name.clone()), ApiQuery(crate::policies::VersionQuery { version: v }))
    };
    let current = get(None).await?.0;
    let versions = match crate::policies::policy_versions(State(cs.app.clone()), Path(name.clone())).await {
        Ok(v) => v.0,
        Err(_) => Vec::new(), // a shipped default never stored
    };
    let mut b = format!("<h1>Policy {}</h1>", esc(&name));
    b.push_str(
        "<h2>Versions</h2><table id=\"versions\"><thead><tr><th scope=\"col\" class=\"num\">Version</th><th scope=\"col\">Stored</th><th scope=\"col\">By</th>\
         <th scope=\"col\">Signer</th><th scope=\"col\">Hash</th></tr></thead><tbody>",
    );
    for v in &versions {
        let _ = write!(
            b,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            v.version,
            v.created_at.map(when).unwrap_or_default(),
            esc(v.created_by.as_deref().unwrap_or("")),
            signer(v.signer.as_ref()),
            esc(&v.hash)
        );
    }
    if versions.is_empty() {
        b.push_str("<tr><td colspan=\"5\" class=\"muted\">Shipped with Cachet; never stored.</td></tr>");
    }
    b.push_str("</tbody></table>");
    if versions.len() >= 2 {
        let newest = versions.iter().map(|v| v.version).max().unwrap_or(1);
        let (va, vb) = (q.a.unwrap_or(newest - 1), q.b.unwrap_or(newest));
        let sel = |field: &str, cur: i64| {
            let mut o = format!("<select id=\"diff-{field}\" name=\"{field}\">");
            for v in &versions {
                let _ = write!(o, "<option value=\"{0}\"{1}>{0}</option>", v.version, if v.version == cur { " selected" } else { "" });
            }
            o + "</select>"
        };
        let _ = write!(
            b,
            "<h2>Compare</h2><form class=\"filters\" method=\"get\" action=\"/console/policies/{}\">\
             <div><label for=\"diff-a\">From version</label>{}</div><div><label for=\"diff-b\">To version</label>{}</div>\
             <div><button type=\"submit\">Compare</button></div></form>",
            url_enc(&name),
            sel("a", va),
            sel("b", vb)
        );
        let (ta, tb) = (get(Some(va)).await?.0, get(Some(vb)).await?.0);
        let _ = write!(b, "<p class=\"muted\">Version {va} → version {vb}</p>{}", diff_html(&ta.policy, &tb.policy));
    }
    let _ = write!(b, "<h2>Current text (version {})</h2><pre id=\"policy-text\">{}</pre>", current.info.version, esc(&current.policy));
    let candidate = form.map(|f| f.policy.as_str()).unwrap_or(&current.policy);
    let last = form.map(|f| f.last.as_str()).filter(|l| !l.is_empty()).unwrap_or("500");
    let _ = write!(
        b,
        "<h2>What would a change do?</h2><p class=\"help\">The candidate appraises the claims recorded for the last \
         attestations appraised by this policy, each at its own verification time; nothing is stored.</p>\
         <form class=\"stack\" id=\"replay\" method=\"post\" action=\"/console/policies/{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <div><label for=\"r-policy\">Candidate policy (Rego)</label><textarea id=\"r-policy\" name=\"policy\" spellcheck=\"false\">{}</textarea></div>\
         <div><label for=\"r-last\">Attestations to replay (the latest, at most {})</label><input id=\"r-last\" name=\"last\" value=\"{}\" size=\"6\"></div>\
         <div><button type=\"submit\">Replay</button></div></form>{replay_result}",
        url_enc(&name),
        esc(&s.csrf),
        esc(candidate),
        crate::replay::MAX_LAST,
        esc(last)
    );
    page(p, s, &format!("Policy {name}"), &b)
}

/// A line diff (longest common subsequence), `+`/`-` marked.
fn diff_html(a: &str, b: &str) -> String {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if x.len() * y.len() > 4_000_000 {
        return "<p class=\"muted\">The versions are too long to compare here.</p>".into();
    }
    let (n, m) = (x.len(), y.len());
    let mut l = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if x[i] == y[j] { l[i + 1][j + 1] + 1 } else { l[i + 1][j].max(l[i][j + 1]) };
        }
    }
    let mut out = String::from("<div class=\"diff\" id=\"diff\">");
    let (mut i, mut j) = (0, 0);
    let line = |out: &mut String, class: &str, mark: &str, t: &str| {
        let _ = write!(out, "<div class=\"{class}\">{mark} {}</div>", esc(t));
    };
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            line(&mut out, "same", " ", x[i]);
            i += 1;
            j += 1;
        } else if i < n && (j == m || l[i + 1][j] >= l[i][j + 1]) {
            line(&mut out, "del", "-", x[i]);
            i += 1;
        } else {
            line(&mut out, "add", "+", y[j]);
            j += 1;
        }
    }
    out.push_str("</div>");
    out
}

// ---------------------------------------------------------------- reference values

/// `GET /console/reference-values`: the sets the caller's policies read.
pub async fn reference_values(
    State(cs): State<ConsoleState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<SessionInfo>,
) -> Page {
    let doc = crate::refvals::list_reference_values(State(cs.app.clone()), Extension(p.clone())).await?.0;
    let mut b = String::from("<h1>Reference values</h1>");
    b.push_str(if p.is_operator() {
        "<p class=\"help\">The operator's sets: what appraisal policies read.</p>"
    } else {
        "<p class=\"help\">Your tenant's sets and the operator sets shared with it: what your release policies read.</p>"
    });
    let sets = doc["reference_values"].as_object().cloned().unwrap_or_default();
    if sets.is_empty() {
        b.push_str("<p class=\"muted\" id=\"no-sets\">No reference values.</p>");
    }
    for (name, set) in &sets {
        let _ = write!(
            b,
            "<h2>{}</h2><p class=\"muted\">{}{}</p><table><thead><tr><th scope=\"col\">Value</th><th scope=\"col\">Expires</th><th scope=\"col\">Builder</th><th scope=\"col\">Source</th></tr></thead><tbody>",
            esc(name),
            esc(set["description"].as_str().unwrap_or("")),
            set["expires"].as_str().map(|e| format!(" · expires {}", esc(e))).unwrap_or_default()
        );
        for v in set["values"].as_array().into_iter().flatten() {
            let value = v["value"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&value),
                esc(v["expires"].as_str().unwrap_or("")),
                esc(v["builder_id"].as_str().unwrap_or("")),
                esc(v["source"].as_str().unwrap_or(""))
            );
        }
        b.push_str("</tbody></table>");
    }
    page(&p, &s, "Reference values", &b)
}

// ---------------------------------------------------------------- secrets

/// `GET /console/secrets`: a tenant's secrets (never their values) and
/// their release history.
pub async fn secrets(State(cs): State<ConsoleState>, Extension(p): Extension<Principal>, Extension(s): Extension<SessionInfo>) -> Page {
    let list = crate::secrets::list_secrets(State(cs.app.clone()), Extension(p.clone())).await?.0;
    let mut b = String::from(
        "<h1>Secrets</h1><table id=\"secrets\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\" class=\"num\">Version</th><th scope=\"col\">Updated</th>\
         <th scope=\"col\">Release policy</th><th scope=\"col\">Sealed under</th></tr></thead><tbody>",
    );
    for sec in &list {
        let altered = if sec.policy_altered { " <strong class=\"fail\">policy altered: not released</strong>" } else { "" };
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td><details><summary><code>sha-256:{}</code>{altered}</summary><pre>{}</pre></details></td><td>{}</td></tr>",
            esc(&sec.name),
            sec.version,
            when(sec.updated_at),
            esc(&cut(&sec.policy_hash, 16)),
            esc(&sec.policy),
            esc(&sec.kek)
        );
    }
    if list.is_empty() {
        b.push_str("<tr><td colspan=\"5\" class=\"muted\">No secrets.</td></tr>");
    }
    b.push_str("</tbody></table><h2>Release history</h2><table id=\"release-history\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Time (UTC)</th><th scope=\"col\">Secret</th><th scope=\"col\">Outcome</th><th scope=\"col\">Reason</th><th scope=\"col\">Token</th></tr></thead><tbody>");
    let mut rows = Vec::new();
    visible_audit(&cs, &p, |r| {
        if r.action == "secret.release" {
            rows.push(r);
        }
    })
    .await?;
    for r in rows.iter().rev().take(200) {
        let d = detail_of(r);
        let _ = write!(
            b,
            "<tr><td><a href=\"/console/attestations/{seq}\">{seq}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            when(r.ts),
            esc(d["secret"].as_str().unwrap_or("")),
            status_span(&r.outcome),
            esc(&cut(d["reason"].as_str().unwrap_or(""), 160)),
            esc(&cut(r.token_id.as_deref().unwrap_or(""), 12)),
            seq = r.seq
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=\"6\" class=\"muted\">No release decisions yet.</td></tr>");
    }
    b.push_str("</tbody></table>");
    page(&p, &s, "Secrets", &b)
}

// ---------------------------------------------------------------- forecast

/// `GET /console/forecast`: the TCB recovery forecast of
/// `GET /v1/admin/endorsements/forecast` (its handler), rendered.
pub async fn forecast(State(cs): State<ConsoleState>, Extension(p): Extension<Principal>, Extension(s): Extension<SessionInfo>) -> Page {
    let q = crate::endorse_admin::ForecastQuery { days: None };
    let r = crate::endorse_admin::forecast_endorsements(State(cs.app.clone()), ApiQuery(q)).await?.0;
    let count = |k: &str| match &r[k] {
        Value::Array(a) => a.len().to_string(),
        Value::Null => "0".into(),
        v => esc(&v.to_string()),
    };
    let mut b = format!(
        "<h1>TCB recovery forecast</h1><p class=\"help\">Platforms seen attesting in the last 30 days, judged under the TCB Info \
         Intel serves early (<code>update=early</code>) beside the standard one: which would drop, by which component, from when.</p>\
         <div class=\"cards\"><div class=\"card\"><span class=\"n\" data-figure=\"affected\">{}</span><span class=\"l\">would drop</span></div>\
         <div class=\"card\"><span class=\"n\" data-figure=\"unaffected\">{}</span><span class=\"l\">unaffected</span></div>\
         <div class=\"card\"><span class=\"n\" data-figure=\"not-assessed\">{}</span><span class=\"l\">not assessed</span></div></div>",
        count("affected"),
        count("unaffected"),
        count("not_assessed")
    );
    b.push_str(
        "<h2>Platforms that would drop</h2><table id=\"affected\"><thead><tr><th scope=\"col\">Platform</th><th scope=\"col\">Now</th>\
         <th scope=\"col\">Next</th><th scope=\"col\">Falls short</th><th scope=\"col\">From</th></tr></thead><tbody>",
    );
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| if v.is_null() { String::new() } else { v.to_string() });
    let affected = r["affected"].as_array().cloned().unwrap_or_default();
    for a in &affected {
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&cut(&text(&a["platform"]), 200)),
            esc(&text(&a["current_status"])),
            esc(&text(&a["next_status"])),
            shortfalls_html(&a["shortfalls"]),
            from_html(&a["from"])
        );
    }
    if affected.is_empty() {
        b.push_str("<tr><td colspan=\"5\" class=\"muted\">None.</td></tr>");
    }
    b.push_str("</tbody></table>");
    let notes = r["notes"].as_array().cloned().unwrap_or_default();
    if !notes.is_empty() {
        b.push_str("<h2>Notes</h2><ul id=\"notes\">");
        for n in &notes {
            let _ = write!(b, "<li>{}</li>", esc(&text(n)));
        }
        b.push_str("</ul>");
    }
    let _ = write!(
        b,
        "<details><summary>The whole answer (JSON)</summary><pre>{}</pre></details>",
        esc(&serde_json::to_string_pretty(&r).unwrap_or_default())
    );
    page(&p, &s, "TCB forecast", &b)
}

/// A forecast's shortfalls as a list: "component: has X, needs Y".
fn shortfalls_html(v: &Value) -> String {
    let Some(list) = v.as_array() else { return String::new() };
    let mut out = String::from("<ul class=\"plain\">");
    for s in list.iter().take(32) {
        let name = s["component"].as_str().map(str::to_string).unwrap_or_else(|| format!("{} #{}", s["set"], s["index"]));
        let _ = write!(out, "<li>{}: has {}, needs {}</li>", esc(&name), esc(&s["platform"].to_string()), esc(&s["required"].to_string()));
    }
    out.push_str("</ul>");
    out
}

/// When a forecast takes effect: the new TCB evaluation, its dates, whether it is in force.
fn from_html(v: &Value) -> String {
    let field = |k: &str| v[k].as_str().map(|s| s.get(..10).unwrap_or(s).to_string());
    let mut parts = Vec::new();
    if let Some(n) = v["tcb_evaluation_data_number"].as_u64() {
        parts.push(format!("TCB evaluation {n}"));
    }
    if let Some(d) = field("issue_date") {
        parts.push(format!("issued {d}"));
    }
    match v["in_force"].as_bool() {
        Some(true) => parts.push("in force now".into()),
        Some(false) => {
            if let Some(d) = field("standard_expected_about") {
                parts.push(format!("standard channel expected about {d}"));
            }
        }
        None => {}
    }
    if parts.is_empty() {
        return esc(&v.to_string());
    }
    esc(&parts.join("; "))
}

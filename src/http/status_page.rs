//! `GET /`: a small self-contained HTML status page (no scripts, no external assets, works
//! offline): what is cached and verified by which key, how often it was served, upstream
//! health, the versions in quarantine and until when, hash completions in progress, and the
//! Terraform CLI config blocks for this very server.

use std::fmt::Write;

use actix_web::{http::header::ContentType, web, HttpRequest, HttpResponse};

use super::{auth::Authorized, ApiError};
use crate::{
    mirror::Mirror,
    ops::{self, OpsError, StatusSnapshot},
};

/// With `[auth]`, a token is needed: the page lists what is cached and where it came from.
pub async fn page(
    _auth: Authorized,
    req: HttpRequest,
    mirror: web::Data<Mirror>,
    snapshots: web::Data<ops::StatusCache>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = snapshots
        .into_inner()
        .snapshot(&mirror)
        .await
        .map_err(|e| match e {
            OpsError::Mirror(e) => ApiError::Mirror(e),
            other => ApiError::Internal(other.to_string()),
        })?;
    let base = match mirror.public_base() {
        "" => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
        configured => configured.to_owned(),
    };
    Ok(HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(render(&snapshot, &base)))
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
table{border-collapse:collapse}td,th{border-bottom:1px solid #d0d7de;padding:.3rem .8rem;text-align:left;vertical-align:top}\
th{background:#f6f8fa}pre{background:#f6f8fa;padding:.8rem;border-radius:6px}\
.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#656d76}";

fn render(s: &StatusSnapshot, base: &str) -> String {
    let mut html = String::new();
    let host = base
        .split_once("://")
        .map_or(base, |(_, rest)| rest)
        .trim_end_matches('/');
    let archives: usize = s.releases.iter().map(|r| r.archives.len()).sum();
    let bytes: u64 = s
        .releases
        .iter()
        .flat_map(|r| &r.archives)
        .map(|a| a.bytes)
        .sum();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>tfmirror status</title><style>{STYLE}</style></head><body>\
         <h1>tfmirror {version}</h1>\
         <p id=\"summary\">{releases} releases, {archives} archives, {size} cached and verified.</p>",
        version = env!("CARGO_PKG_VERSION"),
        releases = s.releases.len(),
        size = bytesize::ByteSize(bytes),
    );

    upstreams(&mut html, s);
    cached_releases(&mut html, s);
    key_changes(&mut html, s);
    quarantined(&mut html, s);
    completing(&mut html, s);
    using_this_mirror(&mut html, s, host, base);
    html
}

/// Each upstream with its health.
fn upstreams(html: &mut String, s: &StatusSnapshot) {
    html.push_str("<h2>Upstreams</h2><table id=\"upstreams\"><tr><th>name</th><th>URL</th><th>health</th><th>last success</th><th>last error</th></tr>");
    for (name, url, health) in &s.upstreams {
        let (class, state) = match health.reachable {
            Some(true) => ("ok", "reachable"),
            Some(false) => ("bad", "unreachable"),
            None => ("muted", "not asked yet"),
        };
        let _ = write!(
            html,
            "<tr data-upstream=\"{n}\"><td>{n}</td><td>{u}</td><td class=\"{class}\">{state}</td><td>{ok}</td><td>{err}</td></tr>",
            n = esc(name),
            u = esc(url),
            ok = health
                .last_success
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_default(),
            err = esc(health.last_error.as_deref().unwrap_or("")),
        );
    }
    html.push_str("</table>");
}

/// Every cached release: platforms, sizes, times served, the key that verified it.
fn cached_releases(html: &mut String, s: &StatusSnapshot) {
    html.push_str("<h2>Cached providers</h2><table id=\"cached\"><tr><th>provider</th><th>version</th><th>platforms (size, times served)</th><th>fetched</th><th>verified by</th></tr>");
    for r in &s.releases {
        let platforms: Vec<String> = r
            .archives
            .iter()
            .map(|a| {
                format!(
                    "<span class=\"archive\" data-platform=\"{p}\" data-hits=\"{h}\">{p} ({size}, {h}×)</span>",
                    p = esc(&a.platform),
                    size = bytesize::ByteSize(a.bytes),
                    h = a.hits
                )
            })
            .collect();
        let _ = write!(
            html,
            "<tr class=\"release\" data-provider=\"{up}/{p}\" data-version=\"{v}\"><td>{up}/{p}</td><td>{v}</td><td>{platforms}</td><td>{fetched}</td><td class=\"ok\" data-key=\"{k}\">{k} <span class=\"muted\">({src})</span></td></tr>",
            up = esc(&r.upstream),
            p = esc(&r.provider),
            v = esc(&r.version),
            platforms = if platforms.is_empty() {
                "<span class=\"muted\">metadata only</span>".to_owned()
            } else {
                platforms.join("<br>")
            },
            fetched = r
                .fetched
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_default(),
            k = esc(&r.key_id),
            src = esc(&r.key_source),
        );
    }
    html.push_str("</table>");
    if s.truncated {
        html.push_str("<p class=\"muted\">Only the first releases are listed.</p>");
    }
}

/// Versions signed by another key than their provider's earlier ones.
fn key_changes(html: &mut String, s: &StatusSnapshot) {
    if !s.key_changes.is_empty() {
        html.push_str("<h2>Signing key changes</h2><table id=\"key-changes\"><tr><th>release</th><th>new key</th><th>earlier keys</th><th>outcome</th><th>when</th></tr>");
        for change in &s.key_changes {
            let _ = write!(
                html,
                "<tr class=\"key-change\"><td>{r}</td><td>{new}</td><td>{old}</td><td class=\"{class}\">{outcome}</td><td>{at}</td></tr>",
                r = esc(&change.release.to_string()),
                new = esc(&change.new_key),
                old = esc(&change.earlier_keys.join(", ")),
                class = if change.refused { "bad" } else { "muted" },
                outcome = if change.refused { "refused (pin_keys)" } else { "accepted" },
                at = humantime::format_rfc3339_seconds(change.at),
            );
        }
        html.push_str("</table>");
    }
}

/// Versions held back by `policy.min_release_age`, and until when.
fn quarantined(html: &mut String, s: &StatusSnapshot) {
    if s.quarantined.is_empty() {
        return;
    }
    html.push_str("<h2>In quarantine</h2><table id=\"quarantine\"><tr><th>provider</th><th>version</th><th>first seen</th><th>available from</th></tr>");
    for q in &s.quarantined {
        let _ = write!(
            html,
            "<tr class=\"quarantined\" data-provider=\"{p}\" data-version=\"{v}\"><td>{p}</td><td>{v}</td><td>{seen}</td><td>{until}</td></tr>",
            p = esc(&q.release.provider.to_string()),
            v = esc(q.release.version.as_str()),
            seen = humantime::format_rfc3339_seconds(q.first_seen),
            until = humantime::format_rfc3339_seconds(q.until),
        );
    }
    html.push_str("</table>");
}

/// Releases whose other platforms are being fetched and hashed (`cache.complete_hashes`).
fn completing(html: &mut String, s: &StatusSnapshot) {
    if s.completing.is_empty() {
        return;
    }
    html.push_str("<h2>Completing hashes</h2><table id=\"completing\"><tr><th>release</th><th>archives hashed</th><th>failed</th></tr>");
    for (release, c) in &s.completing {
        let _ = write!(
            html,
            "<tr class=\"completing\"><td>{r}</td><td>{done} of {total}</td><td>{failed}</td></tr>",
            r = esc(&release.to_string()),
            done = c.done,
            total = c.total,
            failed = c.failed,
        );
    }
    html.push_str("</table>");
}

/// The CLI config blocks for this very server.
fn using_this_mirror(html: &mut String, s: &StatusSnapshot, host: &str, base: &str) {
    html.push_str("<h2>Using this mirror</h2>");
    for (namespace, upstream) in &s.namespaces {
        if namespace == "*" {
            let _ = write!(
                html,
                "<p>Every other namespace is the same namespace at upstream {up}: write sources as <code>{host}/NAMESPACE/TYPE</code>.</p>",
                up = esc(upstream),
                host = esc(host),
            );
            continue;
        }
        let _ = write!(
            html,
            "<p>Namespace <b>{ns}</b> serves upstream {up}: write sources as <code>{host}/{ns}/TYPE</code>.</p>\
             <pre class=\"cli-config\" data-kind=\"namespace\">terraform {{\n  required_providers {{\n    local = {{\n      source = \"{host}/{ns}/local\"\n    }}\n  }}\n}}</pre>",
            ns = esc(namespace),
            up = esc(upstream),
            host = esc(host),
        );
    }
    if !s.origins.is_empty() {
        let origins: Vec<String> = s.origins.iter().map(|(o, _)| esc(o)).collect();
        let _ = write!(
            html,
            "<p>Network mirror for {}: unchanged source addresses, in the CLI config (<code>~/.terraformrc</code>):</p>\
             <pre class=\"cli-config\" data-kind=\"network-mirror\">provider_installation {{\n  network_mirror {{\n    url = \"{base}/mirror/\"\n  }}\n}}</pre>",
            origins.join(", "),
            base = esc(base),
        );
        let _ = write!(
            html,
            "<p>Or the registry protocol for unchanged addresses (complete lock files), in the CLI config:</p>\
             <pre class=\"cli-config\" data-kind=\"host-override\">host \"registry.terraform.io\" {{\n  services = {{\n    \"providers.v1\" = \"{base}/v1/providers/\"\n  }}\n}}</pre>",
            base = esc(base),
        );
    }
    html.push_str("<p class=\"muted\">Also: <a href=\"/metrics\">/metrics</a> · <a href=\"/readyz\">/readyz</a> · <a href=\"/healthz\">/healthz</a></p></body></html>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}

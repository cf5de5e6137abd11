//! Sender authentication from `Authentication-Results` (RFC 8601).
//!
//! A status email changes business state, so a forged one must not be
//! applied. driftwatch does not verify DKIM itself (it sees mail after
//! delivery); it reads the verdict the receiving server wrote. Only trusted
//! headers count: those whose authserv-id is configured, or, when none is
//! configured, only the topmost one (the receiving server prepends its own; a
//! forger can add more below it, never above).

use serde::Deserialize;

/// Per-vendor strictness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthPolicy {
    /// A passing DKIM, SPF or DMARC result for the vendor's domain is required.
    Require,
    /// A failing result quarantines; no result at all is accepted.
    #[default]
    Prefer,
    /// Authentication-Results are not consulted.
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Result_ {
    method: String,
    result: String,
    /// The domain the result speaks for (header.d, header.from, smtp.mailfrom...).
    domain: Option<String>,
    authserv: String,
}

/// Decides whether mail claiming to be from `domain` may be trusted.
pub fn check(
    policy: AuthPolicy,
    headers: &[String],
    domain: &str,
    trusted_authserv: &[String],
) -> Verdict {
    if policy == AuthPolicy::Ignore {
        return Verdict::Accept;
    }
    let trusted: Vec<&String> = if trusted_authserv.is_empty() {
        headers.iter().take(1).collect()
    } else {
        headers
            .iter()
            .filter(|h| {
                let id = authserv_id(h);
                trusted_authserv.iter().any(|t| t.eq_ignore_ascii_case(&id))
            })
            .collect()
    };
    let results: Vec<Result_> = trusted.iter().flat_map(|h| parse(h)).collect();
    let aligned = |r: &&Result_| r.domain.as_deref().is_some_and(|d| aligned(d, domain));
    if let Some(f) = results.iter().filter(aligned).find(|r| {
        matches!(r.result.as_str(), "fail" | "permerror")
            && matches!(r.method.as_str(), "dkim" | "spf" | "dmarc")
    }) {
        return Verdict::Reject(format!(
            "sender authentication failed: {}={} for {} (Authentication-Results from {})",
            f.method,
            f.result,
            f.domain.as_deref().unwrap_or(domain),
            f.authserv
        ));
    }
    if policy == AuthPolicy::Require
        && !results
            .iter()
            .filter(aligned)
            .any(|r| r.result == "pass" && matches!(r.method.as_str(), "dkim" | "spf" | "dmarc"))
    {
        return Verdict::Reject(format!(
            "sender authentication required for {domain}, but no trusted Authentication-Results header shows a DKIM, SPF or DMARC pass"
        ));
    }
    Verdict::Accept
}

/// Relaxed alignment: one domain is the other or a subdomain of it
/// (`notify.acme.example` signs for mail from `acme.example` and vice versa).
fn aligned(d: &str, domain: &str) -> bool {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    d == domain || d.ends_with(&format!(".{domain}")) || domain.ends_with(&format!(".{d}"))
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn authserv_id(header: &str) -> String {
    strip_comments(header)
        .split(';')
        .next()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn parse(header: &str) -> Vec<Result_> {
    let clean = strip_comments(header);
    let mut parts = clean.split(';');
    let authserv = parts
        .next()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("")
        .to_ascii_lowercase();
    parts
        .filter_map(|part| {
            let mut tokens = part.split_whitespace();
            let (method, result) = tokens.next()?.split_once('=')?;
            let method = method
                .split('/')
                .next()
                .unwrap_or(method)
                .to_ascii_lowercase();
            let mut domain = None;
            for t in tokens {
                let Some((prop, value)) = t.split_once('=') else {
                    continue;
                };
                let value = value.trim_matches('"');
                let d = value
                    .rsplit('@')
                    .next()
                    .unwrap_or(value)
                    .to_ascii_lowercase();
                let wanted = match method.as_str() {
                    "dkim" => matches!(prop, "header.d" | "header.i"),
                    "spf" => matches!(prop, "smtp.mailfrom" | "smtp.helo"),
                    "dmarc" => prop == "header.from",
                    _ => false,
                };
                if wanted && domain.is_none() {
                    domain = Some(d);
                }
            }
            Some(Result_ {
                method,
                result: result.to_ascii_lowercase(),
                domain,
                authserv: authserv.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MX: &str = "mx.lender.example; dkim=pass header.d=acme-amc.example header.s=s1; spf=pass smtp.mailfrom=bounce@acme-amc.example; dmarc=pass (p=reject) header.from=acme-amc.example";
    const FORGED: &str = "mx.lender.example; dkim=fail (signature did not verify) header.d=acme-amc.example; spf=softfail smtp.mailfrom=x@evil.example; dmarc=fail header.from=acme-amc.example";

    #[test]
    fn a_failing_verdict_for_the_vendor_domain_rejects() {
        let v = check(
            AuthPolicy::Prefer,
            &[FORGED.into()],
            "acme-amc.example",
            &[],
        );
        assert!(
            matches!(&v, Verdict::Reject(r) if r.contains("dkim=fail")),
            "{v:?}"
        );
        assert_eq!(
            check(AuthPolicy::Prefer, &[MX.into()], "acme-amc.example", &[]),
            Verdict::Accept
        );
        assert_eq!(
            check(
                AuthPolicy::Ignore,
                &[FORGED.into()],
                "acme-amc.example",
                &[]
            ),
            Verdict::Accept
        );
    }

    #[test]
    fn only_the_topmost_or_configured_header_is_trusted() {
        // A forger adds a passing header below the real one: still rejected.
        let v = check(
            AuthPolicy::Prefer,
            &[FORGED.into(), MX.into()],
            "acme-amc.example",
            &[],
        );
        assert!(matches!(v, Verdict::Reject(_)));
        // Require: a pass written by an untrusted authserv does not count.
        let fake = MX.replace("mx.lender.example", "mx.evil.example");
        let v = check(
            AuthPolicy::Require,
            &[fake],
            "acme-amc.example",
            &["mx.lender.example".into()],
        );
        assert!(
            matches!(&v, Verdict::Reject(r) if r.contains("required")),
            "{v:?}"
        );
        assert_eq!(
            check(
                AuthPolicy::Require,
                &[MX.into()],
                "acme-amc.example",
                &["MX.lender.example".into()]
            ),
            Verdict::Accept
        );
    }

    #[test]
    fn results_for_other_domains_do_not_count() {
        let other = "mx.lender.example; dkim=fail header.d=mailchimp.example";
        assert_eq!(
            check(AuthPolicy::Prefer, &[other.into()], "acme-amc.example", &[]),
            Verdict::Accept
        );
        assert!(matches!(
            check(
                AuthPolicy::Require,
                &[other.into()],
                "acme-amc.example",
                &[]
            ),
            Verdict::Reject(_)
        ));
        // Subdomains align.
        let sub = "mx.lender.example; dkim=pass header.d=notify.acme-amc.example";
        assert_eq!(
            check(AuthPolicy::Require, &[sub.into()], "acme-amc.example", &[]),
            Verdict::Accept
        );
    }
}

//! `xnode-agent status`: one screen on the node, from the running agent.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use crate::api_client::ApiTarget;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: ApiTarget,
    /// Print the agent's /v1/status JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (code, body) = rt.block_on(args.target.get("/v1/status"))?;
    if code != 200 {
        anyhow::bail!(
            "the agent answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let v: Value = serde_json::from_slice(&body).context("the agent's status is not JSON")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&v, crate::now_unix() as f64));
    }
    Ok(ExitCode::SUCCESS)
}

fn ago(now: f64, t: f64) -> String {
    let s = (now - t).max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1000.0 && u < UNITS.len() - 1 {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// The status document as a screen of text.
/// The proof-of-resource line: what runs now, else the last result, and
/// when the schedule runs next.
fn render_proof(out: &mut String, p: &Value, now: f64) {
    let r = &p["running"];
    let line = if let Some(e) = p["error"].as_str() {
        format!("proof of resource: NOT PROVING: {e}")
    } else if !r.is_null() {
        let pct =
            r["done"].as_f64().unwrap_or(0.0) * 100.0 / r["total"].as_f64().unwrap_or(0.0).max(1.0);
        format!(
            "proof of resource: RUNNING ({} for {}), {} {pct:.0}%",
            str_of(&r["source"], "by"),
            ago(now, r["started_at"].as_f64().unwrap_or(0.0)).replace(" ago", ""),
            r["phase"].as_str().unwrap_or("starting")
        )
    } else {
        let l = &p["last"];
        match l["ok"].as_bool() {
            None => "proof of resource: none yet".to_string(),
            Some(ok) => format!(
                "proof of resource {} {}: {}",
                if ok { "proven" } else { "FAILED" },
                ago(now, l["finished_at"].as_f64().unwrap_or(0.0)),
                if ok {
                    l["proven"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_default()
                } else {
                    str_of(l, "error").to_string()
                }
            ),
        }
    };
    let _ = write!(out, "{line}");
    if let Some(next) = p["next_at"].as_f64() {
        let _ = write!(out, " · next in {:.0} min", ((next - now) / 60.0).max(0.0));
    }
    let _ = writeln!(out);
}

pub fn render(v: &Value, now: f64) -> String {
    let mut out = String::new();
    let agent = &v["agent"];
    let _ = writeln!(
        out,
        "node {} · xnode-agent {} (pid {}, started {})",
        agent["hostname"].as_str().unwrap_or("?"),
        str_of(agent, "version"),
        agent["pid"],
        ago(now, agent["started_at"].as_f64().unwrap_or(now))
    );
    let _ = writeln!(
        out,
        "manifest {} (loaded {})",
        str_of(v, "manifest"),
        ago(now, v["manifest_loaded_at"].as_f64().unwrap_or(now))
    );
    if let Some(why) = v["manifest_rejected"].as_str() {
        let _ = writeln!(
            out,
            "  ! a newer manifest was REJECTED, the one above stays in force: {why}"
        );
    }
    match v.get("attestation").filter(|a| !a.is_null()) {
        None => {
            let _ = writeln!(out, "attestation: none yet");
        }
        Some(a) if a["error"].is_string() => {
            let _ = writeln!(
                out,
                "attestation: {} is unreadable: {}",
                str_of(a, "path"),
                str_of(a, "error")
            );
        }
        Some(a) => {
            let _ = writeln!(
                out,
                "attestation #{} {} by {}{}",
                a["sequence"],
                ago(now, a["time_unix"].as_f64().unwrap_or(0.0)),
                str_of(a, "node_id"),
                if a["software_tpm"] == Value::Bool(true) {
                    " (SOFTWARE TPM)"
                } else {
                    ""
                }
            );
        }
    }
    if let Some(p) = v.get("proof_of_resource").filter(|p| !p.is_null()) {
        render_proof(&mut out, p, now);
    }
    let services = v["services"].as_array().cloned().unwrap_or_default();
    if services.is_empty() {
        let _ = writeln!(out, "no services declared");
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<18} {:<26} {:<22} {:<9} {:>8}  DETAIL",
        "SERVICE", "UNIT", "STATE", "HEALTH", "RESTARTS"
    );
    for s in &services {
        let state = format!("{} ({})", str_of(s, "active_state"), str_of(s, "sub_state"));
        let health = match (s["gave_up"].is_string(), s["healthy"].as_bool()) {
            (true, _) => "GAVE UP",
            (false, Some(true)) => "ok",
            (false, Some(false)) => "FAILING",
            (false, None) => "-",
        };
        let mut detail = s["health"]["detail"].as_str().unwrap_or("").to_string();
        let m = &s["health"]["metrics"];
        match m["kind"].as_str() {
            Some("cometbft") => {
                detail = format!("height {}, {} peers; {detail}", m["height"], m["peers"])
            }
            Some("kubo") => {
                detail = format!(
                    "{} peers, repo {} of {}; {detail}",
                    m["peers"],
                    bytes(m["repo_size_bytes"].as_u64().unwrap_or(0)),
                    bytes(m["storage_max_bytes"].as_u64().unwrap_or(0))
                )
            }
            _ => {}
        }
        if str_of(s, "phase") == "waiting-for-dependencies" {
            detail = "waiting for its dependencies".into();
        }
        if let Some(why) = s["gave_up"].as_str() {
            detail = why.to_string();
        } else if let Some(e) = s["error"].as_str() {
            detail = format!("{detail} (error: {e})");
        }
        let _ = writeln!(
            out,
            "{:<18} {:<26} {:<22} {:<9} {:>8}  {}",
            str_of(s, "name"),
            str_of(s, "unit"),
            state,
            health,
            s["agent_restarts"].as_u64().unwrap_or(0),
            detail.trim_end_matches("; ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renders_a_node() {
        let v = serde_json::json!({
            "agent": {"version": "0.1.0", "pid": 42, "started_at": 1000.0, "hostname": "n1"},
            "attestation": {"path": "/var/lib/xnode/attestation.json", "time_unix": 1300, "sequence": 7, "node_id": "12D3KooW", "software_tpm": true, "error": null},
            "proof_of_resource": {"every_seconds": 21600, "next_at": 1960.0, "running": null,
                "last": {"source": {"by": "schedule", "beacon": "ab"}, "seed": "00", "started_at": 1200, "finished_at": 1260,
                         "ok": true, "proven": ["cpu: 8 core(s), 16777216 steps a lane in 1.02 s"], "error": null}},
            "manifest": "/etc/xnode/manifest.json", "manifest_loaded_at": 1000.0,
            "manifest_rejected": "services[0].unit: 'x' is not a systemd service unit name",
            "services": [
                {"name": "ipfs", "unit": "ipfs.service", "active_state": "active", "sub_state": "running",
                 "phase": "supervised", "healthy": true, "agent_restarts": 1, "gave_up": null, "error": null,
                 "health": {"healthy": true, "detail": "ok", "latency": 0.01,
                            "metrics": {"kind": "kubo", "peers": 12, "repo_size_bytes": 1_200_000_000u64, "storage_max_bytes": 100_000_000_000u64, "objects": 5}}},
                {"name": "cometbft", "unit": "cometbft.service", "active_state": "failed", "sub_state": "failed",
                 "phase": "gave-up", "healthy": false, "agent_restarts": 5, "gave_up": "the unit is failed; 5 restart(s) without a healthy period, giving up", "error": null, "health": null}
            ]
        });
        let text = render(&v, 1360.0);
        assert!(
            text.starts_with("node n1 · xnode-agent 0.1.0 (pid 42, started 6 min ago)"),
            "{text}"
        );
        assert!(text.contains("REJECTED"), "{text}");
        assert!(
            text.contains("attestation #7 60 s ago by 12D3KooW (SOFTWARE TPM)"),
            "{text}"
        );
        assert!(
            text.contains("proof of resource proven 100 s ago: cpu: 8 core(s), 16777216 steps a lane in 1.02 s · next in 10 min"),
            "{text}"
        );
        assert!(
            text.contains("12 peers, repo 1.2 GB of 100.0 GB; ok"),
            "{text}"
        );
        let comet = text.lines().find(|l| l.starts_with("cometbft")).unwrap();
        assert!(
            comet.contains("GAVE UP") && comet.contains("giving up"),
            "{comet}"
        );
    }

    #[test]
    fn a_claim_that_could_not_be_used_says_why() {
        let mut out = String::new();
        render_proof(
            &mut out,
            &serde_json::json!({"error": "gpu: no CUDA here", "running": null, "last": null}),
            0.0,
        );
        assert_eq!(out, "proof of resource: NOT PROVING: gpu: no CUDA here\n");
    }
}

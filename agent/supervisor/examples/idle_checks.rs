//! The steady-state cost of supervision on this machine, natively: ten
//! services with 1 s HTTP health checks, run by the agent's own check
//! machinery (`health::Schedule`) on the agent's runtime shape (one
//! thread). The ten HTTP servers run in a child process, so their
//! work is not counted. Prints CPU % and RSS of this process.
//!
//!   cargo run --release -p supervisor --example idle_checks [SECONDS]

use std::time::{Duration, Instant};

use supervisor::health::Schedule;
use supervisor::manifest::Service;

const SERVICES: u16 = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve(args.get(2).ok_or("--serve BASE_PORT")?.parse()?);
    }
    let secs: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(30);
    let base = free_base_port()?;
    let mut servers = std::process::Command::new(std::env::current_exe()?)
        .args(["--serve", &base.to_string()])
        .spawn()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(measure(base, secs));
    let _ = servers.kill();
    let _ = servers.wait();
    let (cpu, checks, failed) = result?;
    println!(
        "{SERVICES} services, 1 s HTTP checks, {secs} s: {checks} checks ({failed} failed), CPU {:.3} %, RSS {} KiB",
        cpu * 100.0,
        rss_kib()
    );
    Ok(())
}

async fn measure(base: u16, secs: u64) -> Result<(f64, u64, u64), Box<dyn std::error::Error>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..SERVICES {
        let check = match std::env::var("CHECK").as_deref() {
            Ok("tcp") => {
                serde_json::json!({"type": "tcp", "address": format!("127.0.0.1:{}", base + i)})
            }
            _ => {
                serde_json::json!({"type": "http", "url": format!("http://127.0.0.1:{}/health", base + i)})
            }
        };
        let service: Service = serde_json::from_value(serde_json::json!({
            "name": format!("c{i}"), "unit": format!("c{i}.service"), "kind": "generic",
            "health": {"check": check, "interval_secs": 1, "timeout_secs": 1}
        }))?;
        let mut schedule = Schedule::for_service(&service)?.ok_or("no check")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut next = tokio::time::Instant::now();
            loop {
                next += schedule.interval;
                let o = schedule.run().await;
                if tx.send(o.healthy).is_err() {
                    return;
                }
                tokio::time::sleep_until(next).await;
            }
        });
    }
    // Warm up (servers starting, first connections), then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    while rx.try_recv().is_ok() {}
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let (mut checks, mut failed) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(ok)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        checks += 1;
        failed += u64::from(!ok);
    }
    let cpu = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
    Ok((cpu, checks, failed))
}

/// The servers: one HTTP/1.1 listener per service, answering 200 and
/// closing, as busybox httpd does.
fn serve(base: u16) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for i in 0..SERVICES {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", base + i)).await?;
            tokio::spawn(async move {
                while let Ok((mut c, _)) = l.accept().await {
                    let mut buf = [0u8; 1024];
                    let _ = c.read(&mut buf).await;
                    let _ = c
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
                        .await;
                }
            });
        }
        std::future::pending::<()>().await;
        Ok::<(), std::io::Error>(())
    })?;
    Ok(())
}

fn free_base_port() -> std::io::Result<u16> {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let p = l.local_addr()?.port();
        drop(l);
        if p < 60000
            && (0..SERVICES).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok())
        {
            return Ok(p);
        }
    }
    Err(std::io::Error::other("no free port range on loopback"))
}

/// User + system CPU seconds of this process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

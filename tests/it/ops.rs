//! Every role as an operator runs it: `herald api`, `herald worker` and `herald scheduler`
//! processes started before their database is reachable wait for it (alive, not ready, the api
//! answering 503 problems), become ready when it appears, turn unready when it goes away and
//! ready again when it returns, without being restarted. Workers and schedulers serve
//! `/healthz`, `/readyz` and `/metrics` on `HERALD_OPS_LISTEN`, and a worker's metrics carry
//! the queue, the pools and the job outcomes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{DbProxy, TestDb, free_port, herald_binary};

/// A `herald <role>` process on `database_url`, its ops (or, for the api, its own) address on
/// `port`.
fn role(role: &str, database_url: &str, port: u16) -> Child {
    let mut command = Command::new(herald_binary());
    command
        .arg(role)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("HERALD_ENCRYPTION_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .env("HERALD_LISTEN", format!("127.0.0.1:{}", if role == "api" { port } else { free_port() }))
        .env("HERALD_OPS_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_QUEUE__POLL_INTERVAL_MS", "100")
        .env("HERALD_LOG", "warn")
        // Kubernetes puts these in every pod of a namespace with a Service named `herald`.
        .env("HERALD_PORT", "tcp://10.96.0.12:8080")
        .env("HERALD_SERVICE_HOST", "10.96.0.12")
        .env("HERALD_SERVICE_PORT", "8080")
        .env("HERALD_PORT_8080_TCP_ADDR", "10.96.0.12")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().expect("start herald")
}

struct Roles {
    children: Vec<(String, Child, u16)>,
    http: reqwest::Client,
}

impl Roles {
    async fn status(&self, port: u16, path: &str) -> Option<(StatusCode, String)> {
        let response = self.http.get(format!("http://127.0.0.1:{port}{path}")).send().await.ok()?;
        let status = response.status();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// Waits until every role's `/readyz` answers `want`; the last answers on failure.
    async fn all_ready(&mut self, want: StatusCode, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            for (name, child, _) in &mut self.children {
                assert!(child.try_wait().unwrap().is_none(), "herald {name} exited");
            }
            let mut answers = Vec::new();
            for (name, _, port) in &self.children {
                answers.push((name.clone(), self.status(*port, "/readyz").await));
            }
            if answers.iter().all(|(_, answer)| answer.as_ref().is_some_and(|(status, _)| *status == want)) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "not all {want}: {answers:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn every_role_waits_for_its_database_and_follows_it_down_and_back() {
    let db = TestDb::new().await;
    let mut proxy = DbProxy::for_url(&db.url);
    let url = proxy.url(&db.url);
    let mut roles = Roles { children: Vec::new(), http: reqwest::Client::new() };
    for name in ["api", "worker", "scheduler"] {
        let port = free_port();
        roles.children.push((name.into(), role(name, &url, port), port));
    }
    let api_port = roles.children[0].2;

    // No database yet: alive, not ready, the api's other paths a 503 problem.
    roles.all_ready(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(20)).await;
    for (_, _, port) in &roles.children {
        let (status, _) = roles.status(*port, "/healthz").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let (_, body) = roles.status(*port, "/readyz").await.unwrap();
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "database_unreachable", "{problem}");
    }
    let response = roles.http.get(format!("http://127.0.0.1:{api_port}/v1/posts")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "starting");

    // The database appears: every role migrates (or finds it migrated) and is ready.
    proxy.start().await;
    roles.all_ready(StatusCode::OK, Duration::from_secs(30)).await;
    let response = roles.http.get(format!("http://127.0.0.1:{api_port}/v1/posts")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "the api serves its routes");

    // A worker's metrics: its pools and claims (the scheduler's first prune job is claimed at
    // once). A scheduler's: its pool.
    let (worker_port, scheduler_port) = (roles.children[1].2, roles.children[2].2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, worker) = roles.status(worker_port, "/metrics").await.unwrap();
        let (_, scheduler) = roles.status(scheduler_port, "/metrics").await.unwrap();
        let wanted = ["herald_db_connections{pool=\"claims\"", "herald_jobs_claimed_total{queue=\"maintenance\"} 1"];
        if wanted.iter().all(|metric| worker.contains(metric))
            && scheduler.contains("herald_db_connections{pool=\"main\"")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "worker:\n{worker}\nscheduler:\n{scheduler}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The database goes away: nobody exits, nobody is ready. It returns: all ready again.
    proxy.stop();
    roles.all_ready(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(20)).await;
    proxy.start().await;
    roles.all_ready(StatusCode::OK, Duration::from_secs(20)).await;
}

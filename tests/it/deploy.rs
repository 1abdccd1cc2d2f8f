//! `deploy/kubernetes/base` holds together: every manifest validates against the Kubernetes
//! schemas (`kubernetes-validate`, pinned, in a throwaway virtualenv), the KEDA objects against
//! the fields of KEDA's CRDs they use, the kustomization lists every file, names refer to what
//! exists (config, secrets, probe ports, selectors, the scaled Deployment), every setting they
//! set is one of herald's, the pods outlast herald's own grace period, and the KEDA query runs
//! against a migrated database and counts the jobs that need a worker now.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use herald_shared::config::{KnownSettings, Variable};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestDb, python_venv};

const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/base")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(base())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every document of every file, parsed by the virtualenv's PyYAML (a dependency of
/// kubernetes-validate), by file name.
fn documents(venv: &Path) -> BTreeMap<String, Vec<Value>> {
    let script = "import sys, json, yaml, os\n\
                  json.dump({os.path.basename(f): [d for d in yaml.safe_load_all(open(f)) if d] for f in sys.argv[1:]}, sys.stdout)";
    let output =
        std::process::Command::new(venv.join("bin/python")).arg("-c").arg(script).args(manifests()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn all_of<'a>(documents: &'a BTreeMap<String, Vec<Value>>, kind: &str) -> Vec<&'a Value> {
    documents.values().flatten().filter(|document| document["kind"] == kind).collect()
}

fn named<'a>(documents: &'a BTreeMap<String, Vec<Value>>, kind: &str, name: &str) -> &'a Value {
    all_of(documents, kind)
        .into_iter()
        .find(|document| document["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

/// The fields of KEDA's `ScaledObject` and `TriggerAuthentication` CRDs (keda.sh/v1alpha1)
/// these manifests use, as their openAPIV3Schema declares them; anything else is refused.
fn keda_schema(kind: &str) -> Value {
    let metadata = json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}});
    let spec = match kind {
        "ScaledObject" => json!({
        "type": "object", "additionalProperties": false, "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": false,
                "properties": {"name": {"type": "string"}, "kind": {"type": "string"}, "apiVersion": {"type": "string"}}},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": {"type": "integer"},
            "cooldownPeriod": {"type": "integer"},
            "triggers": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["type", "metadata"], "additionalProperties": false,
                "properties": {
                    "type": {"type": "string"},
                    "name": {"type": "string"},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    "authenticationRef": {"type": "object", "required": ["name"], "additionalProperties": false,
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"}}}
                }}}
        }}),
        _ => json!({
            "type": "object", "additionalProperties": false,
            "properties": {"secretTargetRef": {"type": "array", "items": {
                "type": "object", "required": ["parameter", "name", "key"], "additionalProperties": false,
                "properties": {"parameter": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"}}}}}}),
    };
    json!({"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
           "properties": {"apiVersion": {"const": "keda.sh/v1alpha1"}, "metadata": metadata, "spec": spec}})
}

#[test]
fn the_manifests_validate_and_refer_to_what_exists() {
    let venv = python_venv("kubernetes-validate-venv", KUBERNETES_VALIDATE);
    let output = std::process::Command::new(venv.join("bin/kubernetes-validate"))
        .args(["--strict", "--quiet", "--kubernetes-version", "1.33"])
        .args(manifests())
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && !said.contains("ERROR"), "{said}");

    let documents = documents(&venv);
    // The kustomization lists every other file.
    let kustomization = &documents["kustomization.yaml"][0];
    let mut listed: Vec<&str> =
        kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    listed.sort_unstable();
    let files: Vec<&str> = documents.keys().map(String::as_str).filter(|file| *file != "kustomization.yaml").collect();
    assert_eq!(listed, files);

    // KEDA's objects, against the CRDs' fields.
    for kind in ["ScaledObject", "TriggerAuthentication"] {
        let schema = keda_schema(kind);
        let validator = jsonschema::validator_for(&schema).unwrap();
        for document in all_of(&documents, kind) {
            let errors: Vec<String> = validator.iter_errors(document).map(|error| error.to_string()).collect();
            assert!(errors.is_empty(), "{kind}: {errors:?}");
        }
    }
    let scaled = named(&documents, "ScaledObject", "herald-worker");
    let target = scaled["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
    assert_eq!(
        named(&documents, "Deployment", target)["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["worker"])
    );
    assert!(named(&documents, "Deployment", target)["spec"].get("replicas").is_none(), "KEDA owns the worker count");
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "postgresql");
    let auth = named(&documents, "TriggerAuthentication", trigger["authenticationRef"]["name"].as_str().unwrap());
    let reference = &auth["spec"]["secretTargetRef"][0];
    assert_eq!(reference["parameter"], "connection");
    let secret = named(&documents, "Secret", reference["name"].as_str().unwrap());
    assert!(secret["stringData"].get(reference["key"].as_str().unwrap()).is_some());

    // Settings: every key is one of herald's (or DATABASE_URL); the placeholders are refused.
    let settings = KnownSettings::of_config();
    let config = named(&documents, "ConfigMap", "herald-config");
    let mut keys: Vec<(&String, &Value)> = config["data"].as_object().unwrap().iter().collect();
    keys.extend(secret["stringData"].as_object().unwrap().iter());
    for (key, value) in keys {
        if key == "DATABASE_URL" {
            continue;
        }
        let below = key.strip_prefix("HERALD_").unwrap_or_else(|| panic!("{key} is not herald's"));
        assert_eq!(settings.classify(below, value.as_str().unwrap()), Variable::Setting, "{key}");
    }
    assert!(
        herald_shared::config::decode_encryption_key(secret["stringData"]["HERALD_ENCRYPTION_KEY"].as_str().unwrap())
            .is_none()
    );
    let grace: u64 = config["data"]["HERALD_SHUTDOWN_GRACE_SECS"].as_str().unwrap().parse().unwrap();

    // Each role: its config and secret exist, probes name a declared port, the pod outlasts
    // herald's grace period, a disruption budget and (for the api) the Service select it.
    let budgets = all_of(&documents, "PodDisruptionBudget");
    for deployment in all_of(&documents, "Deployment") {
        let pod = &deployment["spec"]["template"];
        let labels = &pod["metadata"]["labels"];
        assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
        assert!(pod["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap() > grace + 5);
        let container = &pod["spec"]["containers"][0];
        for source in container["envFrom"].as_array().unwrap() {
            if let Some(name) = source["configMapRef"]["name"].as_str() {
                named(&documents, "ConfigMap", name);
            }
            if let Some(name) = source["secretRef"]["name"].as_str() {
                named(&documents, "Secret", name);
            }
        }
        let ports: Vec<&Value> = container["ports"].as_array().unwrap().iter().map(|port| &port["name"]).collect();
        for probe in ["livenessProbe", "readinessProbe"] {
            assert!(ports.contains(&&container[probe]["httpGet"]["port"]), "{probe} port");
        }
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert!(budgets.iter().any(|budget| &budget["spec"]["selector"]["matchLabels"] == labels), "no budget");
    }
    assert_eq!(named(&documents, "Deployment", "herald-scheduler")["spec"]["replicas"], 2);
    let service = named(&documents, "Service", "herald");
    assert_eq!(
        &service["spec"]["selector"],
        &named(&documents, "Deployment", "herald-api")["spec"]["template"]["metadata"]["labels"]
    );
}

/// The ScaledObject's query, read from the manifest as KEDA reads it.
fn keda_query() -> String {
    let text = std::fs::read_to_string(base().join("worker-scaling.yaml")).unwrap();
    let line = text.lines().find_map(|line| line.trim().strip_prefix("query: ")).expect("a query line");
    line.trim_matches('"').to_owned()
}

#[tokio::test]
async fn the_keda_query_counts_the_jobs_that_need_a_worker_now() {
    let db = TestDb::new().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let count = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(keda_query())).fetch_one(&pool).await.expect("the query runs")
    };
    assert_eq!(count(pool.clone()).await, 0);
    // 3 due, 2 due later, 4 running; finished jobs live in another table and never count.
    let insert = |state: &'static str, run_at: &'static str| {
        let pool = pool.clone();
        async move {
            let (lease, worker) = if state == "running" {
                ("now() + interval '30 seconds'", "gen_random_uuid()")
            } else {
                ("NULL", "NULL")
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO jobs (id, kind, queue, payload, max_attempts, state, run_at, lease_until, worker_id, attempt)
                 VALUES ($1, 'maintenance.prune', 'maintenance', '{{}}', 3, '{state}', {run_at}, {lease}, {worker}, {})",
                i32::from(state == "running")
            )))
            .bind(Uuid::now_v7())
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    for _ in 0..3 {
        insert("available", "now() - interval '1 second'").await;
    }
    for _ in 0..2 {
        insert("available", "now() + interval '1 hour'").await;
    }
    for _ in 0..4 {
        insert("running", "now() - interval '1 minute'").await;
    }
    assert_eq!(count(pool.clone()).await, 7);
    pool.close().await;
}

use chrono::Utc;
use selfheal_core::{ErrorKind, Incident, IncidentStatus, Severity, Uuid};

use super::*;
use crate::DryRunExecutor;

fn ctx(params: Value) -> ActionContext {
    ActionContext {
        incident: Incident {
            stack: None,
            id: Uuid::new_v4(),
            target: "api".into(),
            fingerprint: "0123456789abcdef".into(),
            template: "upstream failed".into(),
            related: Vec::new(),
            pattern: Some("api_down".into()),
            status: IncidentStatus::Open,
            severity: Severity::High,
            occurrences: 3,
            samples: Vec::new(),
            opened_at: Utc::now(),
            last_seen: Utc::now(),
            closed_at: None,
            reason: String::new(),
        },
        target: "api".into(),
        params,
    }
}

/// Plans and executes `strategy` with `params` through a dry run; the argv it produced.
async fn argv(strategy: &CommandStrategy, params: Value) -> Vec<Vec<String>> {
    let plan = strategy.plan(&ctx(params)).await.unwrap();
    let dry = Arc::new(DryRunExecutor::new());
    let outcome = strategy.execute(&plan, dry.clone()).await.unwrap();
    assert!(outcome.success);
    dry.recorded()
        .into_iter()
        .map(|c| std::iter::once(c.program).chain(c.args).collect())
        .collect()
}

fn v(argv: &[&str]) -> Vec<Vec<String>> {
    vec![argv.iter().map(|s| (*s).to_owned()).collect()]
}

#[tokio::test]
async fn the_stock_strategies_produce_the_exact_argv() {
    assert_eq!(
        argv(
            &CommandStrategy::systemd_restart(),
            json!({"unit": "api@2.service"})
        )
        .await,
        v(&["systemctl", "restart", "api@2.service"])
    );
    assert_eq!(
        argv(
            &CommandStrategy::docker_restart(),
            json!({"container": "redis-cache"})
        )
        .await,
        v(&["docker", "restart", "redis-cache"])
    );
    assert_eq!(
        argv(
            &CommandStrategy::kubernetes_rollout_restart(),
            json!({"deployment": "checkout"})
        )
        .await,
        v(&[
            "kubectl",
            "rollout",
            "restart",
            "deployment/checkout",
            "--namespace",
            "default"
        ])
    );
    assert_eq!(
        argv(
            &CommandStrategy::kubernetes_scale(),
            json!({"deployment": "checkout", "replicas": 6, "namespace": "prod"})
        )
        .await,
        v(&[
            "kubectl",
            "scale",
            "deployment/checkout",
            "--replicas=6",
            "--namespace",
            "prod"
        ])
    );
    assert_eq!(
        argv(
            &CommandStrategy::kubernetes_rollback(),
            json!({"deployment": "checkout"})
        )
        .await,
        v(&[
            "kubectl",
            "rollout",
            "undo",
            "deployment/checkout",
            "--namespace",
            "default"
        ])
    );
}

#[tokio::test]
async fn the_plan_previews_each_command_with_its_timeout() {
    let scale = CommandStrategy::kubernetes_scale();
    let plan = scale
        .plan(&ctx(json!({"deployment": "checkout", "replicas": "3"})))
        .await
        .unwrap();
    assert_eq!(
        plan.preview(),
        "kubectl scale deployment/checkout --replicas=3 --namespace default"
    );
    assert_eq!(plan.risk, Risk::High);
    assert!(scale.destructive());
    assert!(CommandStrategy::kubernetes_rollback().destructive());
    assert!(!CommandStrategy::docker_restart().destructive());
    let command = plan.steps[0].command.as_ref().unwrap();
    assert_eq!(command.timeout, Some(CommandStrategy::DEFAULT_TIMEOUT));
}

#[test]
fn injection_attempts_are_refused() {
    let k8s = CommandStrategy::kubernetes_rollout_restart();
    for bad in [
        json!({"deployment": "api; rm -rf /"}),
        json!({"deployment": "api && reboot"}),
        json!({"deployment": "$(reboot)"}),
        json!({"deployment": "`id`"}),
        json!({"deployment": "--all"}),
        json!({"deployment": "-A"}),
        json!({"deployment": "api\nreboot"}),
        json!({"deployment": "../../etc"}),
        json!({"deployment": "a b"}),
        json!({"deployment": ""}),
        json!({"deployment": "x".repeat(300)}),
        json!({"deployment": ["api"]}),
        json!({"deployment": "api", "namespace": "--all-namespaces"}),
        json!({"deployment": "api", "kubeconfig": "/tmp/evil"}),
        json!("api"),
        json!({}),
    ] {
        let err = k8s.validate(&bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
    }
    let scale = CommandStrategy::kubernetes_scale();
    for bad in [
        json!({"deployment": "api", "replicas": 51}),
        json!({"deployment": "api", "replicas": -1}),
        json!({"deployment": "api", "replicas": "3 --all"}),
        json!({"deployment": "api", "replicas": 2.5}),
    ] {
        assert!(scale.validate(&bad).is_err(), "{bad}");
    }
    let unit = CommandStrategy::systemd_restart();
    assert!(
        unit.validate(&json!({"unit": "api.service;reboot"}))
            .is_err()
    );
}

#[tokio::test]
async fn a_refused_parameter_never_reaches_the_executor() {
    let k8s = CommandStrategy::kubernetes_rollout_restart();
    let err = k8s
        .plan(&ctx(json!({"deployment": "api; reboot"})))
        .await
        .unwrap_err();
    assert!(err.message().contains("`deployment`"), "{err}");
    // A stored plan edited into another command is refused at execute.
    let mut plan = k8s.plan(&ctx(json!({"deployment": "api"}))).await.unwrap();
    plan.steps[0].command.as_mut().unwrap().args[3] = "deployment/other".into();
    let dry = Arc::new(DryRunExecutor::new());
    assert!(k8s.execute(&plan, dry.clone()).await.is_err());
    assert!(dry.recorded().is_empty());
}

#[tokio::test]
async fn hosts_pin_allow_and_default_values() {
    let restart = CommandStrategy::docker_restart()
        .allow("container", ["redis-cache", "worker"])
        .named("restart_cache");
    assert_eq!(restart.name(), "restart_cache");
    assert!(restart.validate(&json!({"container": "postgres"})).is_err());
    assert!(restart.validate(&json!({"container": "worker"})).is_ok());

    let pinned = CommandStrategy::kubernetes_rollout_restart().fixed("namespace", "prod");
    assert!(
        pinned
            .validate(&json!({"deployment": "api", "namespace": "kube-system"}))
            .is_err()
    );
    assert_eq!(
        argv(&pinned, json!({"deployment": "api"})).await,
        v(&[
            "kubectl",
            "rollout",
            "restart",
            "deployment/api",
            "--namespace",
            "prod"
        ])
    );
    let schema = pinned.param_schema();
    assert_eq!(schema["required"], json!(["deployment"]));
    assert!(schema["properties"].get("namespace").is_none());
}

#[tokio::test]
async fn run_command_runs_its_steps_in_order_and_rolls_back_when_told() {
    let strategy = CommandStrategy::new("drain_queue", ["queuectl", "drain", "{queue}"])
        .unwrap()
        .then(["queuectl", "resume", "{queue}"])
        .unwrap()
        .rollback_with(["queuectl", "restore", "{queue}"])
        .unwrap();
    assert_eq!(
        argv(&strategy, json!({"queue": "emails"})).await,
        vec![
            vec!["queuectl".to_owned(), "drain".into(), "emails".into()],
            vec!["queuectl".to_owned(), "resume".into(), "emails".into()],
        ]
    );
    let plan = strategy
        .plan(&ctx(json!({"queue": "emails"})))
        .await
        .unwrap();
    assert!(plan.reversible);
    let dry = Arc::new(DryRunExecutor::new());
    let rolled = strategy.rollback(&plan, dry.clone()).await.unwrap();
    assert!(rolled.is_some());
    assert_eq!(
        dry.recorded(),
        vec![
            Command::new("queuectl", ["restore", "emails"])
                .timeout(CommandStrategy::DEFAULT_TIMEOUT)
        ]
    );
    assert!(
        CommandStrategy::docker_restart()
            .rollback(&plan, dry)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_failing_command_stops_the_run_with_its_output() {
    let strategy = CommandStrategy::new("two_steps", ["sh", "-c", "echo first; exit 3"])
        .unwrap()
        .then(["echo", "never"])
        .unwrap();
    let plan = strategy.plan(&ctx(json!({}))).await.unwrap();
    let outcome = strategy
        .execute(&plan, Arc::new(crate::ProcessExecutor::new()))
        .await
        .unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.stdout, "first\n");
}

#[test]
fn malformed_templates_are_refused() {
    for bad in [
        vec![],
        vec!["{prog}", "x"],
        vec!["kubectl", "{unclosed"],
        vec!["kubectl", "closed}"],
        vec!["kubectl", "{a{b}}"],
        vec!["kubectl", "{bad name}"],
    ] {
        assert!(CommandStrategy::new("x", bad.clone()).is_err(), "{bad:?}");
    }
    assert!(ParamRule::pattern("(").is_err());
}

//! Strategies that run commands through the healer's executor, built from argument-vector
//! templates: restart a systemd unit, a Docker container or a Kubernetes deployment,
//! scale replicas, roll a deployment back, run a command.

mod template;

pub use template::ParamRule;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Command, Error, Executor, RemediationPlan, Result, Risk, Strategy,
};
use serde_json::{Value, json};
use tracing::{instrument, warn};

use template::ArgTemplate;

/// A strategy that runs one or more argument-vector templates through the executor.
///
/// Placeholders (`{unit}`, `deployment/{deployment}`, `--replicas={replicas}`) are filled
/// from the fix's parameters, the host's [`default`](CommandStrategy::default_param)s or
/// its [`fixed`](CommandStrategy::fixed) values, each checked against its
/// [`ParamRule`] first. Values never pass through a shell, and every rule refuses a value
/// starting with `-`, so a parameter cannot smuggle in an option either. Unknown
/// parameters are refused.
///
/// The stock ones: [`systemd_restart`](CommandStrategy::systemd_restart),
/// [`docker_restart`](CommandStrategy::docker_restart),
/// [`kubernetes_rollout_restart`](CommandStrategy::kubernetes_rollout_restart),
/// [`kubernetes_scale`](CommandStrategy::kubernetes_scale) and
/// [`kubernetes_rollback`](CommandStrategy::kubernetes_rollback) (destructive: it
/// waits for approval); [`CommandStrategy::new`] for your own (`run_command`).
///
/// ```
/// use selfheal_core::Strategy;
/// use selfheal_strategies::CommandStrategy;
/// # fn main() -> selfheal_core::Result<()> {
/// let restart = CommandStrategy::kubernetes_rollout_restart().default_param("namespace", "prod");
/// assert_eq!(restart.name(), "restart_deployment");
/// restart.validate(&serde_json::json!({"deployment": "checkout-api"}))?;
/// // Not a name: refused before anything is planned.
/// assert!(restart.validate(&serde_json::json!({"deployment": "x; rm -rf /"})).is_err());
/// assert!(restart.validate(&serde_json::json!({"deployment": "--all"})).is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CommandStrategy {
    name: String,
    commands: Vec<ArgTemplate>,
    rollback: Vec<ArgTemplate>,
    rules: BTreeMap<String, ParamRule>,
    defaults: BTreeMap<String, Value>,
    fixed: BTreeMap<String, Value>,
    risk: Risk,
    destructive: bool,
    timeout: Duration,
}

impl CommandStrategy {
    /// Default timeout of each command.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// A strategy named `name` that runs `argv` (program first). Every placeholder gets
    /// the [`ParamRule::Name`] rule until [`param`](CommandStrategy::param) says
    /// otherwise. Risk medium, not destructive, 60 s timeout.
    ///
    /// Errors: `InvalidInput` for an empty argv, a placeholder in the program, or
    /// malformed braces.
    pub fn new<I, S>(name: impl Into<String>, argv: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let template = ArgTemplate::new(argv)?;
        let rules = template
            .names()
            .into_iter()
            .map(|n| (n, ParamRule::Name))
            .collect();
        Ok(CommandStrategy {
            name: name.into(),
            commands: vec![template],
            rollback: Vec::new(),
            rules,
            defaults: BTreeMap::new(),
            fixed: BTreeMap::new(),
            risk: Risk::Medium,
            destructive: false,
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// `systemctl restart {unit}` as `restart_systemd_unit`.
    pub fn systemd_restart() -> Self {
        Self::stock("restart_systemd_unit", ["systemctl", "restart", "{unit}"]).param(
            "unit",
            ParamRule::pattern(r"[A-Za-z0-9][A-Za-z0-9:_.@\\-]*").expect("valid regex"),
        )
    }

    /// `docker restart {container}` as `restart_container`.
    pub fn docker_restart() -> Self {
        Self::stock("restart_container", ["docker", "restart", "{container}"])
    }

    /// `kubectl rollout restart deployment/{deployment} --namespace {namespace}` as
    /// `restart_deployment`.
    pub fn kubernetes_rollout_restart() -> Self {
        Self::stock(
            "restart_deployment",
            [
                "kubectl",
                "rollout",
                "restart",
                "deployment/{deployment}",
                "--namespace",
                "{namespace}",
            ],
        )
        .default_param("namespace", "default")
        .timeout(Duration::from_secs(30))
    }

    /// `kubectl scale deployment/{deployment} --replicas={replicas} --namespace
    /// {namespace}` as `scale_replicas`, replicas 0 to 50 (change it with
    /// [`param`](CommandStrategy::param)). Destructive (capacity changes): it waits for
    /// approval.
    pub fn kubernetes_scale() -> Self {
        Self::stock(
            "scale_replicas",
            [
                "kubectl",
                "scale",
                "deployment/{deployment}",
                "--replicas={replicas}",
                "--namespace",
                "{namespace}",
            ],
        )
        .param("replicas", ParamRule::Integer { min: 0, max: 50 })
        .default_param("namespace", "default")
        .set_destructive(true)
        .risk(Risk::High)
    }

    /// `kubectl rollout undo deployment/{deployment} --namespace {namespace}` as
    /// `rollback_deployment`. Destructive: it waits for approval.
    pub fn kubernetes_rollback() -> Self {
        Self::stock(
            "rollback_deployment",
            [
                "kubectl",
                "rollout",
                "undo",
                "deployment/{deployment}",
                "--namespace",
                "{namespace}",
            ],
        )
        .default_param("namespace", "default")
        .set_destructive(true)
        .risk(Risk::High)
    }

    fn stock<const N: usize>(name: &str, argv: [&str; N]) -> Self {
        Self::new(name, argv).expect("the stock templates are valid")
    }

    /// Sets the rule of parameter `name` (adding a parameter no template uses is allowed:
    /// it is then only validated).
    pub fn param(mut self, name: impl Into<String>, rule: ParamRule) -> Self {
        self.rules.insert(name.into(), rule);
        self
    }

    /// Restricts parameter `name` to these values.
    pub fn allow<I, S>(self, name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.param(
            name,
            ParamRule::OneOf(values.into_iter().map(Into::into).collect()),
        )
    }

    /// The value of `name` when the fix's parameters do not give one.
    pub fn default_param(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.defaults.insert(name.into(), value.into());
        self
    }

    /// Pins `name` to `value`: a fix that gives another value is refused.
    pub fn fixed(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fixed.insert(name.into(), value.into());
        self
    }

    /// Runs `argv` too, after the commands so far.
    pub fn then<I, S>(mut self, argv: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let template = ArgTemplate::new(argv)?;
        for n in template.names() {
            self.rules.entry(n).or_insert(ParamRule::Name);
        }
        self.commands.push(template);
        Ok(self)
    }

    /// What undoes it: `argv`, run when verification fails. Without one it cannot be
    /// rolled back.
    pub fn rollback_with<I, S>(mut self, argv: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let template = ArgTemplate::new(argv)?;
        for n in template.names() {
            self.rules.entry(n).or_insert(ParamRule::Name);
        }
        self.rollback.push(template);
        Ok(self)
    }

    /// The plan's risk (default medium).
    pub fn risk(mut self, risk: Risk) -> Self {
        self.risk = risk;
        self
    }

    /// Whether it waits for approval by default (default false).
    pub fn set_destructive(mut self, destructive: bool) -> Self {
        self.destructive = destructive;
        self
    }

    /// Each command's timeout (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Renames it (to register two of one kind).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Every parameter value, checked: fixed, then given, then defaults.
    fn values(&self, params: &Value) -> Result<BTreeMap<String, String>> {
        let given = match params {
            Value::Null => serde_json::Map::new(),
            Value::Object(map) => map.clone(),
            other => {
                return Err(Error::invalid(format!(
                    "`{}` takes an object of parameters, got {other}",
                    self.name
                )));
            }
        };
        for key in given.keys() {
            if !self.rules.contains_key(key) {
                return Err(Error::invalid(format!(
                    "`{}` has no parameter `{key}`; it takes {}",
                    self.name,
                    self.rules
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mut values = BTreeMap::new();
        for (name, rule) in &self.rules {
            let value = match (self.fixed.get(name), given.get(name)) {
                (Some(fixed), Some(asked)) if fixed != asked => {
                    return Err(Error::invalid(format!(
                        "parameter `{name}` is fixed to {fixed} for `{}`; remove it from the fix's params",
                        self.name
                    )));
                }
                (Some(fixed), _) => fixed,
                (None, Some(asked)) => asked,
                (None, None) => match self.defaults.get(name) {
                    Some(d) => d,
                    None => {
                        return Err(Error::invalid(format!(
                            "`{}` needs parameter `{name}`; give it in the fix's params",
                            self.name
                        )));
                    }
                },
            };
            values.insert(name.clone(), rule.check(name, value)?);
        }
        Ok(values)
    }

    fn render(&self, templates: &[ArgTemplate], params: &Value) -> Result<Vec<Command>> {
        let values = self.values(params)?;
        templates
            .iter()
            .map(|t| t.render(&values).map(|c| c.timeout(self.timeout)))
            .collect()
    }
}

/// Runs `commands` in order, stopping at the first failure; the last outcome, with the
/// whole run's duration and every command's output.
async fn run_all(commands: &[Command], executor: &Arc<dyn Executor>) -> Result<ActionOutcome> {
    let started = Instant::now();
    let mut combined = ActionOutcome::ok(std::time::Duration::ZERO);
    for command in commands {
        let outcome = executor.run(command).await?;
        combined.stdout.push_str(&outcome.stdout);
        combined.stderr.push_str(&outcome.stderr);
        combined.exit_code = outcome.exit_code;
        combined.success = outcome.success;
        if !outcome.success {
            warn!(command = %command.preview(), exit_code = ?outcome.exit_code, "command failed");
            break;
        }
    }
    combined.duration = started.elapsed();
    Ok(combined)
}

#[async_trait]
impl Strategy for CommandStrategy {
    fn name(&self) -> &str {
        &self.name
    }

    /// Every effect goes through the executor it is handed.
    fn dry_run_safe(&self) -> bool {
        true
    }

    fn destructive(&self) -> bool {
        self.destructive
    }

    fn validate(&self, params: &Value) -> Result<()> {
        self.values(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        let properties: serde_json::Map<String, Value> = self
            .rules
            .iter()
            .filter(|(n, _)| !self.fixed.contains_key(*n))
            .map(|(n, r)| (n.clone(), r.schema()))
            .collect();
        let required: Vec<&String> = self
            .rules
            .keys()
            .filter(|n| !self.fixed.contains_key(*n) && !self.defaults.contains_key(*n))
            .collect();
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
    }

    #[instrument(skip_all, fields(strategy = %self.name, target = %ctx.target), err)]
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let mut plan = RemediationPlan::new(self.name.clone(), ctx.target.clone()).risk(self.risk);
        for command in self.render(&self.commands, &ctx.params)? {
            plan = plan.command(command);
        }
        plan.reversible = !self.rollback.is_empty();
        plan.params = ctx.params.clone();
        Ok(plan)
    }

    #[instrument(skip_all, fields(strategy = %self.name, target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        // Run what the plan showed, after checking it is what these templates make of
        // its parameters (a stored plan cannot be edited into another command).
        let expected = self.render(&self.commands, &plan.params)?;
        let planned: Vec<Command> = plan
            .steps
            .iter()
            .filter_map(|s| s.command.clone())
            .collect();
        if planned != expected {
            return Err(Error::invalid(format!(
                "the plan's commands are not what `{}` makes of its parameters; plan again",
                self.name
            )));
        }
        run_all(&expected, &executor).await
    }

    async fn rollback(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        if self.rollback.is_empty() {
            return Ok(None);
        }
        let commands = self.render(&self.rollback, &plan.params)?;
        run_all(&commands, &executor).await.map(Some)
    }
}

#[cfg(test)]
mod tests;

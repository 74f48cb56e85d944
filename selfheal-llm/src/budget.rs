//! A token budget per hour, fed by the `usage` each provider reports.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::LlmError;

const HOUR: Duration = Duration::from_secs(3600);

/// Tokens allowed per hour, shared by every advisor given the same `Arc`. Before a
/// request the budget is checked; after it, the tokens the provider reports are
/// spent. One request may overshoot by its own size: cap that with `max_tokens`.
///
/// ```
/// use selfheal_llm::TokenBudget;
/// let budget = TokenBudget::per_hour(1_000);
/// budget.spend(400);
/// assert_eq!(budget.remaining(), 600);
/// ```
#[derive(Debug)]
pub struct TokenBudget {
    per_hour: u64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    spent: u64,
}

impl TokenBudget {
    /// A budget of `tokens` per hour, the hour starting now.
    pub fn per_hour(tokens: u64) -> Self {
        TokenBudget {
            per_hour: tokens,
            window: Mutex::new(Window {
                started: Instant::now(),
                spent: 0,
            }),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(w.started) >= HOUR {
            w.started = now;
            w.spent = 0;
        }
        w
    }

    /// Tokens left in the current hour.
    pub fn remaining(&self) -> u64 {
        self.per_hour.saturating_sub(self.window().spent)
    }

    /// Records `tokens` used.
    pub fn spend(&self, tokens: u64) {
        let mut w = self.window();
        w.spent = w.spent.saturating_add(tokens);
    }

    /// `Ok` while tokens are left; else when the budget renews.
    pub fn check(&self) -> Result<(), LlmError> {
        let w = self.window();
        if w.spent < self.per_hour {
            return Ok(());
        }
        Err(LlmError::BudgetSpent {
            limit: self.per_hour,
            resets_in: HOUR.saturating_sub(w.started.elapsed()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spent_budget_refuses_until_the_hour_renews() {
        let budget = TokenBudget::per_hour(100);
        budget.check().unwrap();
        budget.spend(60);
        budget.check().unwrap();
        budget.spend(60);
        assert_eq!(budget.remaining(), 0);
        tokio::time::advance(Duration::from_secs(600)).await;
        match budget.check() {
            Err(LlmError::BudgetSpent { limit, resets_in }) => {
                assert_eq!((limit, resets_in), (100, Duration::from_secs(3000)));
            }
            other => panic!("expected BudgetSpent, got {other:?}"),
        }
        tokio::time::advance(Duration::from_secs(3000)).await;
        budget.check().unwrap();
        assert_eq!(budget.remaining(), 100);
    }
}

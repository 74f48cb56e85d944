//! The parser and the joiner on the shapes real loggers write.

use selfheal_core::{Level, MAX_FIELD_BYTES, MAX_FIELDS, Signal};

use super::*;

fn parser() -> LineParser {
    LineParser::new("orders")
}

fn parse(line: &str) -> Signal {
    parser()
        .parse(line)
        .unwrap_or_else(|| panic!("a signal: {line}"))
}

/// Every signal `lines` make, flushed at the end.
fn join(parser: LineParser, lines: &[&str]) -> Vec<Signal> {
    let mut joiner = Lines::new(parser);
    let mut out: Vec<Signal> = lines.iter().filter_map(|l| joiner.push(l)).collect();
    out.extend(joiner.flush());
    out
}

const POOL: &str = "pool timed out while waiting for an open connection";

#[test]
fn tracing_fmt_lines() {
    let s = parse(&format!(
        "2026-12-04T10:00:00.123456Z ERROR orders::db: query failed: {POOL}"
    ));
    assert_eq!(s.level, Level::Error);
    assert_eq!(s.message, format!("query failed: {POOL}"));
    assert_eq!(s.fields[LOGGER_FIELD], "orders::db");
    assert_eq!(s.target, "orders");
    assert_eq!(s.source, selfheal_core::SignalSource::Log);
    let s =
        parse("2026-12-04T10:00:00.123Z  WARN orders: batch job stuck; holding its connections");
    assert_eq!(s.level, Level::Warn);
    assert_eq!(s.message, "batch job stuck; holding its connections");
    assert!(
        parser()
            .parse("2026-12-04T10:00:00.123Z  INFO orders: listening on 127.0.0.1:1 (boot 1)")
            .is_none()
    );
    assert!(
        parser()
            .parse("2026-12-04T10:00:00.123Z DEBUG orders: query took 3ms")
            .is_none()
    );
}

#[test]
fn tracing_fmt_error_fields_join_the_message() {
    let s = parse(&format!(
        "2026-12-04T10:00:00.123456Z ERROR orders::db: query failed error={POOL} took_ms=250"
    ));
    assert_eq!(s.message, format!("query failed: {POOL}"));
    assert_eq!(s.fields["error"], POOL);
    assert_eq!(s.fields["took_ms"], "250");
    assert_eq!(s.fields[LOGGER_FIELD], "orders::db");
}

#[test]
fn ansi_colours_are_removed() {
    let s = parse(
        "\x1b[2m2026-12-04T10:00:00.123Z\x1b[0m \x1b[31mERROR\x1b[0m \x1b[2morders\x1b[0m\x1b[2m:\x1b[0m query failed",
    );
    assert_eq!(s.message, "query failed");
    assert_eq!(s.fields[LOGGER_FIELD], "orders");
}

#[test]
fn tracing_subscriber_json_with_an_error_field() {
    // `tracing_subscriber::fmt().json()`: the message and the fields under `fields`.
    let line = format!(
        r#"{{"timestamp":"2026-12-04T10:00:00.123456Z","level":"ERROR","fields":{{"message":"query failed","error":"{POOL}"}},"target":"orders::db","span":{{"id":7,"name":"request"}}}}"#
    );
    let s = parse(&line);
    assert_eq!(s.level, Level::Error);
    assert_eq!(
        s.message,
        format!("query failed: {POOL}"),
        "the error reaches the message"
    );
    assert_eq!(s.fields[LOGGER_FIELD], "orders::db");
    assert_eq!(s.fields["fields.error"], POOL);
    assert_eq!(s.fields["span.name"], "request");
    assert!(!s.fields.contains_key("level") && !s.fields.contains_key("fields.message"));
    // `.flatten_event(true)` puts the fields at the top.
    let s = parse(
        r#"{"timestamp":"2026-12-04T10:00:00Z","level":"WARN","message":"slow query","took_ms":3100,"target":"orders"}"#,
    );
    assert_eq!((s.level, s.message.as_str()), (Level::Warn, "slow query"));
    assert_eq!(s.fields["took_ms"], "3100");
    assert!(parser().parse(r#"{"timestamp":"2026-12-04T10:00:00Z","level":"INFO","fields":{"message":"ok"},"target":"orders"}"#).is_none());
}

#[test]
fn ecs_pino_and_python_json_errors() {
    let ecs = parse(
        r#"{"@timestamp":"2026-12-04T10:00:00Z","log":{"level":"error","logger":"com.acme.Orders"},"message":"request failed","error":{"type":"java.sql.SQLException","message":"too many clients","stack_trace":"java.sql.SQLException: too many clients\n\tat com.acme.Pool.get(Pool.java:42)"}}"#,
    );
    assert_eq!(ecs.message, "request failed: too many clients");
    assert_eq!(ecs.fields["error.type"], "java.sql.SQLException");
    assert_eq!(ecs.fields[LOGGER_FIELD], "com.acme.Orders");
    assert!(
        ecs.stack
            .as_deref()
            .unwrap()
            .contains("at com.acme.Pool.get")
    );

    let pino = parse(
        r#"{"level":50,"time":1764842400000,"msg":"request failed","err":{"type":"Error","message":"connect ECONNREFUSED 127.0.0.1:5432","stack":"Error: connect ECONNREFUSED 127.0.0.1:5432\n    at TCPConnectWrap.afterConnect (node:net:1555:16)"}}"#,
    );
    assert_eq!(
        pino.message,
        "request failed: connect ECONNREFUSED 127.0.0.1:5432"
    );
    assert!(
        pino.stack
            .as_deref()
            .unwrap()
            .starts_with("Error: connect ECONNREFUSED")
    );

    let python = parse(
        r#"{"levelname":"ERROR","name":"orders.db","message":"query failed","exc_info":"Traceback (most recent call last):\n  File \"/app/db.py\", line 12, in load\n    cur.execute(q)\npsycopg2.OperationalError: connection refused"}"#,
    );
    assert_eq!(
        python.message,
        "query failed: psycopg2.OperationalError: connection refused"
    );
    assert!(
        python
            .stack
            .as_deref()
            .unwrap()
            .starts_with("Traceback (most recent call last):")
    );
    assert!(
        !python.fields.contains_key("exc_info"),
        "the trace is the stack, not a field"
    );
}

#[test]
fn logfmt_lines() {
    let s = parse(&format!(
        r#"time=2026-12-04T10:00:00Z level=error msg="query failed" err="{POOL}" component=db"#
    ));
    assert_eq!(s.message, format!("query failed: {POOL}"));
    assert_eq!(s.fields["err"], POOL);
    assert_eq!(s.fields[LOGGER_FIELD], "db");
    assert!(
        parser()
            .parse(r#"time=2026-12-04T10:00:00Z level=info msg="ok""#)
            .is_none()
    );
    // slog's text handler writes upper-case levels.
    assert_eq!(
        parse(r#"time=2026-12-04T10:00:00Z level=WARN msg="disk 91% full""#).level,
        Level::Warn
    );
}

#[test]
fn the_message_holds_the_error_once() {
    let s = parse(&format!(
        r#"{{"level":"error","msg":"query failed: {POOL}","error":"{POOL}"}}"#
    ));
    assert_eq!(s.message, format!("query failed: {POOL}"));
    let s = parse(r#"{"level":"error","error":"connection refused"}"#);
    assert_eq!(s.message, "connection refused");
}

#[test]
fn lines_without_a_level_or_below_warn_are_not_signals() {
    let p = parser();
    for line in [
        "",
        "   ",
        "listening on 127.0.0.1:8080",
        r#"{"msg":"no level","error":"x"}"#,
        r#"{"level":"debug","msg":"x"}"#,
        r#"{"level":30,"msg":"x"}"#,
        "level=trace msg=x",
        "2026-12-04 10:00:00,123 - orders - INFO - started",
        "I1204 10:00:00.123456 12 main.go:42] ok",
    ] {
        assert!(p.parse(line).is_none(), "{line:?}");
    }
}

#[test]
fn broken_json_with_a_level_keeps_the_line() {
    let s = parse(r#"{"level":"error","msg":"cut sho"#);
    assert_eq!(s.message, r#"{"level":"error","msg":"cut sho"#);
}

#[test]
fn the_target_comes_from_the_configured_key_or_the_default() {
    let p = LineParser::new("fallback").target_key("service");
    let s = p
        .parse(r#"{"level":"error","msg":"x","service":"billing"}"#)
        .unwrap();
    assert_eq!(s.target, "billing");
    let s = p.parse(r#"{"level":"error","msg":"x"}"#).unwrap();
    assert_eq!(s.target, "fallback");
    let p = LineParser::new("fallback").target_key(LOGGER_FIELD);
    assert_eq!(
        p.parse("2026-12-04T10:00:00Z ERROR payments: declined")
            .unwrap()
            .target,
        "payments"
    );
    assert_eq!(
        p.parse("2026-12-04T10:00:00Z ERROR declined")
            .unwrap()
            .target,
        "fallback"
    );
}

#[test]
fn fields_are_bounded() {
    let keys: Vec<String> = (0..300).map(|i| format!(r#""k{i:03}":"v""#)).collect();
    let line = format!(
        r#"{{"level":"error","msg":"x",{},"big":"{}"}}"#,
        keys.join(","),
        "é".repeat(10_000)
    );
    let s = parse(&line);
    assert!(s.fields.len() <= MAX_FIELDS, "{}", s.fields.len());
    assert!(s.fields.values().all(|v| v.len() <= MAX_FIELD_BYTES));
}

#[test]
fn a_java_trace_after_its_log_line() {
    let got = join(
        parser(),
        &[
            "2026-12-04 10:00:00.123 ERROR 1234 --- [main] c.a.OrderService : request failed",
            "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.",
            "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)",
            "\tat com.acme.OrderService.load(OrderService.java:42)",
            "Caused by: java.net.ConnectException: Connection refused",
            "\t... 12 more",
            "2026-12-04 10:00:01.000  INFO 1234 --- [main] c.a.OrderService : retrying",
        ],
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].message,
        "request failed: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.",
        "what was thrown joins the log line's message"
    );
    assert_eq!(
        got[0].fields[ROOT_CAUSE_TYPE_FIELD],
        "java.net.ConnectException"
    );
    assert_eq!(
        got[0].fields[ROOT_CAUSE_MESSAGE_FIELD],
        "Connection refused"
    );
    let stack = got[0].stack.as_deref().unwrap();
    assert!(
        stack.starts_with("java.sql.SQLTransientConnectionException"),
        "{stack}"
    );
    assert!(stack.ends_with("\t... 12 more"), "{stack}");
    assert_eq!(stack.lines().count(), 5);
}

#[test]
fn a_python_traceback_after_logging_exception_and_alone() {
    let traceback = [
        "Traceback (most recent call last):",
        "  File \"/app/db.py\", line 12, in connect",
        "    pool.get()",
        "TimeoutError: pool timed out",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        "  File \"/app/api.py\", line 5, in handle",
        "    connect()",
        "RuntimeError: db down",
    ];
    let mut lines = vec!["2026-12-04 10:00:00,123 - orders - ERROR - request failed"];
    lines.extend(traceback);
    lines.push("2026-12-04 10:00:01,000 - orders - INFO - next");
    let got = join(parser(), &lines);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, "request failed: RuntimeError: db down");
    assert_eq!(got[0].fields[LOGGER_FIELD], "orders");
    assert_eq!(
        got[0].fields[ROOT_CAUSE_TYPE_FIELD], "TimeoutError",
        "the first of chained tracebacks"
    );
    assert_eq!(got[0].stack.as_deref().unwrap(), traceback.join("\n"));

    // Uncaught: the traceback alone is the signal, its last exception the message.
    let got = join(parser(), &traceback);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, "RuntimeError: db down");
    assert_eq!(got[0].level, Level::Error);
    assert_eq!(
        selfheal_core::fingerprint::stack_signature(got[0].stack.as_deref().unwrap()),
        selfheal_core::fingerprint::stack_signature(&traceback.join("\n")),
    );
}

#[test]
fn a_rust_panic_with_its_backtrace() {
    let got = join(
        parser(),
        &[
            "2026-12-04T10:00:00Z  INFO orders: started",
            "thread 'tokio-runtime-worker' panicked at src/orders.rs:42:9:",
            "called `Result::unwrap()` on an `Err` value: PoolTimedOut",
            "stack backtrace:",
            "   0: rust_begin_unwind",
            "   1: orders::load",
            "             at ./src/orders.rs:42:9",
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
            "2026-12-04T10:00:01Z  INFO orders: restarted",
        ],
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].message,
        "panicked at src/orders.rs:42:9: called `Result::unwrap()` on an `Err` value: PoolTimedOut"
    );
    assert_eq!(
        selfheal_core::fingerprint::stack_signature(got[0].stack.as_deref().unwrap()),
        "orders::load"
    );
}

#[test]
fn a_go_panic_and_a_node_stack() {
    let got = join(
        parser(),
        &[
            "panic: runtime error: invalid memory address or nil pointer dereference",
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a0f2b]",
            "",
            "goroutine 1 [running]:",
            "main.load(0x0)",
            "\t/app/main.go:12 +0x1b",
            "main.main()",
            "\t/app/main.go:20 +0x25",
            "exit status 2",
            r#"{"level":"error","msg":"request failed"}"#,
            "TypeError: Cannot read properties of undefined (reading 'id')",
            "    at handler (/app/server.js:10:15)",
        ],
    );
    assert_eq!(got.len(), 2, "`exit status 2` has no level: {got:#?}");
    assert_eq!(
        got[0].message,
        "panic: runtime error: invalid memory address or nil pointer dereference"
    );
    assert!(got[0].stack.as_deref().unwrap().contains("main.load(0x0)"));
    assert!(!got[0].stack.as_deref().unwrap().contains("exit status"));
    assert_eq!(
        got[1].message,
        "request failed: TypeError: Cannot read properties of undefined (reading 'id')"
    );
    assert!(
        got[1]
            .stack
            .as_deref()
            .unwrap()
            .contains("at handler (/app/server.js:10:15)")
    );
    assert!(got[1].stack.as_deref().unwrap().starts_with("TypeError"));
}

#[test]
fn a_runaway_trace_is_cut_and_the_rest_skipped() {
    let mut joiner = Lines::new(parser().max_stack_lines(100).max_stack_bytes(1 << 20));
    assert!(
        joiner
            .push("2026-12-04T10:00:00Z ERROR orders: deep recursion")
            .is_none()
    );
    let mut out = Vec::new();
    for i in 0..100_000 {
        out.extend(joiner.push(&format!("\tat com.acme.Deep.f{i}(Deep.java:1)")));
    }
    assert_eq!(out.len(), 1, "handed back at the bound");
    assert_eq!(out[0].stack.as_deref().unwrap().lines().count(), 100);
    assert_eq!(out[0].fields[TRUNCATED_FIELD], "true");
    assert_eq!(joiner.truncated(), 1);
    assert!(!joiner.is_pending(), "the rest is skipped, not held");
    // The next log line is read as usual.
    assert!(
        joiner
            .push("2026-12-04T10:00:01Z ERROR orders: next")
            .is_none()
    );
    assert_eq!(joiner.flush().unwrap().message, "next");

    // A byte bound cuts a long line on a char boundary.
    let mut joiner = Lines::new(parser().max_stack_bytes(1000));
    joiner.push("2026-12-04T10:00:00Z ERROR orders: x");
    let signal = joiner.push(&format!("\tat {}", "é".repeat(5_000))).unwrap();
    assert!(signal.stack.as_deref().unwrap().len() <= 1000);
}

#[test]
fn a_signal_waits_for_its_trace_until_the_next_line_or_a_flush() {
    let mut joiner = Lines::new(parser());
    assert!(
        joiner
            .push("2026-12-04T10:00:00Z ERROR orders: first")
            .is_none()
    );
    assert!(joiner.is_pending());
    let first = joiner
        .push("2026-12-04T10:00:00Z ERROR orders: second")
        .unwrap();
    assert_eq!(
        (first.message.as_str(), first.stack.as_deref()),
        ("first", None)
    );
    assert_eq!(joiner.flush().unwrap().message, "second");
    assert!(joiner.flush().is_none());
    // An INFO line ends a trace and is skipped.
    joiner.push("2026-12-04T10:00:00Z WARN orders: w");
    assert_eq!(
        joiner
            .push("2026-12-04T10:00:00Z  INFO orders: i")
            .unwrap()
            .message,
        "w"
    );
    assert!(!joiner.is_pending());
}

#[test]
fn three_blank_lines_end_a_trace() {
    let got = join(
        parser(),
        &[
            "2026-12-04T10:00:00Z ERROR orders: x",
            "",
            "",
            "",
            "\tat a.b(C.java:1)",
        ],
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].stack, None);
}

#[test]
fn crlf_line_ends() {
    let s = parse("2026-12-04T10:00:00Z ERROR orders: x\r");
    assert_eq!(s.message, "x");
}

/// The logger, as the JSON path keeps it: in [`LOGGER_FIELD`], the message without it.
fn logger_and_message(line: &str) -> (Option<String>, String, Level) {
    let s = parse(line);
    (s.fields.get(LOGGER_FIELD).cloned(), s.message, s.level)
}

#[test]
fn java_and_python_loggers_are_taken_out_of_the_message() {
    let cases = [
        (
            "2024-05-01 12:00:00.123 ERROR 4242 --- [nio-8080-exec-1] o.h.engine.jdbc.spi.SqlExceptionHelper   : Connection is not available, request timed out after 30000ms.",
            "o.h.engine.jdbc.spi.SqlExceptionHelper",
            "Connection is not available, request timed out after 30000ms.",
            Level::Error,
        ),
        (
            "2024-05-01T12:00:00.123Z  WARN 4242 --- [orders] [           main] o.s.b.a.OrdersApplication                : pool is small",
            "o.s.b.a.OrdersApplication",
            "pool is small",
            Level::Warn,
        ),
        (
            "12:00:00.123 [main] ERROR com.example.App - boom",
            "com.example.App",
            "boom",
            Level::Error,
        ),
        (
            "12:00:00.123 [main] WARN  App - retry: 3 - giving up",
            "App",
            "retry: 3 - giving up",
            Level::Warn,
        ),
        ("ERROR:root:boom", "root", "boom", Level::Error),
        (
            "ERROR:myapp.db:connection refused",
            "myapp.db",
            "connection refused",
            Level::Error,
        ),
        (
            "WARNING:myapp.db:slow: 3.2 s - retrying",
            "myapp.db",
            "slow: 3.2 s - retrying",
            Level::Warn,
        ),
        (
            "2024-05-01 12:00:00,123 - myapp.db - ERROR - connection refused",
            "myapp.db",
            "connection refused",
            Level::Error,
        ),
        (
            "2024-05-01 12:00:00,123 - root - CRITICAL - disk full - /var at 100%",
            "root",
            "disk full - /var at 100%",
            Level::Error,
        ),
    ];
    for (line, logger, message, level) in cases {
        assert_eq!(
            logger_and_message(line),
            (Some(logger.to_owned()), message.to_owned(), level),
            "{line}"
        );
    }
    // The logger can name the target, as with JSON's `logger`.
    let s = LineParser::new("orders")
        .target_key(LOGGER_FIELD)
        .parse("ERROR:payments:card declined")
        .unwrap();
    assert_eq!(s.target, "payments");
}

#[test]
fn lines_that_merely_hold_dashes_or_colons_lose_no_text() {
    let cases = [
        (
            "2024-05-01 12:00:00 ERROR Payment - refund failed",
            "Payment - refund failed",
        ),
        (
            "2024-05-01 12:00:00 ERROR connection refused - retrying in 5s",
            "connection refused - retrying in 5s",
        ),
        (
            "2024-05-01T12:00:00Z ERROR Error: ECONNREFUSED 127.0.0.1:5432",
            "Error: ECONNREFUSED 127.0.0.1:5432",
        ),
        (
            "2024-05-01T12:00:00Z ERROR Timeout: upstream did not answer",
            "Timeout: upstream did not answer",
        ),
        (
            "ERROR: duplicate key value violates unique constraint \"orders_pkey\"",
            "duplicate key value violates unique constraint \"orders_pkey\"",
        ),
        (
            "2024-05-01T12:00:00Z - ERROR - the timestamp is no logger",
            "the timestamp is no logger",
        ),
        (
            "2024-05-01 12:00:00,123 - ERROR - no name - here",
            "no name - here",
        ),
        (
            "ERROR:connection refused: retrying",
            "connection refused: retrying",
        ),
    ];
    for (line, message) in cases {
        let (logger, got, _) = logger_and_message(line);
        assert_eq!((logger, got.as_str()), (None, message), "{line}");
    }
    // After a target, the next `word:` is message.
    assert_eq!(
        logger_and_message("2026-12-04T10:00:00Z ERROR orders: timeout: upstream"),
        (
            Some("orders".to_owned()),
            "timeout: upstream".to_owned(),
            Level::Error
        )
    );
    // A span without fields, then the module path.
    assert_eq!(
        logger_and_message("2026-12-04T10:00:00Z ERROR request: orders::db: query failed").0,
        Some("orders::db".to_owned())
    );
}

/// A Spring Boot request that failed for want of a Postgres connection: the log line,
/// then the trace whose last `Caused by:` is what went wrong.
const SPRING_TRACE: [&str; 14] = [
    "2024-05-01 12:00:00.123 ERROR 4242 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : Servlet.service() for servlet [dispatcherServlet] threw exception",
    "org.springframework.transaction.CannotCreateTransactionException: Could not open JPA EntityManager for transaction",
    "\tat org.springframework.orm.jpa.JpaTransactionManager.doBegin(JpaTransactionManager.java:466)",
    "\tat com.acme.orders.OrderController.create(OrderController.java:42)",
    "Caused by: org.hibernate.exception.JDBCConnectionException: Unable to acquire JDBC Connection",
    "\tat org.hibernate.exception.internal.SQLStateConversionDelegate.convert(SQLStateConversionDelegate.java:98)",
    "\t... 52 common frames omitted",
    "Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.",
    "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)",
    "\t... 60 common frames omitted",
    "Caused by: org.postgresql.util.PSQLException: FATAL: sorry, too many clients already",
    "\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2713)",
    "\tat org.postgresql.Driver.connect(Driver.java:297)",
    "\t... 65 common frames omitted",
];

#[test]
fn a_spring_trace_says_what_was_thrown_and_its_root_cause() {
    let mut lines = SPRING_TRACE.to_vec();
    lines.push(
        "2024-05-01 12:00:01.000  INFO 4242 --- [nio-8080-exec-2] c.a.o.OrderController : ok",
    );
    let got = join(parser(), &lines);
    assert_eq!(got.len(), 1, "{got:?}");
    let s = &got[0];
    assert_eq!(
        s.message,
        "Servlet.service() for servlet [dispatcherServlet] threw exception: \
         org.springframework.transaction.CannotCreateTransactionException: Could not open JPA \
         EntityManager for transaction"
    );
    assert_eq!(
        s.fields[LOGGER_FIELD],
        "o.a.c.c.C.[.[.[/].[dispatcherServlet]"
    );
    assert_eq!(
        s.fields[ROOT_CAUSE_TYPE_FIELD],
        "org.postgresql.util.PSQLException"
    );
    assert_eq!(
        s.fields[ROOT_CAUSE_MESSAGE_FIELD],
        "FATAL: sorry, too many clients already"
    );
    assert_eq!(s.stack.as_deref().unwrap(), SPRING_TRACE[1..].join("\n"));

    // The matcher reads the root cause as it reads the message: the stock pattern's
    // regex, and keywords that only the root cause holds.
    assert!(selfheal_core::ERROR_FIELDS.contains(&ROOT_CAUSE_MESSAGE_FIELD));
    let no_stack = Signal {
        stack: None,
        ..s.clone()
    };
    let matcher = selfheal_core::Matcher::new(&[
        selfheal_core::Pattern::new("too_many_clients").regex("sorry, too many clients already"),
        selfheal_core::Pattern::new("clients_keywords").keywords(["sorry", "clients", "fatal"]),
    ]);
    let found: Vec<String> = matcher
        .matches(&no_stack)
        .into_iter()
        .map(|m| m.pattern)
        .collect();
    assert_eq!(found, ["too_many_clients", "clients_keywords"], "{found:?}");

    // A message that names the exception already is left as it is; so is a line that
    // carried its own stack (its error text joined the message when it was read).
    let mut named = SPRING_TRACE.to_vec();
    named[0] = "2024-05-01 12:00:00.123 ERROR 4242 --- [main] c.a.Orders : failed: org.springframework.transaction.CannotCreateTransactionException: Could not open JPA EntityManager for transaction";
    let got = join(parser(), &named);
    assert_eq!(
        got[0]
            .message
            .matches("CannotCreateTransactionException")
            .count(),
        1
    );
    // Spring's `… with root cause`: the root cause is the trace's only exception.
    let got = join(
        parser(),
        &[
            "2024-05-01 12:00:00.123 ERROR 4242 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : Servlet.service() threw exception [Request processing failed] with root cause",
            "",
            "org.postgresql.util.PSQLException: FATAL: sorry, too many clients already",
            "\tat org.postgresql.Driver.connect(Driver.java:297)",
        ],
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].fields[ROOT_CAUSE_TYPE_FIELD],
        "org.postgresql.util.PSQLException"
    );
    assert!(
        got[0].message.ends_with(
            ": org.postgresql.util.PSQLException: FATAL: sorry, too many clients already"
        )
    );
}

//! Stack signatures: the in-app frames of a trace, without line numbers, addresses,
//! paths or thread ids, so the same crash site gives the same signature.
//!
//! Understood: Rust panics and backtraces, Python tracebacks (chained ones too), Java and
//! other JVM exceptions (with `Caused by:`), Go panics and Node.js stacks. Frames of the
//! runtime and standard library (and of well-known framework crates and packages) are
//! dropped. Exception types (Python, JVM, Node) lead the signature, a JVM one also after
//! `Exception in thread "name"`: another exception from the same site is another crash.
//!
//! ```
//! use selfheal_core::fingerprint::stack_signature;
//! let a = "Traceback (most recent call last):\n  File \"/srv/app/api.py\", line 12, in get\n    return db.load(uid)\nKeyError: 'user-42'";
//! let b = "Traceback (most recent call last):\n  File \"/opt/app/api.py\", line 14, in get\n    return db.load(uid)\nKeyError: 'user-7'";
//! assert_eq!(stack_signature(a), "KeyError|api.get");
//! assert_eq!(stack_signature(a), stack_signature(b));
//! ```

/// At most this many frames per exception are kept (the innermost ones).
pub const MAX_FRAMES: usize = 8;

/// Only the first this many bytes of a trace are read.
pub const MAX_STACK_BYTES: usize = 256 * 1024;

/// Rust frames from these crates are the runtime's, not the application's.
const RUST_RUNTIME: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "tokio::",
    "futures::",
    "futures_util::",
    "futures_core::",
    "hyper::",
    "tower::",
    "axum::",
    "tracing::",
    "rust_begin_unwind",
    "__rustc::",
    "rust_panic",
    "__rust",
    "__libc_start",
    "<std::",
    "<core::",
    "<alloc::",
    "<tokio::",
    "<futures",
    "<hyper::",
    "<tower::",
    "<axum::",
    "<tracing::",
];

/// Native frames of the process's start, matched whole.
const NATIVE_START: &[&str] = &["main", "_start", "start_thread", "clone", "clone3"];

/// JVM frames from these packages belong to the JDK or a framework.
const JVM_RUNTIME: &[&str] = &[
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "org.springframework.",
    "org.apache.catalina.",
    "org.apache.tomcat.",
    "org.apache.coyote.",
    "org.eclipse.jetty.",
    "io.netty.",
    "reactor.",
    "org.junit.",
];

/// The in-app frames of `stack` (any of the understood languages), joined with `|`;
/// empty when no frame is in-app.
pub fn stack_signature(stack: &str) -> String {
    // The crash site is at the top; a runaway trace is read no further than this.
    let mut end = stack.len().min(MAX_STACK_BYTES);
    while !stack.is_char_boundary(end) {
        end -= 1;
    }
    let stack = &stack[..end];
    let mut parts: Vec<String> = Vec::new();
    if stack.contains("Traceback (most recent call last)") || stack.contains("  File \"") {
        python(stack, &mut parts);
    } else if stack.contains("goroutine ") || stack.starts_with("panic: ") {
        go(stack, &mut parts);
    } else if is_rust(stack) {
        rust(stack, &mut parts);
    } else {
        at_frames(stack, &mut parts);
    }
    parts.join("|")
}

fn is_rust(stack: &str) -> bool {
    stack.contains("panicked at")
        || stack.contains("stack backtrace:")
        || stack.lines().any(|l| rust_frame(l).is_some())
}

/// `  12: crate::module::function` (or `12: 0x55d3 - crate::f`), the frame's name.
fn rust_frame(line: &str) -> Option<&str> {
    let (num, name) = line.trim_start().split_once(": ")?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let name = name.trim();
    // Old format: `0x55d3c9a1 - name`.
    let name = match name.split_once(" - ") {
        Some((addr, rest)) if addr.starts_with("0x") => rest,
        _ => name,
    };
    Some(strip_rust_hash(name))
}

fn rust(stack: &str, parts: &mut Vec<String>) {
    let mut frames = 0;
    for line in stack.lines() {
        let Some(name) = rust_frame(line) else {
            continue;
        };
        if !name.is_empty()
            && !RUST_RUNTIME.iter().any(|p| name.starts_with(p))
            && !NATIVE_START.contains(&name)
        {
            parts.push(name.to_owned());
            frames += 1;
            if frames == MAX_FRAMES {
                break;
            }
        }
    }
    if frames == 0 {
        // No backtrace: the panic site's file (no directories, no line).
        if let Some(rest) = stack.split("panicked at ").nth(1) {
            let loc = rest.split([':', '\n', ',']).next().unwrap_or("");
            let file = loc.rsplit(['/', '\\']).next().unwrap_or(loc).trim();
            if !file.is_empty() {
                parts.push(format!("panicked at {file}"));
            }
        }
    }
}

/// `foo::bar::h1a2b3c4d5e6f7a8b` without the hash.
fn strip_rust_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

fn python(stack: &str, parts: &mut Vec<String>) {
    // Each traceback (a chained one starts another): frames, then `Type: message`.
    let mut frames: Vec<String> = Vec::new();
    let mut in_trace = false;
    for line in stack.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("Traceback (most recent call last)") {
            in_trace = true;
            frames.clear();
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("File \"") {
            in_trace = true;
            let Some((file, tail)) = rest.split_once('"') else {
                continue;
            };
            let func = tail.rsplit_once(", in ").map_or("", |(_, f)| f.trim());
            if python_runtime(file) {
                continue;
            }
            let module = file.rsplit(['/', '\\']).next().unwrap_or(file);
            let module = module.strip_suffix(".py").unwrap_or(module);
            if frames.len() == 4 * MAX_FRAMES {
                // Only the innermost frames are kept: drop the outer ones as we go.
                frames.drain(..3 * MAX_FRAMES);
            }
            frames.push(format!("{module}.{func}"));
            continue;
        }
        if in_trace && !line.starts_with(' ') && !trimmed.is_empty() {
            // The exception line ends this traceback.
            let ty = trimmed.split(':').next().unwrap_or(trimmed).trim();
            if is_type_name(ty) {
                parts.push(ty.to_owned());
            }
            let skip = frames.len().saturating_sub(MAX_FRAMES);
            // Innermost frames last in Python; keep the innermost, innermost first.
            parts.extend(frames.drain(..).skip(skip).rev());
            in_trace = false;
        }
    }
    let skip = frames.len().saturating_sub(MAX_FRAMES);
    parts.extend(frames.drain(..).skip(skip).rev());
}

fn python_runtime(file: &str) -> bool {
    file.contains("site-packages")
        || file.contains("dist-packages")
        || file.starts_with('<')
        || file.contains("/lib/python")
        || file.contains("\\Lib\\")
}

fn is_type_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'$')
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
}

fn go(stack: &str, parts: &mut Vec<String>) {
    let mut frames = 0;
    let mut lines = stack.lines().peekable();
    while let Some(line) = lines.next() {
        // A frame is `pkg.func(args)` followed by a tab-indented `file:line +0x..` line.
        let is_frame = !line.starts_with(['\t', ' '])
            && line.ends_with(')')
            && lines.peek().is_some_and(|next| next.starts_with('\t'));
        let name = if is_frame {
            match line.rfind('(') {
                Some(p) if p > 0 => &line[..p],
                _ => continue,
            }
        } else if let Some(rest) = line.strip_prefix("created by ") {
            rest.split(" in goroutine").next().unwrap_or(rest)
        } else {
            continue;
        };
        if go_runtime(name) {
            continue;
        }
        parts.push(name.to_owned());
        frames += 1;
        if frames == MAX_FRAMES {
            break;
        }
    }
}

/// A standard-library function: its package path has no dot in its first element.
fn go_runtime(func: &str) -> bool {
    let first = func.split('/').next().unwrap_or(func);
    let pkg = first.split('.').next().unwrap_or(first);
    if pkg == "main" {
        return false;
    }
    !func.contains('/') || !first.contains('.')
}

/// JVM and Node.js traces: `Type: message` lines, then `at …` frames.
fn at_frames(stack: &str, parts: &mut Vec<String>) {
    let mut frames = 0;
    for line in stack.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("at ") {
            if frames == MAX_FRAMES {
                continue;
            }
            let frame = match jvm_frame(rest) {
                Some(jvm) => jvm,
                None => node_frame(rest),
            };
            if let Some(frame) = frame {
                parts.push(frame);
                frames += 1;
            }
            continue;
        }
        let header = jvm_header(trimmed);
        if header.starts_with("...") || header.is_empty() {
            continue;
        }
        let ty = header.split(':').next().unwrap_or(header).trim();
        if is_type_name(ty) && (header.contains(':') || ty.contains('.')) {
            parts.push(ty.to_owned());
            frames = 0;
        }
    }
}

/// The `Type: message` part of an exception line: without `Caused by: `, `Suppressed: `
/// or the JVM's `Exception in thread "name" ` (the thread's name varies; the type is
/// what tells two crashes apart).
fn jvm_header(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix("Exception in thread \"") {
        return rest
            .split_once("\" ")
            .map_or(line, |(_, header)| header.trim_start());
    }
    line.strip_prefix("Caused by: ")
        .or_else(|| line.strip_prefix("Suppressed: "))
        .unwrap_or(line)
}

/// `com.acme.Pool.get(Pool.java:88)` (maybe `java.base/…` or `app//…` first):
/// `Some(Some("com.acme.Pool.get"))`, `Some(None)` for a runtime frame, `None` when the
/// line is not a JVM frame.
fn jvm_frame(rest: &str) -> Option<Option<String>> {
    let open = rest.find('(')?;
    let name = &rest[..open];
    if name.contains(' ') || !rest.ends_with(')') || name.is_empty() {
        return None;
    }
    // A module or class-loader prefix: `java.base/`, `app//`.
    let name = match name.split_once('/') {
        Some((pre, post)) if !pre.contains('$') => post.trim_start_matches('/'),
        _ => name,
    };
    if JVM_RUNTIME.iter().any(|p| name.starts_with(p)) {
        return Some(None);
    }
    // Generated names carry counters and hashes: `$$Lambda$123/0x…`, `lambda$run$0`,
    // `$$EnhancerBySpringCGLIB$$8a7c3f`, `$Proxy12`.
    let mut out = String::with_capacity(name.len());
    for (i, seg) in name.split('$').enumerate() {
        if i > 0 {
            out.push('$');
        }
        let (head, tail) = seg.split_at(seg.find('.').unwrap_or(seg.len()));
        let generated = i > 0
            && head.bytes().any(|b| b.is_ascii_digit())
            && head
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'x' || b == b'/');
        if !generated {
            out.push_str(head);
        }
        out.push_str(tail);
    }
    Some(Some(out))
}

/// `getUser (/app/src/users.js:12:15)`, `async run (file:///app/x.mjs:1:2)` or
/// `/app/src/index.js:30:7`: the function (or the file name for an anonymous one).
fn node_frame(rest: &str) -> Option<String> {
    let rest = rest.strip_prefix("async ").unwrap_or(rest);
    let (name, location) = match rest.split_once(" (") {
        Some((name, loc)) => (name, loc.trim_end_matches(')')),
        None => ("", rest),
    };
    if location.starts_with("node:")
        || location.starts_with("internal/")
        || location.contains("node_modules")
        || location.starts_with("<anonymous>")
        || location.starts_with("index ")
    {
        return None;
    }
    let name = name.split(" [as ").next().unwrap_or(name).trim();
    if !name.is_empty() {
        return Some(name.to_owned());
    }
    // Anonymous: the file name, without directories, line or column.
    let file = location.rsplit(['/', '\\']).next().unwrap_or(location);
    let file = file.split(':').next().unwrap_or(file);
    (!file.is_empty()).then(|| file.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUST_PANIC: &str = "thread 'tokio-runtime-worker' panicked at src/db/pool.rs:88:14:
called `Result::unwrap()` on an `Err` value: PoolTimedOut
stack backtrace:
   0: rust_begin_unwind
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/std/src/panicking.rs:665:5
   1: core::panicking::panic_fmt
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/panicking.rs:74:14
   2: core::result::unwrap_failed
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/result.rs:1700:5
   3: core::result::Result<T,E>::unwrap
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/result.rs:1104:23
   4: checkout::db::pool::Pool::get::{{closure}}
             at ./src/db/pool.rs:88:14
   5: checkout::api::orders::create::{{closure}}
             at ./src/api/orders.rs:41:22
   6: <core::pin::Pin<P> as core::future::future::Future>::poll
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/future/future.rs:123:9
   7: tokio::runtime::task::core::Core<T,S>::poll::{{closure}}
             at /home/dev/.cargo/registry/src/index.crates.io-6f17d22bba15001f/tokio-1.41.0/src/runtime/task/core.rs:331:17
   8: std::sys::backtrace::__rust_begin_short_backtrace
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.";

    #[test]
    fn rust_backtrace_keeps_app_frames_only() {
        assert_eq!(
            stack_signature(RUST_PANIC),
            "checkout::db::pool::Pool::get::{{closure}}|checkout::api::orders::create::{{closure}}"
        );
        // Another thread, other values, other lines: the same crash site.
        let other = RUST_PANIC
            .replace("tokio-runtime-worker", "main")
            .replace("88:14", "91:9")
            .replace("PoolTimedOut", "Io(Kind(TimedOut))");
        assert_eq!(stack_signature(&other), stack_signature(RUST_PANIC));
        let full = "   0: std::panicking::begin_panic\n             at /rustc/abc/library/std/src/panicking.rs:12:5\n   1: myapp::db::connect::h0123456789abcdef\n             at ./src/db.rs:42:9\n   2: tokio::runtime::task::raw::poll\n  3:     0x55d3c9a1b2c3 - myapp::main::hfedcba9876543210\n";
        assert_eq!(stack_signature(full), "myapp::db::connect|myapp::main");
    }

    #[test]
    fn rust_panic_without_backtrace_is_its_file() {
        let a = "thread 'main' panicked at src/config.rs:12:5:\nmissing key `port`\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
        let b = "thread 'worker-3' panicked at /build/app/src/config.rs:30:9:\nmissing key `host`";
        assert_eq!(stack_signature(a), "panicked at config.rs");
        assert_eq!(stack_signature(a), stack_signature(b));
    }

    #[test]
    fn python_traceback_with_chained_exception() {
        let tb = r#"Traceback (most recent call last):
  File "/srv/app/billing/db.py", line 41, in connect
    conn = psycopg2.connect(dsn)
  File "/usr/local/lib/python3.12/site-packages/psycopg2/__init__.py", line 122, in connect
    conn = _connect(dsn, connection_factory=connection_factory, **kwasync)
psycopg2.OperationalError: connection to server at "10.0.0.5", port 5432 failed: Connection refused

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/srv/app/billing/api.py", line 88, in charge
    with db.connect() as conn:
  File "/srv/app/billing/db.py", line 44, in connect
    raise StoreUnavailable("postgres down") from e
billing.errors.StoreUnavailable: postgres down"#;
        assert_eq!(
            stack_signature(tb),
            "psycopg2.OperationalError|db.connect|billing.errors.StoreUnavailable|db.connect|api.charge"
        );
        let py = "Traceback (most recent call last):\n  File \"/app/svc/db.py\", line 12, in connect\n    raise X";
        assert_eq!(stack_signature(py), "db.connect");
    }

    #[test]
    fn java_with_caused_by() {
        let a = "org.springframework.dao.DataAccessResourceFailureException: Unable to acquire JDBC Connection; nested exception is org.hibernate.exception.JDBCConnectionException
\tat org.springframework.orm.jpa.vendor.HibernateJpaDialect.convertHibernateAccessException(HibernateJpaDialect.java:275)
\tat com.acme.orders.OrderRepository$$EnhancerBySpringCGLIB$$8a7c3f.findById(<generated>)
\tat com.acme.orders.OrderService.lambda$load$0(OrderService.java:57)
\tat java.base/java.util.concurrent.FutureTask.run(FutureTask.java:264)
\tat java.base/java.lang.Thread.run(Thread.java:833)
Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.
\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)
\tat app//com.acme.orders.Db.open(Db.java:31)
\t... 12 more";
        assert_eq!(
            stack_signature(a),
            "org.springframework.dao.DataAccessResourceFailureException|com.acme.orders.OrderRepository$$EnhancerBySpringCGLIB$$.findById|com.acme.orders.OrderService.lambda$load$|java.sql.SQLTransientConnectionException|com.zaxxer.hikari.pool.HikariPool.createTimeoutException|com.acme.orders.Db.open"
        );
        let b = a
            .replace("30000ms", "5000ms")
            .replace("OrderService.java:57", "OrderService.java:60");
        assert_eq!(stack_signature(&b), stack_signature(a));
        let java = "java.lang.IllegalStateException: boom\n\tat com.acme.Pool.get(Pool.java:88)\n\tat java.lang.Thread.run(Thread.java:750)";
        assert_eq!(
            stack_signature(java),
            "java.lang.IllegalStateException|com.acme.Pool.get"
        );
    }

    #[test]
    fn jvm_uncaught_exception_header_keeps_the_type() {
        // The JVM's default handler prints `Exception in thread "name" Type: message`.
        let uncaught = |thread: &str, exception: &str, line: u32| {
            format!(
                "Exception in thread \"{thread}\" {exception}\n\tat com.acme.Pool.get(Pool.java:{line})\n\tat com.acme.Main.main(Main.java:12)"
            )
        };
        let state = uncaught("main", "java.lang.IllegalStateException: pool closed", 88);
        assert_eq!(
            stack_signature(&state),
            "java.lang.IllegalStateException|com.acme.Pool.get|com.acme.Main.main"
        );
        // Another exception at the same site is another crash.
        let npe = uncaught("main", "java.lang.NullPointerException: pool closed", 88);
        assert_eq!(
            stack_signature(&npe),
            "java.lang.NullPointerException|com.acme.Pool.get|com.acme.Main.main"
        );
        // Another thread, another message, another line: the same crash.
        let other = uncaught(
            "pool-3-thread-17",
            "java.lang.IllegalStateException: pool draining",
            91,
        );
        assert_eq!(stack_signature(&other), stack_signature(&state));
        // A type without a message, and a chain with `Caused by:` and `Suppressed:`.
        let chain = "Exception in thread \"worker 1\" com.acme.StoreException
\tat com.acme.Store.save(Store.java:40)
\tSuppressed: java.io.IOException: close failed
\t\tat com.acme.Store.close(Store.java:52)
Caused by: java.sql.SQLException: connection reset
\tat com.acme.Db.write(Db.java:17)
\t... 3 more";
        assert_eq!(
            stack_signature(chain),
            "com.acme.StoreException|com.acme.Store.save|java.io.IOException|com.acme.Store.close|java.sql.SQLException|com.acme.Db.write"
        );
    }

    #[test]
    fn go_panic() {
        let a = "panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6b4f3a]

goroutine 42 [running]:
github.com/acme/ledger/store.(*Pool).Get(0x0, {0x8a1f60, 0xc0001a2000})
\t/home/ci/src/ledger/store/pool.go:77 +0x3a
github.com/acme/ledger/api.(*Server).handleTransfer(0xc000128000, {0x8a5e40, 0xc0002b6000}, 0xc0002c4000)
\t/home/ci/src/ledger/api/transfer.go:31 +0x8c
net/http.HandlerFunc.ServeHTTP(0xc0001b4000?, {0x8a5e40?, 0xc0002b6000?}, 0xc0002c4000?)
\t/usr/local/go/src/net/http/server.go:2171 +0x29
net/http.(*conn).serve(0xc0001f2000, {0x8a6a28, 0xc0001d8000})
\t/usr/local/go/src/net/http/server.go:2099 +0x88f
created by net/http.(*Server).Serve in goroutine 1
\t/usr/local/go/src/net/http/server.go:3285 +0x4b4
exit status 2";
        assert_eq!(
            stack_signature(a),
            "github.com/acme/ledger/store.(*Pool).Get|github.com/acme/ledger/api.(*Server).handleTransfer"
        );
        let b = a
            .replace("goroutine 42", "goroutine 7")
            .replace("0xc0001a2000", "0xc000010000");
        assert_eq!(stack_signature(&b), stack_signature(a));
        let main = "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/tmp/x/main.go:5 +0x25\nexit status 2";
        assert_eq!(stack_signature(main), "main.main");
    }

    #[test]
    fn node_stack() {
        let a = "TypeError: Cannot read properties of undefined (reading 'id')
    at getUser (/app/src/users.js:12:15)
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at async Promise.all (index 0)
    at /app/src/index.js:30:7
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)";
        assert_eq!(stack_signature(a), "TypeError|getUser|index.js");
        let b = a.replace("'id'", "'email'").replace("12:15", "14:3");
        assert_eq!(stack_signature(&b), stack_signature(a));
    }

    #[test]
    fn a_runaway_trace_is_read_only_so_far() {
        let mut tb = String::from("Traceback (most recent call last):\n");
        for i in 0..300_000 {
            tb.push_str(&format!("  File \"/app/m{i}.py\", line 1, in f\n    x()\n"));
        }
        tb.push_str("RecursionError: maximum recursion depth exceeded\n");
        assert!(tb.len() > 10 * 1024 * 1024);
        let sig = stack_signature(&tb);
        // No exception line within the limit: the innermost frames read, at most eight.
        assert_eq!(sig.split('|').count(), MAX_FRAMES);
        assert!(sig.starts_with("m"), "{sig}");
        let rust = "   0: app::recurse\n".repeat(1_000_000);
        assert_eq!(stack_signature(&rust).split('|').count(), MAX_FRAMES);
    }

    #[test]
    fn no_frames_no_signature() {
        assert_eq!(stack_signature(""), "");
        assert_eq!(stack_signature("just some text\nwith lines"), "");
    }

    #[test]
    fn the_read_limit_never_cuts_a_character() {
        let mut stack = "   0: app::f\n".to_owned();
        while stack.len() < MAX_STACK_BYTES + 8 {
            stack.push('日');
        }
        for shift in 0..4 {
            let s = &stack[..stack.len() - 3 * shift];
            let _ = stack_signature(&format!("{}{s}", "x".repeat(shift)));
        }
    }

    mod props {
        use super::*;
        use crate::fingerprint::normalize::tests::props::piece;
        use proptest::prelude::*;

        /// A line of one of the understood stack shapes, with multibyte names and values in it.
        fn frame_line() -> impl Strategy<Value = String> {
            let name = "[a-z日本😀é\u{301}_:.$/<>{}]{0,12}";
            prop_oneof![
                (0u32..40, name).prop_map(|(i, n)| format!("   {i}: {n}::{{{{closure}}}}")),
                name.prop_map(|n| format!("             at ./src/{n}.rs:1:2")),
                (name, name).prop_map(|(f, n)| format!("  File \"/app/{f}.py\", line 3, in {n}")),
                (name, name).prop_map(|(c, f)| format!("\tat com.{c}.{f}({c}.java:88)")),
                name.prop_map(|n| format!("Caused by: {n}Exception: 中")),
                name.prop_map(|n| format!("main.{n}(0x1, 0x2)")),
                name.prop_map(|n| format!("\t/app/{n}.go:42 +0x1d")),
                name.prop_map(|n| format!("    at {n} (/srv/{n}.js:1:2)")),
                Just("Traceback (most recent call last):".to_owned()),
                Just("goroutine 1 [running]:".to_owned()),
                Just("panic: 日本".to_owned()),
                Just("stack backtrace:".to_owned()),
                Just("thread 'main' panicked at src/中.rs:1:1:".to_owned()),
                proptest::collection::vec(piece(), 0..8).prop_map(|p| p.concat()),
            ]
        }

        proptest! {
            #[test]
            fn any_stack_no_panic(lines in proptest::collection::vec(frame_line(), 0..24)) {
                let stack = lines.join("\n");
                let sig = stack_signature(&stack);
                prop_assert_eq!(stack_signature(&stack), sig);
            }

            #[test]
            fn any_bytes_no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = stack_signature(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}

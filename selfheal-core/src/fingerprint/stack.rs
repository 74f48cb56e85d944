//! Stack signatures: the in-app frames of a trace, without line numbers or addresses.

/// Frames from these prefixes belong to the runtime or the standard library and are dropped.
const RUNTIME_PREFIXES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "tokio::",
    "futures",
    "rust_begin_unwind",
    "__rust",
    "java.",
    "javax.",
    "sun.",
    "jdk.",
    "runtime.",
    "node:",
    "internal/",
];

/// The in-app frames of `stack`: one function or module name per frame, joined with `|`,
/// at most eight. Line numbers, addresses and paths are dropped so the same crash site
/// gives the same signature.
pub fn stack_signature(stack: &str) -> String {
    let mut frames: Vec<String> = Vec::new();
    for line in stack.lines() {
        let line = line.trim();
        let frame = if let Some(rest) = line.strip_prefix("at ") {
            // Java `at a.b.C.m(File.java:12)`, Node `at fn (/path/x.js:1:2)`, Rust `at src/x.rs:1:2`.
            let name = rest.split(['(', ' ']).next().unwrap_or("");
            if name.contains('/') || name.ends_with(".rs") {
                continue;
            }
            name.to_owned()
        } else if let Some((num, name)) = line.split_once(": ") {
            // Rust backtrace `12: crate::module::function`
            if num.chars().all(|c| c.is_ascii_digit()) && !num.is_empty() {
                strip_hash(name).to_owned()
            } else {
                continue;
            }
        } else if let Some(rest) = line.strip_prefix("File \"") {
            // Python `File "/app/x.py", line 3, in handler`
            match (rest.split('"').next(), rest.rsplit_once(", in ")) {
                (Some(file), Some((_, func))) => {
                    let module = file.rsplit('/').next().unwrap_or(file);
                    format!("{module}:{func}")
                }
                _ => continue,
            }
        } else {
            continue;
        };
        if frame.is_empty() || RUNTIME_PREFIXES.iter().any(|p| frame.starts_with(p)) {
            continue;
        }
        frames.push(frame);
        if frames.len() == 8 {
            break;
        }
    }
    frames.join("|")
}

fn strip_hash(name: &str) -> &str {
    // `foo::bar::h1a2b3c4d5e6f7a8b`
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_backtrace_keeps_app_frames_only() {
        let bt = "   0: std::panicking::begin_panic\n             at /rustc/abc/library/std/src/panicking.rs:12:5\n   1: myapp::db::connect::h0123456789abcdef\n             at ./src/db.rs:42:9\n   2: tokio::runtime::task::raw::poll\n";
        assert_eq!(stack_signature(bt), "myapp::db::connect");
    }

    #[test]
    fn java_and_python_frames() {
        let java = "java.lang.IllegalStateException: boom\n\tat com.acme.Pool.get(Pool.java:88)\n\tat java.lang.Thread.run(Thread.java:750)";
        assert_eq!(stack_signature(java), "com.acme.Pool.get");
        let py = "Traceback (most recent call last):\n  File \"/app/svc/db.py\", line 12, in connect\n    raise X";
        assert_eq!(stack_signature(py), "db.py:connect");
    }
}

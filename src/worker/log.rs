//! Logging for Workers Logs / `wrangler tail`: addresses are scrubbed from
//! every line unless `UNSAFE_LOGGING=true` (docs/protocol.md §5.4).

use std::cell::Cell;

thread_local! {
    static UNSAFE: Cell<bool> = const { Cell::new(false) };
}

pub fn set_unsafe(unsafe_logging: bool) {
    UNSAFE.with(|u| u.set(unsafe_logging));
}

fn clean(line: &str) -> String {
    if UNSAFE.with(Cell::get) {
        line.to_string()
    } else {
        crate::scrub::scrub(line)
    }
}

pub fn info(line: &str) {
    worker::console_log!("{}", clean(line));
}

pub fn error(line: &str) {
    worker::console_error!("{}", clean(line));
}

/// One JSON line per request: which endpoint, how it ended, its status and
/// how long it took. Never the path's tail, which for AMP carries the
/// client's offer.
pub fn request(endpoint: &str, outcome: &str, status: u16, millis: u64) {
    let mut line = String::from("{\"endpoint\":");
    crate::protocol::json::push_go_string(&mut line, endpoint);
    line.push_str(",\"outcome\":");
    crate::protocol::json::push_go_string(&mut line, outcome);
    line.push_str(&format!(",\"status\":{status},\"ms\":{millis}}}"));
    info(&line);
}

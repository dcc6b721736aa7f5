//! Visible skips for test binaries. A test that cannot run here (GPU tests switched off, no
//! ffmpeg, browser tests switched off) calls [`skip`] and returns; when the binary exits it
//! prints one line per reason: how many tests were skipped and why. libtest has no run-time
//! "skipped" status and captures a passing test's output, so a plain `eprintln!` and `return`
//! would pass green in silence.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

/// Reason → names of the tests skipped for it.
static SKIPS: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());

/// Records that the calling test is skipped for `reason`; the caller then returns.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let mut skips = SKIPS.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(unix)]
    if skips.is_empty() {
        report_at_exit();
    }
    // Without `atexit`, each skip is its own line (every platform tested here is unix).
    #[cfg(not(unix))]
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
    skips.entry(reason.to_string()).or_default().push(test);
}

/// The report's lines: `SKIPPED <n> test(s): <reason> (<names>)`.
pub fn report_lines() -> Vec<String> {
    let skips = SKIPS.lock().unwrap_or_else(|e| e.into_inner());
    skips
        .iter()
        .map(|(reason, tests)| {
            let s = if tests.len() == 1 { "" } else { "s" };
            let names = match tests.len() {
                0..=3 => tests.join(", "),
                n => format!("{}, … and {} more", tests[..3].join(", "), n - 3),
            };
            format!("SKIPPED {} test{s}: {reason} ({names})", tests.len())
        })
        .collect()
}

/// Prints the report when the process exits (after libtest's summary, outside its capture).
#[cfg(unix)]
fn report_at_exit() {
    extern "C" fn report() {
        let mut err = std::io::stderr().lock();
        for line in report_lines() {
            let _ = writeln!(err, "{line}");
        }
    }
    // SAFETY: `report` is a plain `extern "C" fn()` that only locks, formats and writes.
    if unsafe { libc::atexit(report) } != 0 {
        // The caller holds the lock: say it without reading the skips.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED tests here: could not register the report"
        );
    }
}

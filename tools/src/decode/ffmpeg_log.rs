//! FFmpeg's log, routed through cvrl instead of straight to stderr.
//!
//! FFmpeg prints its complaints (`[h264 @ 0x55d1...] error while decoding MB 3 4`) itself,
//! which, during a build, scrambles the progress bar and names no file. [`install`] replaces
//! FFmpeg's log callback with one that hands each line (errors and worse, the level
//! [`super::init`] sets) to the thread that logged it: a decode or probe running under
//! [`capture`] keeps the lines of its file, so that a failure can say what FFmpeg said
//! ([`fold`]), and nothing reaches the terminal unless a live sink is set ([`set_live`],
//! `cvrl-shard build --verbose`), which gets each line prefixed with its file.
//!
//! This works because every FFmpeg call of a decode runs on the caller's thread: the
//! decoders are opened with one thread (module doc of [`crate::decode`], Threads), and the
//! build decodes one file per rayon worker at a time. Lines logged on a thread with no
//! capture (none are expected) go only to the live sink.
//!
//! This file holds all of cvrl-tools' unsafe code for logging: the C callback.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::sync::{Arc, RwLock};

use ffmpeg_next::ffi;

/// Distinct lines a capture keeps; the rest are only counted, so that a file that makes
/// the decoder complain about every macroblock costs no memory.
const KEEP_LINES: usize = 16;
/// Lines [`fold`] adds to a failure message.
const FOLD_LINES: usize = 3;
/// Longest line kept, in bytes (FFmpeg's own default callback uses 1024).
const LINE_BYTES: usize = 1024;

/// Where `--verbose` sends each line as it is logged.
pub type LiveSink = Arc<dyn Fn(&str) + Send + Sync>;

static LIVE: RwLock<Option<LiveSink>> = RwLock::new(None);

/// What FFmpeg said on one thread while one file was decoded or probed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Said {
    /// Distinct lines, addresses removed (`[h264] error while decoding MB 3 4, ...`), in
    /// the order first said, at most [`KEEP_LINES`].
    pub lines: Vec<String>,
    /// Lines said beyond those (repeats and lines past the cap).
    pub more: usize,
}

impl Said {
    fn push(&mut self, line: String) {
        if self.lines.contains(&line) || self.lines.len() >= KEEP_LINES {
            self.more += 1;
        } else {
            self.lines.push(line);
        }
    }
}

/// The capture of the file this thread is decoding, if any.
struct Capture {
    file: String,
    said: Said,
}

/// Per thread: the capture, and the state of a line FFmpeg logs in several pieces.
#[derive(Default)]
struct ThreadLog {
    capture: Option<Capture>,
    /// Text of the line being assembled (a piece without a trailing newline).
    partial: String,
    /// FFmpeg's `print_prefix`: whether the next piece starts a line (gets `[ctx @ 0x..]`).
    print_prefix: c_int,
}

thread_local! {
    static LOG: RefCell<ThreadLog> =
        RefCell::new(ThreadLog { print_prefix: 1, ..ThreadLog::default() });
}

/// Sends FFmpeg's log to [`callback`] from now on (called once, by [`super::init`]).
pub(super) fn install() {
    // SAFETY: `callback` has the signature FFmpeg calls it with (the binding's), is
    // thread-safe (thread-local state, and a lock for the shared sink) and never unwinds
    // into C (no panicking operation on its path: `try_with`, `try_borrow_mut`).
    unsafe { ffi::av_log_set_callback(Some(callback)) };
}

/// Shows each FFmpeg line as it is logged, `FILE: [ctx @ 0x..] message`, through `sink`
/// (`None`: silent, the default).
pub fn set_live(sink: Option<LiveSink>) {
    if let Ok(mut live) = LIVE.write() {
        *live = sink;
    }
}

/// Runs `f` with FFmpeg's lines on this thread kept as `file`'s; returns them beside its
/// result. Nests: an inner capture's lines are its own.
pub(super) fn capture<T>(file: &Path, f: impl FnOnce() -> T) -> (T, Said) {
    let new = Capture { file: file.display().to_string(), said: Said::default() };
    let outer = LOG.with(|log| log.borrow_mut().capture.replace(new));
    let result = f();
    let mine = LOG.with(|log| std::mem::replace(&mut log.borrow_mut().capture, outer));
    (result, mine.map(|c| c.said).unwrap_or_default())
}

/// `message` followed by what FFmpeg said, when it said anything: at most [`FOLD_LINES`]
/// distinct lines and how many more there were, on one line.
pub fn fold(message: &str, said: &Said) -> String {
    if said.lines.is_empty() {
        return message.to_string();
    }
    let shown = said.lines.iter().take(FOLD_LINES).cloned().collect::<Vec<_>>();
    let more = said.more + said.lines.len() - shown.len();
    let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
    format!("{message}; FFmpeg said: {}{tail}", shown.join(" / "))
}

/// `line` without the addresses in its context prefixes: `[h264 @ 0x55d1c0] x` is
/// `[h264] x`, so that the same damage gives the same text in every run.
fn strip_addresses(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(" @ 0x") {
        let after = &rest[at + " @ 0x".len()..];
        let hex = after.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(after.len());
        if hex > 0 && after[hex..].starts_with(']') {
            out.push_str(&rest[..at]);
            rest = &after[hex..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Adds one formatted piece to this thread's line; a finished line goes to the capture and
/// the live sink.
fn take_piece(log: &mut ThreadLog, piece: &str) {
    log.partial.push_str(piece);
    if !log.partial.ends_with('\n') && !log.partial.ends_with('\r') {
        return;
    }
    let line = std::mem::take(&mut log.partial);
    let line = line.trim_end();
    if line.trim().is_empty() {
        return;
    }
    let live = LIVE.read().ok().and_then(|l| l.clone());
    match &mut log.capture {
        Some(c) => {
            if let Some(sink) = live {
                sink(&format!("{}: {line}", c.file));
            }
            c.said.push(strip_addresses(line));
        }
        None => {
            if let Some(sink) = live {
                sink(line);
            }
        }
    }
}

/// FFmpeg's log callback: formats the message as FFmpeg's default callback would and hands
/// it to [`take_piece`]. Levels above the one set (quieter messages) are dropped, as the
/// default callback drops them.
unsafe extern "C" fn callback(
    ptr: *mut c_void,
    level: c_int,
    fmt: *const c_char,
    vl: *mut ffi::__va_list_tag,
) {
    // The low byte is the level; higher bits carry a colour hint.
    if level >= 0 && (level & 0xff) > unsafe { ffi::av_log_get_level() } {
        return;
    }
    let _ = LOG.try_with(|log| {
        let Ok(mut log) = log.try_borrow_mut() else { return };
        let mut buf = [0 as c_char; LINE_BYTES];
        let mut print_prefix = log.print_prefix;
        // SAFETY: `ptr`, `level`, `fmt` and `vl` are FFmpeg's own, passed on unchanged and
        // used once; `buf` is writable for its length, which FFmpeg never exceeds (it
        // truncates and terminates the line); `print_prefix` is a valid int.
        let written = unsafe {
            ffi::av_log_format_line2(
                ptr,
                level,
                fmt,
                vl,
                buf.as_mut_ptr(),
                LINE_BYTES as c_int,
                &mut print_prefix,
            )
        };
        log.print_prefix = print_prefix;
        if written < 0 {
            return;
        }
        // SAFETY: av_log_format_line2 leaves `buf` NUL-terminated (an empty string at worst).
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) };
        take_piece(&mut log, &text.to_string_lossy());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_leave_the_context_names() {
        assert_eq!(
            strip_addresses("[h264 @ 0x55d1c0a3f2c0] error while decoding MB 3 4, bytestream -5"),
            "[h264] error while decoding MB 3 4, bytestream -5"
        );
        assert_eq!(
            strip_addresses("[mov,mp4 @ 0xAb12] [h264 @ 0x10] x @ 0xzz] y @ 0x1 z"),
            "[mov,mp4] [h264] x @ 0xzz] y @ 0x1 z"
        );
        assert_eq!(strip_addresses("no prefix"), "no prefix");
    }

    #[test]
    fn pieces_make_lines_kept_once_by_the_capturing_thread() {
        let (value, said) = capture(Path::new("a.mp4"), || {
            LOG.with(|log| {
                let mut log = log.borrow_mut();
                take_piece(&mut log, "[h264 @ 0x1f] error while ");
                take_piece(&mut log, "decoding MB 1 2\n");
                take_piece(&mut log, "[h264 @ 0x2e] error while decoding MB 1 2\n");
                take_piece(&mut log, "[h264 @ 0x2e] concealing 3 errors\n");
                take_piece(&mut log, "\n");
            });
            // An inner capture keeps its own lines.
            let (_, inner) = capture(Path::new("b.mp4"), || {
                LOG.with(|log| take_piece(&mut log.borrow_mut(), "[mov @ 0x3] inner\n"))
            });
            assert_eq!(inner.lines, ["[mov] inner"]);
            7
        });
        assert_eq!(value, 7);
        assert_eq!(
            said.lines,
            ["[h264] error while decoding MB 1 2", "[h264] concealing 3 errors"]
        );
        assert_eq!(said.more, 1);
        // Another thread's capture sees none of this thread's lines.
        let other = std::thread::spawn(|| capture(Path::new("c.mp4"), || ()).1).join().unwrap();
        assert_eq!(other, Said::default());
    }

    #[test]
    fn fold_caps_the_lines_and_counts_the_rest() {
        assert_eq!(fold("decode failed", &Said::default()), "decode failed");
        let mut said = Said::default();
        for i in 0..(KEEP_LINES + 4) {
            said.push(format!("line {}", i % (KEEP_LINES + 2)));
        }
        assert_eq!(said.lines.len(), KEEP_LINES);
        assert_eq!(said.more, 4);
        assert_eq!(
            fold("bad", &said),
            format!("bad; FFmpeg said: line 0 / line 1 / line 2 (and {} more)", KEEP_LINES + 1)
        );
        let one = Said { lines: vec!["[h264] x".into()], more: 0 };
        assert_eq!(fold("bad", &one), "bad; FFmpeg said: [h264] x");
    }
}

//! Where the command line writes: data on stdout (a closed one ends the command quietly, exit
//! 0), everything that happens on stderr through the logger (`synguard: ...` lines, readable at
//! the default level), and the live view redrawn in place on a terminal, which a log line
//! clears first so that it is not overwritten.

use std::{
    io::{IsTerminal as _, Write as _},
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicUsize, Ordering},
};

/// Standard output was closed (`| head`): the command ends quietly with exit code 0.
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
pub struct StdoutClosed;

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// Lines of the live view now on the terminal (0: none, or not a terminal).
static FRAME_LINES: AtomicUsize = AtomicUsize::new(0);

/// `\x1b[<n>F\x1b[J`: to the start of the line `n` lines up, then clear to the end of the screen.
fn clear_up(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("\x1b[{n}F\x1b[J")
    }
}

/// The terminal's (columns, rows): `COLUMNS`/`LINES` when set, else the size of the terminal on
/// stdout; `None` for what neither tells.
pub fn terminal_size() -> (Option<usize>, Option<usize>) {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // Safety: TIOCGWINSZ writes a `winsize` into the struct it is given, nothing else.
    let ok = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
    let (tc, tr) = if ok && ws.ws_col > 0 {
        (Some(ws.ws_col as usize), Some(ws.ws_row as usize))
    } else {
        (None, None)
    };
    (env("COLUMNS").or(tc), env("LINES").or(tr))
}

/// The live view's output: redrawn in place on a terminal, appended (a blank line between
/// frames) otherwise.
pub struct Screen {
    tty: bool,
}

impl Screen {
    pub fn new() -> Self {
        Self {
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// Width and height to render for: the terminal's; without one, `COLUMNS`/`LINES` or 80
    /// columns and no height limit.
    pub fn size(&self) -> (usize, Option<usize>) {
        let (c, r) = terminal_size();
        (c.unwrap_or(80).max(20), r.map(|r| r.max(8)))
    }

    /// Draws `frame` (its lines end with `\n`) over the previous one.
    pub fn draw(&self, frame: &str) -> anyhow::Result<()> {
        if !self.tty {
            return print(&format!("{frame}\n"));
        }
        let up = clear_up(FRAME_LINES.swap(0, Ordering::SeqCst));
        print(&format!("{up}{frame}"))?;
        FRAME_LINES.store(frame.lines().count(), Ordering::SeqCst);
        Ok(())
    }
}

/// Leaves the live view on the screen as it is: what is written next goes below it.
pub fn keep_frame() {
    FRAME_LINES.store(0, Ordering::SeqCst);
}

/// The logger: `synguard: <message>` for info, `synguard: warning: ...`, `synguard: error: ...`;
/// with -v also the level and module of debug and trace lines. The default level shows the
/// lifecycle lines (info) of the controller's own modules, warnings of everything else; no
/// level shows other crates' debug output.
pub fn init_logger(verbose: u8) {
    use log::LevelFilter::{Debug, Info, Trace, Warn};
    // Other crates (aya) stop at info: their debug lines dump structures (`RUST_LOG=aya=debug`
    // still shows them).
    let (others, ours) = match verbose {
        0 => (Warn, Info),
        1 => (Info, Debug),
        _ => (Info, Trace),
    };
    let both_tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    env_logger::Builder::new()
        .filter_level(others)
        .filter_module("guard_user", ours)
        .filter_module("synguard", ours)
        .parse_default_env()
        .format(move |buf, record| {
            // A live view on the same terminal is cleared first, so the line stays readable
            // (the next frame is drawn below it).
            if both_tty {
                let n = FRAME_LINES.swap(0, Ordering::SeqCst);
                write!(buf, "{}", clear_up(n))?;
            }
            match record.level() {
                log::Level::Info => writeln!(buf, "synguard: {}", record.args()),
                log::Level::Warn => writeln!(buf, "synguard: warning: {}", record.args()),
                log::Level::Error => writeln!(buf, "synguard: error: {}", record.args()),
                level => writeln!(
                    buf,
                    "synguard: {}: [{}] {}",
                    level.as_str().to_lowercase(),
                    record.target(),
                    record.args()
                ),
            }
        })
        .init();
}

/// Prints `e` on stderr as `synguard: error: ...`, its sources after it unless the message
/// already says them.
pub fn report_error(e: &anyhow::Error) {
    let mut text = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if !text.contains(&t) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&t);
        }
    }
    let clear = if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        clear_up(FRAME_LINES.swap(0, Ordering::SeqCst))
    } else {
        String::new()
    };
    let _ = writeln!(std::io::stderr(), "{clear}synguard: error: {text}");
}

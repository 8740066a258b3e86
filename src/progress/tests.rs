use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::output::{Printer, Sink};

#[test]
fn a_throttle_waits_for_the_first_line_then_spaces_them() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut t = Throttle::new(t0, s(2), s(3));
    assert!(!t.due(t0));
    assert!(!t.due(t0 + Duration::from_millis(1999)));
    assert!(t.due(t0 + s(2)));
    assert!(!t.due(t0 + s(4)));
    assert!(t.due(t0 + s(5)));
    assert!(!t.due(t0 + s(7)));
    // A new wait is quiet again for its first two seconds.
    t.restart(t0 + s(7));
    assert!(!t.due(t0 + s(8)));
    assert!(t.due(t0 + s(9)));
}

#[test]
fn debootstrap_lines_count_packages_by_stage() {
    let mut b = BuildLog::default();
    b.feed("I: Retrieving InRelease \nI: Checking Release signature\nI: Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)\nI: Retrieving Packages \n");
    assert_eq!(b.retrieved, 0, "indexes are not packages: {b:?}");
    assert_eq!(b.stage.as_deref(), Some("debootstrap: Retrieving Packages"));
    b.feed("I: Retrieving libc6 2.36-9+deb12u4\nI: Retrieving adduser 3.134\n");
    b.feed("I: Validating adduser 3.134\nI: Retrieving apt 2.6.1\n");
    assert_eq!(b.retrieved, 3, "{b:?}");
    assert_eq!(b.stage.as_deref(), Some("debootstrap: retrieving packages"));
    b.feed("I: Extracting base-files...\nI: Unpacking required packages...\nI: Unpacking adduser...\nI: Unpac");
    assert_eq!(
        b.unpacked, 1,
        "a phase is not a package, a cut line waits for its end"
    );
    b.feed("king apt...\nI: Configuring the base system...\nI: Configuring adduser...\n");
    assert_eq!((b.validated, b.unpacked, b.configured), (1, 2, 1));
    assert_eq!(
        b.summary(),
        "debootstrap: configuring packages (3 retrieved, 1 validated, 2 unpacked, 1 configured): I: Configuring adduser..."
    );
    b.feed("I: Base system installed successfully.\n");
    assert_eq!(
        b.stage.as_deref(),
        Some("debootstrap: Base system installed successfully")
    );
    // The stage says it all: the line is not repeated.
    assert_eq!(
        b.summary(),
        "debootstrap: Base system installed successfully (3 retrieved, 1 validated, 2 unpacked, 1 configured)"
    );
}

#[test]
fn a_script_names_its_stages_and_its_last_line_follows() {
    let mut b = BuildLog::default();
    assert_eq!(b.summary(), "");
    b.feed("build.sh: using Debian's dynamic busybox\r\n");
    assert_eq!(b.summary(), "build.sh: using Debian's dynamic busybox");
    b.feed("==> making the disk image\n");
    assert_eq!(b.summary(), "making the disk image");
    b.feed("\u{1b}[1mmke2fs 1.47.0\u{1b}[0m\n\n");
    assert_eq!(b.summary(), "making the disk image: mke2fs 1.47.0");
}

#[test]
fn bytes_read_as_people_read_them() {
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    assert_eq!(
        bytes_line("uploading", 10 << 20, Some(40 << 20)),
        "uploading: 10.0 MiB of 40.0 MiB (25%)"
    );
    assert_eq!(bytes_line("importing", 2048, None), "importing: 2.0 KiB");
}

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn keep(line: &str) {
    LINES.lock().unwrap().push(line.to_string());
}

#[test]
fn plain_lines_of_a_wait_come_after_two_seconds_and_then_seldom() {
    let t0 = Instant::now();
    let now = Arc::new(Mutex::new(t0));
    let clock = now.clone();
    let p = Progress::with_clock(
        &Printer::to_sink(Sink(&keep)),
        &["web".to_string()],
        move || *clock.lock().unwrap(),
    );
    let at = |ms: u64| *now.lock().unwrap() = t0 + Duration::from_millis(ms);
    p.status("web", "starting");
    // A tick every 100 ms for 10 s: lines at 2 s, 5 s and 8 s only.
    for ms in (0..10_000).step_by(100) {
        at(ms);
        p.tick("web", &format!("booting ({ms} ms)"));
    }
    let bytes = |done| Update::Bytes {
        what: "uploading",
        done,
        total: Some(100),
    };
    p.update("web", bytes(10));
    at(11_000);
    p.update("web", bytes(50));
    p.finish("web", true, "up");
    let lines = LINES.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "web : starting",
            "web : booting (2000 ms)",
            "web : booting (5000 ms)",
            "web : booting (8000 ms)",
            "web : uploading: 50 B of 100 B (50%)",
            "web ✓ up",
        ]
    );
}

#[test]
fn a_progress_line_shows_a_logs_last_line_without_terminal_escapes() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("console.log");
    std::fs::write(
        &log,
        "first\r\nStarting \u{1b}[0;1;39mmodprobe@configfs\u{1b}[0m - Load\u{7}\r\n\n  \n",
    )
    .unwrap();
    assert_eq!(
        last_line(&log).as_deref(),
        Some("Starting modprobe@configfs - Load")
    );
    assert_eq!(last_line(&d.path().join("none")), None);
    assert_eq!(
        waiting("VM `a`: booting", Duration::from_secs(12), None),
        "VM `a`: booting for 12 s"
    );
}

//! The phone core killed mid-write: a child process streams fixes into an SOS incident and is
//! killed with SIGKILL at an arbitrary point; reopened on the same file, every fix the child
//! was told was stored is there exactly once, in sequence order, with no gap, and the queue
//! picks up where it was.
#![cfg(feature = "client")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use sotong_core::client::Client;
use sotong_core::clock::unix_millis_now;
use sotong_core::sos::{Fix, FixMethod, TriggerMethod};

const CHILD_ENV: &str = "SOTONG_SOS_CRASH_CHILD_DIR";
/// Pushes confirmed before the kill.
const CONFIRMED_BEFORE_KILL: u32 = 150;

/// The fix pushed as beacon `seq` (seq 1 is the trigger, so fixes start at 2).
fn fix_for(seq: u32, time_ms: i64) -> Fix {
    Fix {
        lat: 37.0 + f64::from(seq) * 0.0001,
        lon: 127.0,
        accuracy_m: f64::from(seq % 50 + 1),
        altitude_m: None,
        speed_mps: Some(1.0),
        heading_deg: None,
        time_ms,
        method: FixMethod::Fused,
        battery_pct: Some(50),
    }
}

fn open(dir: &Path) -> Client {
    Client::open(dir, "http://127.0.0.1:9").unwrap()
}

/// The child: triggers, then pushes fixes until killed, printing each confirmed seq.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let client = open(Path::new(&dir));
    client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    let mut seq = 2;
    loop {
        assert_eq!(
            client
                .sos_push_fix(fix_for(seq, unix_millis_now()))
                .unwrap(),
            seq
        );
        println!("confirmed={seq}");
        seq += 1;
    }
}

#[test]
fn every_confirmed_fix_survives_a_kill_mid_write_exactly_once_in_order() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut confirmed = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("confirmed=") {
            confirmed = n.parse().unwrap();
            if confirmed >= CONFIRMED_BEFORE_KILL {
                break;
            }
        }
    }
    // SIGKILL: no destructor, no flush; most likely in the middle of the next push.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(confirmed >= CONFIRMED_BEFORE_KILL, "child stopped early");

    let client = open(dir.path());
    let status = client.sos_status().unwrap().unwrap();
    let log = client.sos_beacon_log(&status.incident).unwrap();
    let seqs: Vec<u32> = log.iter().map(|b| b.seq).collect();
    let last = *seqs.last().unwrap();
    assert!(
        last >= confirmed,
        "confirmed {confirmed}, stored up to {last}"
    );
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "gapless, once each, in order"
    );
    for b in &log[1..] {
        let fix = b.fix.unwrap();
        assert_eq!(fix, fix_for(b.seq, fix.time_ms), "seq {}", b.seq);
    }
    // Nothing was delivered: the whole log is still queued, and the queue carries on.
    let pending = client.sos_pending_beacons(usize::MAX).unwrap();
    assert_eq!(pending.len(), log.len());
    let next = client
        .sos_push_fix(fix_for(last + 1, unix_millis_now()))
        .unwrap();
    assert_eq!(next, last + 1);
}

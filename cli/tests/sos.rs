//! `sotong sos …` offline: PINs, trigger, fixes, a reply, status, a wrong PIN and the duress
//! cover; `sos run` says why it cannot send from an unregistered phone.

use std::path::Path;
use std::process::{Command, Output};

fn sotong(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sotong"))
        .arg("--home")
        .arg(home)
        // Nothing listens there: everything below is offline.
        .args(["--server", "http://127.0.0.1:9"])
        .args(args)
        .output()
        .expect("run sotong")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "sotong failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "sotong succeeded");
    String::from_utf8(out.stderr).expect("utf-8 output")
}

#[test]
fn an_incident_runs_offline_from_the_terminal_and_duress_looks_cancelled() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(sotong(
        h,
        &["sos", "pins", "--set", "1234", "--duress", "9999"],
    ));
    let id = ok(sotong(h, &["sos", "trigger", "--how", "power-key"]));
    let id = id.trim().to_owned();
    assert!(!id.is_empty());
    let seq = ok(sotong(
        h,
        &[
            "sos",
            "fix",
            "--lat",
            "37.5665",
            "--lon",
            "126.978",
            "--accuracy",
            "12",
            "--method",
            "wifi",
            "--battery",
            "40",
        ],
    ));
    assert_eq!(seq.trim(), "2");
    assert_eq!(ok(sotong(h, &["sos", "reply", "--cant-talk"])).trim(), "3");
    let status = ok(sotong(h, &["sos", "status"]));
    assert!(status.contains(&format!("incident:  {id}")), "{status}");
    assert!(status.contains("phase:     active"), "{status}");
    assert!(status.contains("trigger:   power_key"), "{status}");
    assert!(status.contains("me: [cant_talk]"), "{status}");

    // Bad input: a clear error, nothing lost.
    let err = fails(sotong(
        h,
        &[
            "sos",
            "fix",
            "--lat",
            "137",
            "--lon",
            "0",
            "--accuracy",
            "5",
        ],
    ));
    assert!(err.starts_with("sotong: "), "{err}");
    assert!(fails(sotong(h, &["sos", "reply"])).contains("required"));
    assert!(fails(sotong(h, &["sos", "cancel", "--pin", "0000"])).contains("PIN"));

    // The duress PIN answers exactly as a cancel would.
    let duress = ok(sotong(h, &["sos", "cancel", "--pin", "9999"]));
    assert!(duress.contains("phase:     cancelled"), "{duress}");
    // ...while fixes are still taken.
    assert_eq!(
        ok(sotong(
            h,
            &[
                "sos",
                "fix",
                "--lat",
                "37.5666",
                "--lon",
                "126.978",
                "--accuracy",
                "9"
            ]
        ))
        .trim(),
        "5"
    );

    // Sending needs a registered device; the queue stays.
    let err = fails(sotong(h, &["sos", "run"]));
    assert!(err.contains("not registered"), "{err}");
}

#[test]
fn sos_run_delivers_an_offline_incident_and_stops_once_it_is_over() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        sotong_server::serve(listener, sotong_server::Config::for_tests(data.path()))
            .await
            .unwrap()
    });
    let url = format!("http://{}", server.addr());
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sotong"))
            .arg("--home")
            .arg(h)
            .args(["--server", &url])
            .args(args)
            .output()
            .expect("run sotong")
    };
    let phone = "+821055507777";
    ok(run(&["register", "--phone", phone]));
    let code = server.latest_dev_code(phone).expect("a code was sent");
    ok(run(&["register", "--phone", phone, "--code", &code]));
    ok(run(&["sos", "pins", "--set", "1234"]));
    let id = ok(run(&["sos", "trigger", "--how", "widget"]));
    for lat in ["37.5665", "37.5667", "37.5669"] {
        ok(run(&[
            "sos",
            "fix",
            "--lat",
            lat,
            "--lon",
            "126.978",
            "--accuracy",
            "10",
        ]));
    }
    ok(run(&["sos", "cancel", "--pin", "1234"]));
    // Everything is queued; `run` sends it and ends by itself, the incident being over.
    let out = run(&["sos", "run"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("everything delivered"), "{stderr}");

    let id: sotong_core::sos::IncidentId = id.trim().parse().unwrap();
    let stored = rt.block_on(server.store().sos_beacons(&id)).unwrap();
    assert_eq!(
        stored.iter().map(|b| b.beacon.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    rt.block_on(server.shutdown());
}

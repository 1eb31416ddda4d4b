//! The `sotong` binary against a real server: two devices of one citizen draft, edit offline
//! and merge; bad input gets a one-line error and a non-zero exit.

use std::path::Path;
use std::process::{Command, Output};

use sotong_server::{serve, Config};

fn sotong(home: &Path, server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sotong"))
        .arg("--home")
        .arg(home)
        .args(["--server", server])
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

#[test]
fn two_devices_draft_offline_and_merge_through_the_cli() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        serve(listener, Config::for_tests(data.path()))
            .await
            .unwrap()
    });
    let url = format!("http://{}", server.addr());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let phone = "+821055501234";
    for (home, name) in [(a.path(), "phone"), (b.path(), "tablet")] {
        let asked = ok(sotong(home, &url, &["register", "--phone", phone]));
        assert!(asked.contains("--code"), "{asked}");
        let code = server.latest_dev_code(phone).expect("a code was sent");
        ok(sotong(
            home,
            &url,
            &[
                "register",
                "--phone",
                phone,
                "--code",
                &code,
                "--device-name",
                name,
            ],
        ));
    }

    let id = ok(sotong(
        a.path(),
        &url,
        &[
            "proposal",
            "new",
            "--title",
            "도서관",
            "--body",
            "open late",
            "--category",
            "culture",
        ],
    ));
    let id = id.trim();
    ok(sotong(a.path(), &url, &["sync"]));
    ok(sotong(b.path(), &url, &["sync"]));
    assert!(ok(sotong(b.path(), &url, &["proposal", "list"])).contains("도서관"));

    ok(sotong(
        a.path(),
        &url,
        &["proposal", "edit", id, "--insert-body", "0", "please "],
    ));
    ok(sotong(
        b.path(),
        &url,
        &["proposal", "edit", id, "--insert-title", "3", " 야간"],
    ));
    ok(sotong(
        b.path(),
        &url,
        &["proposal", "edit", id, "--insert-body", "9", "!"],
    ));
    for home in [a.path(), b.path(), a.path()] {
        ok(sotong(home, &url, &["sync"]));
    }
    let shown_a = ok(sotong(a.path(), &url, &["proposal", "show", id]));
    let shown_b = ok(sotong(b.path(), &url, &["proposal", "show", id]));
    assert_eq!(shown_a, shown_b);
    assert!(shown_a.contains("도서관 야간"), "{shown_a}");
    assert!(shown_a.contains("please open late!"), "{shown_a}");
    assert!(shown_a.contains(&format!("automerge:{id}")));

    // Bad input: one clear line on stderr, non-zero exit, nothing changed.
    for args in [
        vec!["proposal", "show", "not-an-id"],
        vec!["proposal", "edit", id, "--insert-body", "999", "x"],
    ] {
        let out = sotong(a.path(), &url, &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.starts_with("sotong: "), "{err}");
    }
    assert_eq!(
        ok(sotong(a.path(), &url, &["proposal", "show", id])),
        shown_a
    );
    let fresh = tempfile::tempdir().unwrap();
    let out = sotong(fresh.path(), &url, &["sync"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"));

    // Sign-out forgets the account and wipes the drafts; a sync then needs a registration.
    ok(sotong(b.path(), &url, &["sign-out"]));
    assert!(!ok(sotong(b.path(), &url, &["proposal", "list"])).contains(id));
    let out = sotong(b.path(), &url, &["sync"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"));

    // Plain http to another machine is refused before anything is sent.
    let out = sotong(fresh.path(), "http://sotong.example.kr", &["sync"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
    rt.block_on(server.shutdown());
}

/// `sotong … | head -1`: the reader has gone before the output is written. The command still
/// does its work, exits quietly and without a panic, and what it saved is kept.
#[test]
fn a_closed_output_pipe_ends_quietly_and_keeps_the_draft() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback; the command works offline.
    let server = "http://127.0.0.1:9";
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader); // every write to `writer` now fails with EPIPE
    let out = Command::new(env!("CARGO_BIN_EXE_sotong"))
        .arg("--home")
        .arg(home.path())
        .args(["--server", server])
        .args([
            "proposal",
            "new",
            "--title",
            "가로등",
            "--body",
            "dark street",
        ])
        .args(["--category", "safety"])
        .stdout(writer)
        .output()
        .expect("run sotong");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let listed = ok(sotong(home.path(), server, &["proposal", "list"]));
    assert!(listed.contains("가로등"), "{listed}");
}

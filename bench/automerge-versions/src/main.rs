//! automerge 0.6.1 against 0.12.0 on Sotong's sync path (figures and decision: docs/adr/0003).
//!
//! `automerge-versions [PASSES [MODE]]` runs everything: it writes the test documents with each version
//! into a temporary directory, runs every measurement in a fresh child process per version (so
//! peak RSS is that measurement's alone), PASSES times (default 3, versions alternating order),
//! and prints the median of the passes for each figure.
//!
//! Child modes (run by the driver): `<06|12> gen DIR`, `<06|12> upload DIR`,
//! `<06|12> resync DIR`, `<06|12> relay DIR CHARS`, `<06|12> mem DIR CHARS COPIES`,
//! `<06|12> load DIR CHARS`. MODE runs only that kind of child (`upload`, `relay`, …).

use std::collections::BTreeMap;
use std::error::Error;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

type Res<T = ()> = Result<T, Box<dyn Error>>;

/// Drafts a phone syncs (issue 5 item 5: 1,000 drafts of 5,000 characters).
const DRAFTS: usize = 1_000;
const DRAFT_CHARS: usize = 5_000;
/// The schema's limits: the largest allowed draft.
const MAX_BODY: usize = 30_000;
const MAX_TITLE: usize = 200;
/// Local edits a draft received after creation, each persisted as its own incremental chunk,
/// as the phone does after every edit.
const LOCAL_EDITS: usize = 5;
/// Relayed edits measured, after WARMUP unmeasured ones.
const RELAYED: usize = 300;
const WARMUP: usize = 20;

// ---- measurement helpers ------------------------------------------------------------------

/// CPU time of the calling thread, in seconds: what this thread spent, whatever else the
/// (shared, noisy) machine is doing.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A field of /proc/self/status in KiB (VmHWM: peak resident set; VmRSS: current).
fn status_kib(field: &str) -> Res<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return Ok(kib.parse()?);
        }
    }
    Err(format!("no {field} in /proc/self/status").into())
}

/// Current resident bytes (/proc/self/statm, pages of 4 KiB): cheap enough to read around a load.
fn rss_bytes() -> Res<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("statm has no resident field")?
        .parse()?;
    Ok(pages * 4096.0)
}

/// One figure, read by the driver: `RESULT key value`.
fn result(key: &str, value: f64) {
    println!("RESULT {key} {value}");
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Deterministic pseudo-random numbers, so both versions get the same texts and positions.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, m: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % m.max(1)
    }
}

/// Korean-looking text: 1/2 Hangul syllables, 1/3 ASCII letters, 1/6 spaces.
fn text(n: usize, seed: u64) -> String {
    let mut r = Lcg(seed);
    (0..n)
        .map(|_| match r.next(6) {
            0..=2 => char::from_u32(0xAC00 + r.next(11172) as u32).unwrap_or('가'),
            3 | 4 => (b'a' + r.next(26) as u8) as char,
            _ => ' ',
        })
        .collect()
}

/// Length-prefixed blobs, one record per draft, read back one at a time so the data file does
/// not count in the phone's peak RSS.
fn write_record(w: &mut impl Write, blobs: &[&[u8]]) -> Res {
    w.write_all(&(blobs.len() as u32).to_le_bytes())?;
    for b in blobs {
        w.write_all(&(b.len() as u32).to_le_bytes())?;
        w.write_all(b)?;
    }
    Ok(())
}

fn read_u32(r: &mut impl Read) -> Res<Option<u32>> {
    let mut buf = [0u8; 4];
    match r.read_exact(&mut buf) {
        Ok(()) => Ok(Some(u32::from_le_bytes(buf))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn read_record(r: &mut impl Read) -> Res<Option<Vec<Vec<u8>>>> {
    let Some(n) = read_u32(r)? else {
        return Ok(None);
    };
    let mut blobs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = read_u32(r)?.ok_or("truncated record")?;
        let mut b = vec![0u8; len as usize];
        r.read_exact(&mut b)?;
        blobs.push(b);
    }
    Ok(Some(blobs))
}

/// Per-draft timings of one phone run, summed or summarised into RESULT lines.
#[derive(Default)]
struct PhoneRun {
    phone_cpu: f64,
    server_cpu: f64,
    per_draft_ms: Vec<f64>,
    bytes: usize,
}

impl PhoneRun {
    fn report(mut self, name: &str, wall: f64, baseline_kib: f64) -> Res {
        result(&format!("{name}.wall_s"), wall);
        result(&format!("{name}.phone_cpu_s"), self.phone_cpu);
        result(&format!("{name}.server_cpu_s"), self.server_cpu);
        result(
            &format!("{name}.draft_wall_ms_p50"),
            quantile(&mut self.per_draft_ms, 0.5),
        );
        result(&format!("{name}.wire_kib"), self.bytes as f64 / 1024.0);
        result(&format!("{name}.vmhwm_mib"), status_kib("VmHWM")? / 1024.0);
        result(&format!("{name}.baseline_rss_mib"), baseline_kib / 1024.0);
        Ok(())
    }
}

// ---- the same code, compiled once against each version -------------------------------------

macro_rules! bench {
    ($m:ident, $am:ident, $tag:literal) => {
        mod $m {
            use super::*;
            use $am::sync::{self, SyncDoc};
            use $am::transaction::Transactable;
            use $am::{Automerge, ChangeHash, ObjType, ReadDoc, ROOT};

            fn path(dir: &Path, name: &str) -> PathBuf {
                dir.join(format!("v{}_{name}", $tag))
            }

            fn body(doc: &Automerge) -> Res<$am::ObjId> {
                Ok(doc.get(ROOT, "body")?.ok_or("no body")?.1)
            }

            /// A proposal draft as `sotong_core::schema::proposal::create` makes it.
            fn create(title: &str, body: &str) -> Res<Automerge> {
                let mut doc = Automerge::new();
                let mut tx = doc.transaction();
                tx.put(ROOT, "type", "proposal")?;
                let t = tx.put_object(ROOT, "title", ObjType::Text)?;
                tx.splice_text(&t, 0, 0, title)?;
                let b = tx.put_object(ROOT, "body", ObjType::Text)?;
                tx.splice_text(&b, 0, 0, body)?;
                tx.put(ROOT, "category", "safety")?;
                let _ = tx.commit();
                Ok(doc)
            }

            /// One local splice of `insert` at a pseudo-random place in the body, committed.
            fn splice(doc: &mut Automerge, rng: &mut Lcg, insert: &str) -> Res {
                let b = body(doc)?;
                let pos = rng.next(doc.length(&b) + 1);
                let mut tx = doc.transaction();
                tx.splice_text(&b, pos, 0, insert)?;
                let _ = tx.commit();
                Ok(())
            }

            fn wire(m: Option<sync::Message>) -> Option<Vec<u8>> {
                m.map(|m| m.encode())
            }

            /// Runs the sync protocol between two in-memory peers until both are quiet; the
            /// work of each side is timed on its own clock.
            fn exchange(
                phone: &mut Automerge,
                ps: &mut sync::State,
                server: &mut Automerge,
                ss: &mut sync::State,
                run: &mut PhoneRun,
            ) -> Res {
                for _ in 0..100 {
                    let t = thread_cpu();
                    let to_server = wire(phone.generate_sync_message(ps));
                    run.phone_cpu += thread_cpu() - t;
                    let t = thread_cpu();
                    if let Some(m) = &to_server {
                        run.bytes += m.len();
                        server.receive_sync_message(ss, sync::Message::decode(m)?)?;
                    }
                    let to_phone = wire(server.generate_sync_message(ss));
                    run.server_cpu += thread_cpu() - t;
                    let t = thread_cpu();
                    if let Some(m) = &to_phone {
                        run.bytes += m.len();
                        phone.receive_sync_message(ps, sync::Message::decode(m)?)?;
                    }
                    run.phone_cpu += thread_cpu() - t;
                    if to_server.is_none() && to_phone.is_none() {
                        return Ok(());
                    }
                }
                Err("sync did not settle in 100 rounds".into())
            }

            /// Settles two peers without timing (data generation).
            fn settle(
                a: &mut Automerge,
                sa: &mut sync::State,
                b: &mut Automerge,
                sb: &mut sync::State,
            ) -> Res {
                exchange(a, sa, b, sb, &mut PhoneRun::default())
            }

            /// Writes the drafts (phone chunks and sync state, server chunks with one edit the
            /// phone has not seen yet, and its sync state) and the single large documents.
            pub fn gen(dir: &Path) -> Res {
                let mut out = BufWriter::new(File::create(path(dir, "drafts.bin"))?);
                for i in 0..DRAFTS {
                    let mut rng = Lcg(i as u64 + 1);
                    let mut phone = create(&format!("제안 {i}"), &text(DRAFT_CHARS, i as u64))?;
                    let mut chunks = phone.save();
                    let mut heads: Vec<ChangeHash> = phone.get_heads();
                    for e in 0..LOCAL_EDITS {
                        splice(&mut phone, &mut rng, if e % 2 == 0 { "고" } else { "ok " })?;
                        chunks.extend(phone.save_after(&heads));
                        heads = phone.get_heads();
                    }
                    let mut server = Automerge::load(&chunks)?;
                    let (mut ps, mut ss) = (sync::State::new(), sync::State::new());
                    settle(&mut phone, &mut ps, &mut server, &mut ss)?;
                    // A co-author's keystroke the server holds and the phone does not.
                    let server_heads = server.get_heads();
                    splice(&mut server, &mut rng, "!")?;
                    let mut server_chunks = chunks.clone();
                    server_chunks.extend(server.save_after(&server_heads));
                    write_record(
                        &mut out,
                        &[&chunks, &ps.encode(), &server_chunks, &ss.encode()],
                    )?;
                }
                out.flush()?;
                for chars in [DRAFT_CHARS, MAX_BODY] {
                    let mut rng = Lcg(7);
                    let mut doc = create(&text(MAX_TITLE, 99), &text(chars, 100))?;
                    for _ in 0..LOCAL_EDITS {
                        splice(&mut doc, &mut rng, "가")?;
                    }
                    std::fs::write(path(dir, &format!("doc_{chars}.am")), doc.save())?;
                }
                Ok(())
            }

            /// The phone's first upload: every draft is loaded from its chunks one at a time,
            /// synced with a server that has never seen it, its sync state saved, and dropped.
            pub fn upload(dir: &Path) -> Res {
                phone_sync(dir, "upload", false)
            }

            /// The phone comes back after a co-author edited every draft: both sides load the
            /// draft and their saved sync state, the phone receives the edit and persists it.
            pub fn resync(dir: &Path) -> Res {
                phone_sync(dir, "resync", true)
            }

            fn phone_sync(dir: &Path, name: &str, server_has_it: bool) -> Res {
                let baseline = status_kib("VmRSS")?;
                let mut input = BufReader::new(File::open(path(dir, "drafts.bin"))?);
                let mut run = PhoneRun::default();
                let start = Instant::now();
                let mut n = 0;
                while let Some(rec) = read_record(&mut input)? {
                    let [chunks, pstate, schunks, sstate] = &rec[..] else {
                        return Err("bad record".into());
                    };
                    let t_draft = Instant::now();
                    // Phone: load the draft and its sync state.
                    let t = thread_cpu();
                    let mut phone = Automerge::load(chunks)?;
                    let saved_heads = phone.get_heads();
                    let mut ps = if server_has_it {
                        sync::State::decode(pstate)?
                    } else {
                        sync::State::new()
                    };
                    run.phone_cpu += thread_cpu() - t;
                    // Server: a cold document (its cache is bounded), or a new one.
                    let t = thread_cpu();
                    let (mut server, mut ss) = if server_has_it {
                        (Automerge::load(schunks)?, sync::State::decode(sstate)?)
                    } else {
                        (Automerge::new(), sync::State::new())
                    };
                    run.server_cpu += thread_cpu() - t;
                    exchange(&mut phone, &mut ps, &mut server, &mut ss, &mut run)?;
                    // Phone: persist what arrived and the sync state.
                    let t = thread_cpu();
                    let heads = phone.get_heads();
                    let saved = if heads != saved_heads {
                        phone.save_after(&saved_heads).len()
                    } else {
                        0
                    };
                    let state = ps.encode();
                    run.phone_cpu += thread_cpu() - t;
                    if heads != server.get_heads() || state.is_empty() {
                        return Err("phone and server did not converge".into());
                    }
                    if server_has_it && saved == 0 {
                        return Err("the co-author's edit did not reach the phone".into());
                    }
                    run.per_draft_ms.push(t_draft.elapsed().as_secs_f64() * 1e3);
                    n += 1;
                }
                if n != DRAFTS {
                    return Err(format!("{n} drafts synced, expected {DRAFTS}").into());
                }
                run.report(name, start.elapsed().as_secs_f64(), baseline)
            }

            /// Server CPU per relayed edit: a hot document with two peers; peer A types one
            /// character, the server receives it and generates the message for B (and the
            /// acknowledgement for A); then every message runs until the three are quiet.
            pub fn relay(dir: &Path, chars: usize) -> Res {
                let bytes = std::fs::read(path(dir, &format!("doc_{chars}.am")))?;
                let mut server = Automerge::load(&bytes)?;
                let mut a = Automerge::load(&bytes)?;
                let mut b = Automerge::load(&bytes)?;
                let (mut sa, mut s_a) = (sync::State::new(), sync::State::new());
                let (mut sb, mut s_b) = (sync::State::new(), sync::State::new());
                settle(&mut a, &mut sa, &mut server, &mut s_a)?;
                settle(&mut b, &mut sb, &mut server, &mut s_b)?;
                let mut rng = Lcg(42);
                let (mut relay, mut full) = (Vec::new(), Vec::new());
                for i in 0..RELAYED + WARMUP {
                    splice(&mut a, &mut rng, if i % 2 == 0 { "a" } else { "가" })?;
                    let Some(msg) = wire(a.generate_sync_message(&mut sa)) else {
                        return Err("no message for a local edit".into());
                    };
                    let t = thread_cpu();
                    server.receive_sync_message(&mut s_a, sync::Message::decode(&msg)?)?;
                    let to_a = wire(server.generate_sync_message(&mut s_a));
                    let to_b = wire(server.generate_sync_message(&mut s_b));
                    let first = thread_cpu() - t;
                    let mut rest = 0.0;
                    let (mut to_a, mut to_b) = (to_a, to_b);
                    for _ in 0..100 {
                        if to_a.is_none() && to_b.is_none() {
                            break;
                        }
                        let from_a = match to_a.take() {
                            Some(m) => {
                                a.receive_sync_message(&mut sa, sync::Message::decode(&m)?)?;
                                wire(a.generate_sync_message(&mut sa))
                            }
                            None => None,
                        };
                        let from_b = match to_b.take() {
                            Some(m) => {
                                b.receive_sync_message(&mut sb, sync::Message::decode(&m)?)?;
                                wire(b.generate_sync_message(&mut sb))
                            }
                            None => None,
                        };
                        let t = thread_cpu();
                        if let Some(m) = from_a {
                            server.receive_sync_message(&mut s_a, sync::Message::decode(&m)?)?;
                        }
                        if let Some(m) = from_b {
                            server.receive_sync_message(&mut s_b, sync::Message::decode(&m)?)?;
                        }
                        to_a = wire(server.generate_sync_message(&mut s_a));
                        to_b = wire(server.generate_sync_message(&mut s_b));
                        rest += thread_cpu() - t;
                    }
                    if i >= WARMUP {
                        relay.push(first * 1e3);
                        full.push((first + rest) * 1e3);
                    }
                }
                let (ba, bb) = (body(&a)?, body(&b)?);
                if a.text(&ba)? != b.text(&bb)? || b.get_heads() != server.get_heads() {
                    return Err("peers did not converge".into());
                }
                let k = format!("relay{chars}");
                result(
                    &format!("{k}.recv_and_forward_cpu_ms_p50"),
                    quantile(&mut relay, 0.5),
                );
                result(
                    &format!("{k}.recv_and_forward_cpu_ms_p99"),
                    quantile(&mut relay, 0.99),
                );
                result(
                    &format!("{k}.until_quiet_cpu_ms_p50"),
                    quantile(&mut full, 0.5),
                );
                result(
                    &format!("{k}.until_quiet_cpu_ms_p99"),
                    quantile(&mut full, 0.99),
                );
                Ok(())
            }

            /// What a cache miss costs the server (and opening a draft the phone): `load()` of
            /// the saved document, median and p99 of 30, on thread CPU.
            pub fn load(dir: &Path, chars: usize) -> Res {
                let bytes = std::fs::read(path(dir, &format!("doc_{chars}.am")))?;
                let mut times = Vec::new();
                for _ in 0..30 {
                    let t = thread_cpu();
                    let doc = Automerge::load(&bytes)?;
                    times.push((thread_cpu() - t) * 1e3);
                    if doc.get_heads().is_empty() {
                        return Err("loaded an empty document".into());
                    }
                }
                result(
                    &format!("load{chars}.cpu_ms_p50"),
                    quantile(&mut times, 0.5),
                );
                result(
                    &format!("load{chars}.cpu_ms_p99"),
                    quantile(&mut times, 0.99),
                );
                Ok(())
            }

            /// Resident bytes per loaded (hot) document on the server.
            pub fn mem(dir: &Path, chars: usize, copies: usize) -> Res {
                let bytes = std::fs::read(path(dir, &format!("doc_{chars}.am")))?;
                let before = rss_bytes()?;
                let docs = (0..copies)
                    .map(|_| Automerge::load(&bytes))
                    .collect::<Result<Vec<_>, _>>()?;
                let per_doc = (rss_bytes()? - before) / copies as f64;
                if docs.len() != copies {
                    return Err("lost a document".into());
                }
                let k = format!("mem{chars}x{copies}");
                result(&format!("{k}.kib_per_doc"), per_doc / 1024.0);
                result(&format!("{k}.docs_per_gib"), (1u64 << 30) as f64 / per_doc);
                result(&format!("{k}.saved_kib"), bytes.len() as f64 / 1024.0);
                Ok(())
            }
        }
    };
}

bench!(v06, am06, "06");
bench!(v12, am12, "12");

// ---- driver -------------------------------------------------------------------------------

fn child(args: &[String]) -> Res {
    let version = args.first().ok_or("version")?.as_str();
    let mode = args.get(1).ok_or("mode")?.as_str();
    let dir = Path::new(args.get(2).ok_or("data directory")?);
    let num = |i: usize| -> Res<usize> { Ok(args.get(i).ok_or("number")?.parse()?) };
    macro_rules! run {
        ($m:ident) => {
            match mode {
                "gen" => $m::gen(dir),
                "upload" => $m::upload(dir),
                "resync" => $m::resync(dir),
                "relay" => $m::relay(dir, num(3)?),
                "mem" => $m::mem(dir, num(3)?, num(4)?),
                "load" => $m::load(dir, num(3)?),
                other => Err(format!("unknown mode {other}").into()),
            }
        };
    }
    match version {
        "06" => run!(v06),
        "12" => run!(v12),
        other => Err(format!("unknown version {other}").into()),
    }
}

/// Runs one child and collects its RESULT lines under `version`.
fn spawn(
    version: &str,
    args: &[&str],
    figures: &mut BTreeMap<String, BTreeMap<String, Vec<f64>>>,
) -> Res {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).arg(version).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "{version} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split_whitespace();
        if let (Some("RESULT"), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
        {
            figures
                .entry(key.to_owned())
                .or_default()
                .entry(version.to_owned())
                .or_default()
                .push(value.parse()?);
        }
    }
    Ok(())
}

/// `only`: run just one kind of measurement (e.g. `relay`), for a quick look.
fn driver(passes: usize, only: Option<&str>) -> Res {
    let dir = std::env::temp_dir().join(format!("automerge-versions-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let d = dir.to_str().ok_or("temp dir is not UTF-8")?.to_owned();
    let mut figures = BTreeMap::new();
    let outcome = (|| -> Res {
        for v in ["06", "12"] {
            eprintln!("generating documents with {v}");
            spawn(v, &["gen", &d], &mut figures)?;
        }
        let (c5, c30) = (DRAFT_CHARS.to_string(), MAX_BODY.to_string());
        let runs: [&[&str]; 9] = [
            &["upload", &d],
            &["resync", &d],
            &["relay", &d, &c5],
            &["relay", &d, &c30],
            &["mem", &d, &c5, "200"],
            &["mem", &d, &c30, "40"],
            &["mem", &d, &c30, "1"],
            &["load", &d, &c5],
            &["load", &d, &c30],
        ];
        for pass in 0..passes {
            let order = if pass % 2 == 0 {
                ["06", "12"]
            } else {
                ["12", "06"]
            };
            for args in runs.iter().filter(|a| only.is_none_or(|o| o == a[0])) {
                for v in order {
                    eprintln!("pass {}/{passes}: {v} {}", pass + 1, args[0]);
                    spawn(v, args, &mut figures)?;
                }
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    println!("median of {passes} passes, each in a fresh process per version");
    println!(
        "{:<44} {:>12} {:>12} {:>9}",
        "figure", "0.6.1", "0.12.0", "12/06"
    );
    for (key, by_version) in &mut figures {
        let mut med = |v: &str| {
            by_version
                .get_mut(v)
                .map(|xs| quantile(xs, 0.5))
                .unwrap_or(f64::NAN)
        };
        let (a, b) = (med("06"), med("12"));
        println!("{key:<44} {a:>12.4} {b:>12.4} {:>9.3}", b / a);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("06" | "12") => child(&args),
        Some(n) => match n.parse() {
            Ok(passes) => driver(passes, args.get(1).map(String::as_str)),
            Err(_) => Err(format!("usage: automerge-versions [PASSES [MODE]] (got {n})").into()),
        },
        None => driver(3, None),
    };
    if let Err(e) = outcome {
        eprintln!("automerge-versions: {e}");
        std::process::exit(1);
    }
}
